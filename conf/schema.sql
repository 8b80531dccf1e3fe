-- Reference schema of the allgo database, as far as the SSH frontend reads it.
-- The allgo web application owns these tables; allgo-ssh only ever SELECTs from them.
CREATE TABLE users   (id INT UNSIGNED AUTO_INCREMENT PRIMARY KEY,
                      email VARCHAR(254) NOT NULL UNIQUE,
                      is_active TINYINT(1) NOT NULL DEFAULT 1,
                      is_superuser TINYINT(1) NOT NULL DEFAULT 0);
CREATE TABLE ssh_keys (id INT UNSIGNED AUTO_INCREMENT PRIMARY KEY,
                      user_id INT UNSIGNED NOT NULL,        -- users.id
                      public_key TEXT NOT NULL,             -- as the user pasted it; may hold several lines
                      INDEX (user_id));
CREATE TABLE webapps (id INT UNSIGNED AUTO_INCREMENT PRIMARY KEY,
                      name VARCHAR(255) NOT NULL,           -- display name
                      docker_name VARCHAR(64) NOT NULL UNIQUE, -- the login name
                      user_id INT UNSIGNED NOT NULL,        -- owner, users.id
                      sandbox_state VARCHAR(16) NOT NULL DEFAULT 'idle'); -- idle|starting|running|stopping|error
