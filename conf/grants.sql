-- The read-only account of the SSH frontend: SELECT on the columns it reads, nothing else.
-- Replace the password; keep the account's host as narrow as your network allows.
CREATE USER IF NOT EXISTS 'ssh'@'localhost' IDENTIFIED BY 'change-me';
GRANT SELECT (id, email, is_active, is_superuser) ON allgo.users TO 'ssh'@'localhost';
GRANT SELECT (id, user_id, public_key) ON allgo.ssh_keys TO 'ssh'@'localhost';
GRANT SELECT (id, name, docker_name, user_id, sandbox_state) ON allgo.webapps TO 'ssh'@'localhost';
