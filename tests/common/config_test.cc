#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "allgo/config.h"
#include "allgo/directory.h"

namespace allgo {
namespace {

Status Parse(const std::string& text, Config* c) { return ParseConfig(text, "test.conf", c); }

std::string ErrorOf(const std::string& text) {
  Config c;
  Status s = Parse(text, &c);
  EXPECT_FALSE(s.ok()) << "accepted:\n" << text;
  return s.message();
}

TEST(Config, ShippedExampleParsesWithItsDocumentedValues) {
  Config c;
  Status s = LoadConfig(std::string(ALLGO_SOURCE_DIR) + "/conf/allgo-ssh.conf", &c);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(c.mysql.socket, "/run/mysqld/mysqld.sock");
  EXPECT_EQ(c.mysql.password, "change-me");
  EXPECT_EQ(c.mysql.connect_timeout, 2u);
  EXPECT_EQ(c.nss.uid_offset, 2000u);
  EXPECT_EQ(c.nss.max_uid, 59999u);
  EXPECT_EQ(c.nss.shell, "/usr/bin/allgo-shell");
  EXPECT_EQ(c.authkeys.key_options, "restrict,pty");
  EXPECT_FALSE(c.authkeys.key_options_set) << "shipped unset: allgo-sshd forwards into the sandbox out of the box";
  EXPECT_TRUE(c.authkeys.sshd_options.port_forwarding && c.authkeys.sshd_options.agent_forwarding);
  EXPECT_EQ(c.sshd.allow_tcp_forwarding, ForwardDirections::kAll);
  EXPECT_EQ(c.sshd.gateway_ports, GatewayPorts::kNo);
  EXPECT_FALSE(c.authkeys.allow_superusers);
  EXPECT_EQ(c.sandbox.dir, "/vol/cache/allgo-sandboxes");
  EXPECT_EQ(c.sshd.listen, std::vector<std::string>{"127.0.0.1:2222"});
  EXPECT_EQ(c.sshd.max_startups_begin, 32u);
  EXPECT_EQ(c.sshd.max_startups_rate, 30u);
  EXPECT_EQ(c.sshd.max_startups_full, 1000u);
  EXPECT_EQ(c.sshd.per_source_max_startups, 200u);
  EXPECT_EQ(c.sshd.version_timeout, 5u);
  EXPECT_EQ(c.sshd.authorized_keys_command, "");
  EXPECT_EQ(c.queries.webapp_by_name, WebappDirectory::DefaultQueries().webapp_by_name);
}

TEST(Config, EmptyFileGivesDefaults) {
  Config c;
  ASSERT_TRUE(Parse("", &c).ok());
  EXPECT_EQ(c.mysql.socket, "/run/mysqld/mysqld.sock");
  EXPECT_EQ(c.mysql.user, "ssh");
  EXPECT_EQ(c.nss.gid, 65534u);
  EXPECT_EQ(c.nss.cache_ttl, 5u);
  EXPECT_EQ(c.sandbox.start_wait, 30u);
  EXPECT_EQ(c.sshd.proxy_trusted, std::vector<std::string>{"127.0.0.0/8"});
  EXPECT_FALSE(c.nss.shell.empty());
}

TEST(Config, RepeatableKeysAccumulate) {
  Config c;
  ASSERT_TRUE(Parse("[sshd]\nlisten = 127.0.0.1:22\nlisten = [::1]:22\n"
                    "host_key = /a\nhost_key = /b\n", &c).ok());
  EXPECT_EQ(c.sshd.listen, (std::vector<std::string>{"127.0.0.1:22", "[::1]:22"}));
  EXPECT_EQ(c.sshd.host_key, (std::vector<std::string>{"/a", "/b"}));
}

TEST(Config, ErrorsNameFileLineSectionAndKey) {
  EXPECT_EQ(ErrorOf("[mysql]\nsocket = /s\n\nsockett = /x\n"), "test.conf:4: [mysql] sockett: unknown key");
  EXPECT_EQ(ErrorOf("[nss]\nuid_offset = -1\n"),
            "test.conf:2: [nss] uid_offset: must be a whole number from 0 to 4000000000");
  EXPECT_EQ(ErrorOf("[nss]\ncache_ttl = 5s\n"),
            "test.conf:2: [nss] cache_ttl: must be a whole number from 0 to 3600");
  EXPECT_EQ(ErrorOf("[authkeys]\nallow_superusers = maybe\n"),
            "test.conf:2: [authkeys] allow_superusers: must be true or false");
  EXPECT_EQ(ErrorOf("[nss]\nshell = allgo-shell\n"), "test.conf:2: [nss] shell: must be an absolute path");
  EXPECT_EQ(ErrorOf("[mysql]\nuser = a\nuser = b\n"), "test.conf:3: [mysql] user: given twice");
  EXPECT_EQ(ErrorOf("[mysqld]\nuser = a\n"), "test.conf:2: [mysqld] user: unknown section [mysqld]");
  EXPECT_EQ(ErrorOf("[sshd]\nlisten = 2222\n"),
            "test.conf:2: [sshd] listen: must be HOST:PORT, e.g. 127.0.0.1:2222");
  EXPECT_EQ(ErrorOf("[sshd]\nlisten = 127.0.0.1:70000\n"), "test.conf:2: [sshd] listen: port must be 1 to 65535");
  EXPECT_EQ(ErrorOf("[sshd]\nproxy_protocol = yes\n"),
            "test.conf:2: [sshd] proxy_protocol: must be off, optional or required");
  EXPECT_EQ(ErrorOf("[sshd]\nmax_startups = 10:30\n").substr(0, 35), "test.conf:2: [sshd] max_startups: m");
  EXPECT_EQ(ErrorOf("[mysql]\nuser =\n"), "test.conf:2: [mysql] user: must not be empty");
  EXPECT_EQ(ErrorOf("just words\n"),
            "test.conf:1: syntax error (expected [section], key = value, or a comment)");
  EXPECT_EQ(ErrorOf("[nss]\nmin_uid = 5000\nmax_uid = 4000\n"), "test.conf: [nss] min_uid is greater than max_uid");
}

TEST(Config, KeyOptionsAreParsedOnceAndAnOptionThatCannotHoldIsAnError) {
  Config c;
  ASSERT_TRUE(Parse("", &c).ok());
  EXPECT_EQ(c.authkeys.key_options, "restrict,pty");
  EXPECT_TRUE(c.authkeys.options.pty);
  ASSERT_TRUE(Parse("[authkeys]\nkey_options = restrict,command=\"echo hi\",from=\"127.0.0.0/8\"\n", &c).ok());
  EXPECT_FALSE(c.authkeys.options.pty);
  EXPECT_EQ(c.authkeys.options.command, "echo hi");
  EXPECT_EQ(c.authkeys.options.from.size(), 1u);
  ASSERT_TRUE(Parse("[authkeys]\nkey_options =\n", &c).ok()) << "no options at all is valid";
  EXPECT_TRUE(c.authkeys.options.pty);
  EXPECT_EQ(ErrorOf("[authkeys]\nallow_superusers = false\nkey_options = restrict,environment=\"A=B\"\n").substr(0, 56),
            "test.conf:3: [authkeys] key_options: environment: allgo-");
  EXPECT_EQ(ErrorOf("[authkeys]\nkey_options = restrict,bogus\n"),
            "test.conf:2: [authkeys] key_options: bogus: unknown option (OpenSSH refuses every key line that "
            "carries it)");
  EXPECT_EQ(ErrorOf("[authkeys]\nkey_options = restrict,X11-forwarding\n").substr(0, 52),
            "test.conf:2: [authkeys] key_options: x11-forwarding:");
}

TEST(Config, KeyOptionsNotSetMeanRestrictForOpenSshAndNothingForAllgoSshd) {
  Config c;
  ASSERT_TRUE(Parse("", &c).ok());
  EXPECT_FALSE(c.authkeys.key_options_set);
  EXPECT_EQ(c.authkeys.key_options, "restrict,pty");
  EXPECT_FALSE(c.authkeys.options.port_forwarding || c.authkeys.options.agent_forwarding);
  EXPECT_TRUE(c.authkeys.sshd_options.port_forwarding && c.authkeys.sshd_options.agent_forwarding &&
              c.authkeys.sshd_options.pty);
  ASSERT_TRUE(Parse("[authkeys]\nkey_options = restrict,pty\n", &c).ok());
  EXPECT_TRUE(c.authkeys.key_options_set);
  EXPECT_FALSE(c.authkeys.sshd_options.port_forwarding) << "set explicitly, allgo-sshd honours it too";
  EXPECT_TRUE(c.authkeys.sshd_options.pty);
}

TEST(Config, ForwardingKeys) {
  Config c;
  ASSERT_TRUE(Parse("", &c).ok());
  EXPECT_EQ(c.sshd.allow_tcp_forwarding, ForwardDirections::kAll);
  EXPECT_EQ(c.sshd.allow_stream_local_forwarding, ForwardDirections::kAll);
  EXPECT_TRUE(c.sshd.allow_agent_forwarding);
  EXPECT_FALSE(c.sshd.permit_open.restricted);
  EXPECT_FALSE(c.sshd.permit_listen.restricted);
  EXPECT_EQ(c.sshd.gateway_ports, GatewayPorts::kNo);
  EXPECT_EQ(c.sshd.max_forwards, 64u);
  EXPECT_EQ(c.sshd.max_listeners, 16u);
  ASSERT_TRUE(Parse("[sshd]\nallow_tcp_forwarding = local\nallow_stream_local_forwarding = no\n"
                    "allow_agent_forwarding = no\npermit_open = localhost:8888 [::1]:*\npermit_open = *:443\n"
                    "permit_listen = none\ngateway_ports = clientspecified\nmax_forwards = 200\nmax_listeners = 0\n",
                    &c)
                  .ok());
  EXPECT_EQ(c.sshd.allow_tcp_forwarding, ForwardDirections::kLocal);
  EXPECT_EQ(c.sshd.allow_stream_local_forwarding, ForwardDirections::kNo);
  EXPECT_FALSE(c.sshd.allow_agent_forwarding);
  EXPECT_EQ(FormatPermitList(c.sshd.permit_open), "localhost:8888 [::1]:* *:443") << "the lines accumulate";
  EXPECT_EQ(FormatPermitList(c.sshd.permit_listen), "none");
  EXPECT_EQ(c.sshd.gateway_ports, GatewayPorts::kClientSpecified);
  EXPECT_EQ(c.sshd.max_forwards, 200u);
  EXPECT_EQ(c.sshd.max_listeners, 0u);
  ASSERT_TRUE(Parse("[sshd]\nallow_tcp_forwarding = remote\npermit_open = any\n", &c).ok());
  EXPECT_EQ(c.sshd.allow_tcp_forwarding, ForwardDirections::kRemote);
  EXPECT_FALSE(c.sshd.permit_open.restricted);
  EXPECT_EQ(ErrorOf("[sshd]\nallow_tcp_forwarding = maybe\n"),
            "test.conf:2: [sshd] allow_tcp_forwarding: must be yes, no, local, remote or all (OpenSSH's values; yes = all)");
  EXPECT_EQ(ErrorOf("[sshd]\nallow_agent_forwarding = local\n"), "test.conf:2: [sshd] allow_agent_forwarding: must be yes or no");
  EXPECT_EQ(ErrorOf("[sshd]\npermit_open = localhost\n"),
            "test.conf:2: [sshd] permit_open: \"localhost\" is not HOST:PORT (HOST or PORT may be *)");
  EXPECT_EQ(ErrorOf("[sshd]\npermit_open = a:1\npermit_open = none\n"),
            "test.conf:3: [sshd] permit_open: \"none\" must be the whole list (one line, nothing else)");
  EXPECT_EQ(ErrorOf("[sshd]\npermit_listen = any 8080\n"),
            "test.conf:2: [sshd] permit_listen: \"any\" must be the whole list (one line, nothing else)");
  EXPECT_EQ(ErrorOf("[sshd]\npermit_listen = none\npermit_listen = 8080\n"),
            "test.conf:3: [sshd] permit_listen: entries after \"none\" (none must be the whole list)");
  EXPECT_EQ(ErrorOf("[sshd]\ngateway_ports = all\n"), "test.conf:2: [sshd] gateway_ports: must be no, yes or clientspecified");
  EXPECT_EQ(ErrorOf("[sshd]\nmax_forwards = 0\n"), "test.conf:2: [sshd] max_forwards: must be a whole number from 1 to 10000");
  EXPECT_EQ(ErrorOf("[sshd]\nmax_forwards = 1\nmax_forwards = 2\n"), "test.conf:3: [sshd] max_forwards: given twice");
}

TEST(Config, ValuesInLaterLinesAreCountedCorrectly) {
  // Comments, blank lines and sections all count as lines.
  EXPECT_EQ(ErrorOf("# c\n; c\n\n[nss]\n  ; indented comment\nhome = /\nbogus = 1\n"),
            "test.conf:7: [nss] bogus: unknown key");
}

TEST(Config, OverlongLineIsAnErrorNotASilentSplit) {
  std::string text = "[mysql]\npassword = " + std::string(300, 'p') + "\n";
  std::string e = ErrorOf(text);
  EXPECT_NE(e.find("test.conf:2: line longer than"), std::string::npos) << e;
}

TEST(Config, QueriesAreValidatedAndMayContinueOnIndentedLines) {
  Config c;
  ASSERT_TRUE(Parse("[queries]\nwebapp_by_id = SELECT a, b, c, d, e\n    FROM apps WHERE a = ?\n", &c).ok());
  EXPECT_EQ(c.queries.webapp_by_id, "SELECT a, b, c, d, e FROM apps WHERE a = ?");
  EXPECT_EQ(ErrorOf("[queries]\nwebapp_by_id = SELECT a FROM t\n"),
            "test.conf: [queries] webapp_by_id: must have exactly 1 '?' parameter, found 0");
  EXPECT_EQ(ErrorOf("[queries]\nwebapp_list = DELETE FROM webapps\n"),
            "test.conf: [queries] webapp_list: must be a single SELECT statement");
  EXPECT_EQ(ErrorOf("[queries]\nwebapp_list = SELECT 1; DROP TABLE webapps\n"),
            "test.conf: [queries] webapp_list: must be a single statement (no ';')");
  // A '?' inside a string literal is not a parameter.
  EXPECT_TRUE(Parse("[queries]\nwebapp_by_name = SELECT '?', b, c, d, e FROM t WHERE n = ?\n", &c).ok());
  EXPECT_EQ(ErrorOf("[sshd]\nlisten = 127.0.0.1:1\n  127.0.0.1:2\n"),
            "test.conf:3: [sshd] listen: unexpected indented line (only [queries] values may continue)");
}

TEST(Config, PasswordFileIsRead) {
  char path[] = "/tmp/allgo-pw-XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, "s3cret\n", 7), 7);
  close(fd);
  Config c;
  ASSERT_TRUE(Parse(std::string("[mysql]\npassword_file = ") + path + "\n", &c).ok());
  EXPECT_EQ(c.mysql.password, "s3cret");
  EXPECT_EQ(ErrorOf(std::string("[mysql]\npassword = x\npassword_file = ") + path + "\n"),
            "test.conf: [mysql] password and password_file are both set; keep one");
  unlink(path);
  std::string e = ErrorOf(std::string("[mysql]\npassword_file = ") + path + "\n");
  EXPECT_NE(e.find("cannot read password_file"), std::string::npos) << e;
  EXPECT_EQ(e.find("s3cret"), std::string::npos);
}

// [mysql] ssl_*: every mistake names the file, the line and the key; files are opened at load
// (so every program's --check reports them), and a CA turns verification on by default.
TEST(Config, MysqlTlsKeysAreCheckedAtLoad) {
  char dir_template[] = "/tmp/allgo-tls-XXXXXX";
  ASSERT_NE(mkdtemp(dir_template), nullptr);
  const std::string dir = dir_template;
  for (const char* f : {"/ca.pem", "/cert.pem", "/key.pem"}) std::ofstream(dir + f) << "PEM\n";
  const std::string tcp = "[mysql]\nhost = 10.0.0.5\n";
  Config c;
  ASSERT_TRUE(Parse(tcp + "ssl_ca = " + dir + "/ca.pem\n", &c).ok());
  EXPECT_EQ(c.mysql.ssl_ca, dir + "/ca.pem");
  EXPECT_TRUE(c.mysql.ssl_verify_server_cert) << "on when a CA is given";
  ASSERT_TRUE(Parse(tcp + "ssl_ca = " + dir + "/ca.pem\nssl_cert = " + dir + "/cert.pem\nssl_key = " + dir +
                        "/key.pem\nssl_verify_server_cert = false\n", &c).ok());
  EXPECT_EQ(c.mysql.ssl_key, dir + "/key.pem");
  EXPECT_FALSE(c.mysql.ssl_verify_server_cert);
  ASSERT_TRUE(Parse("[mysql]\nhost = 10.0.0.5\n", &c).ok());
  EXPECT_FALSE(c.mysql.ssl_verify_server_cert) << "no CA, no TLS";

  EXPECT_EQ(ErrorOf(tcp + "ssl_ca = " + dir + "/missing.pem\n"),
            "test.conf:3: [mysql] ssl_ca: cannot read " + dir + "/missing.pem: No such file or directory");
  EXPECT_EQ(ErrorOf(tcp + "ssl_ca = " + dir + "\n"), "test.conf:3: [mysql] ssl_ca: " + dir + " is not a regular file");
  EXPECT_EQ(ErrorOf(tcp + "ssl_ca = ca.pem\n"), "test.conf:3: [mysql] ssl_ca: must be an absolute path");
  EXPECT_EQ(ErrorOf(tcp + "ssl_verify_server_cert = maybe\n"),
            "test.conf:3: [mysql] ssl_verify_server_cert: must be true or false");
  EXPECT_EQ(ErrorOf(tcp + "ssl_verify_server_cert = true\n"),
            "test.conf:3: [mysql] ssl_verify_server_cert: needs ssl_ca (the CA to verify against)");
  EXPECT_EQ(ErrorOf(tcp + "ssl_cert = " + dir + "/cert.pem\nssl_key = " + dir + "/key.pem\n"),
            "test.conf:3: [mysql] ssl_cert: needs ssl_ca (the CA that signed the server's certificate)");
  EXPECT_EQ(ErrorOf(tcp + "ssl_ca = " + dir + "/ca.pem\n\nssl_key = " + dir + "/key.pem\n"),
            "test.conf:5: [mysql] ssl_key: needs ssl_cert (the client certificate it belongs to)");
  EXPECT_EQ(ErrorOf("[mysql]\nssl_ca = " + dir + "/ca.pem\n"),
            "test.conf:2: [mysql] ssl_ca: TLS needs a TCP server: set host (a unix socket never leaves this host)");
  std::filesystem::remove_all(dir);
}

// A root-only ssl_key is like a root-only password_file: an error for kRequired readers
// (naming the line), a reason in password_error for kIfReadable ones (allgo-shell).
TEST(Config, MysqlSslKeyUnreadableIsAnErrorUnlessIfReadable) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to own a file another uid cannot read";
  char dir_template[] = "/tmp/allgo-tls-XXXXXX";
  ASSERT_NE(mkdtemp(dir_template), nullptr);
  const std::string dir = dir_template;
  ASSERT_EQ(chmod(dir.c_str(), 0755), 0);
  for (const char* f : {"/ca.pem", "/cert.pem", "/key.pem"}) std::ofstream(dir + f) << "PEM\n";
  ASSERT_EQ(chmod((dir + "/key.pem").c_str(), 0600), 0);
  const std::string text = "[mysql]\nhost = 10.0.0.5\nssl_ca = " + dir + "/ca.pem\nssl_cert = " + dir +
                           "/cert.pem\nssl_key = " + dir + "/key.pem\n";
  pid_t pid = fork();
  if (pid == 0) {
    if (setresgid(65534, 65534, 65534) != 0 || setresuid(65534, 65534, 65534) != 0) _exit(10);
    Config c;
    Status required = ParseConfig(text, "test.conf", &c);
    if (required.message() != "test.conf:5: [mysql] ssl_key: cannot read " + dir + "/key.pem: Permission denied") _exit(11);
    Status tolerant = ParseConfig(text, "test.conf", &c, PasswordFile::kIfReadable);
    if (!tolerant.ok()) _exit(12);
    if (c.mysql.password_error != "[mysql] ssl_key " + dir + "/key.pem is not readable by uid 65534") _exit(13);
    _exit(0);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  std::filesystem::remove_all(dir);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST(Config, PasswordFileUnreadableIsAnErrorUnlessIfReadable) {
  // As an unprivileged uid (a forked child drops to it) a root-only (0600) file is unreadable.
  if (geteuid() != 0) GTEST_SKIP() << "needs root to own a file another uid cannot read";
  char path[] = "/tmp/allgo-pw-XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, "s3cret\n", 7), 7);
  close(fd);
  ASSERT_EQ(chmod(path, 0600), 0);
  std::string text = std::string("[mysql]\npassword_file = ") + path + "\n";
  pid_t pid = fork();
  if (pid == 0) {
    if (setresgid(65534, 65534, 65534) != 0 || setresuid(65534, 65534, 65534) != 0) _exit(10);
    Config c;
    Status required = ParseConfig(text, "test.conf", &c);
    if (required.ok() || required.message().find("cannot read password_file") == std::string::npos) _exit(11);
    Status tolerant = ParseConfig(text, "test.conf", &c, PasswordFile::kIfReadable);
    if (!tolerant.ok() || !c.mysql.password.empty()) _exit(12);
    if (c.mysql.password_error.find(std::string(path) + " is not readable by uid 65534") == std::string::npos) _exit(13);
    _exit(0);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  unlink(path);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  Config root;  // root reads it: kIfReadable changes nothing then
  ASSERT_TRUE(ParseConfig(std::string("[mysql]\npassword = p\n"), "t", &root, PasswordFile::kIfReadable).ok());
  EXPECT_EQ(root.mysql.password_error, "");
}

TEST(Config, ScrubSecretsWipesThePasswordInPlace) {
  Config c;
  ASSERT_TRUE(Parse("[mysql]\npassword = a-long-password-that-lives-on-the-heap\n", &c).ok());
  const char* buffer = c.mysql.password.data();
  size_t size = c.mysql.password.size();
  ScrubSecrets(&c);
  EXPECT_EQ(c.mysql.password, "");
  EXPECT_EQ(c.mysql.password.data(), buffer) << "the same buffer, overwritten (not freed unwiped)";
  EXPECT_EQ(std::string(buffer, size), std::string(size, '\0'));
}

TEST(Config, ServiceUsersHaveDedicatedDefaults) {
  Config c;
  ASSERT_TRUE(Parse("", &c).ok());
  EXPECT_EQ(c.sshd.privsep_user, "allgo-sshd");
  EXPECT_EQ(c.sshd.lookup_user, "allgo-authkeys");
  EXPECT_EQ(c.sshd.metrics_user, "allgo-metrics");
  ASSERT_TRUE(Parse("[sshd]\nlookup_user = keys\nmetrics_user = prom\n", &c).ok());
  EXPECT_EQ(c.sshd.lookup_user, "keys");
  EXPECT_EQ(c.sshd.metrics_user, "prom");
  EXPECT_NE(ErrorOf("[sshd]\nlookup_user =\n").find("lookup_user"), std::string::npos);
}

TEST(Config, LoadsFromAPipeAndRefusesHugeFiles) {
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  std::string text = "[nss]\n";
  for (int i = 0; i < 600; ++i) text += "# comment\n";  // past the first 4 KiB buffer
  text += "home = /srv\n";
  ASSERT_EQ(write(p[1], text.data(), text.size()), static_cast<ssize_t>(text.size()));
  close(p[1]);
  Config c;
  Status s = LoadConfig("/proc/self/fd/" + std::to_string(p[0]), &c);
  close(p[0]);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(c.nss.home, "/srv");
  char path[] = "/tmp/allgo-big-XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(ftruncate(fd, (1 << 20) + 10), 0);
  close(fd);
  s = LoadConfig(path, &c);
  unlink(path);
  EXPECT_NE(s.message().find("larger than 1 MiB"), std::string::npos) << s.message();
}

TEST(Config, MissingFileSaysWhatToDo) {
  Config c;
  Status s = LoadConfig("/nonexistent/allgo-ssh.conf", &c);
  EXPECT_TRUE(s.IsNotFound());
  EXPECT_EQ(s.message(),
            "cannot read config /nonexistent/allgo-ssh.conf: No such file or directory "
            "(copy conf/allgo-ssh.conf there, or pass --config PATH)");
}

TEST(Config, PathResolution) {
  unsetenv("ALLGO_SSH_CONFIG");
  EXPECT_EQ(ResolveConfigPath(""), DefaultConfigPath());
  setenv("ALLGO_SSH_CONFIG", "/env/path.conf", 1);
  EXPECT_EQ(ResolveConfigPath(""), "/env/path.conf");
  EXPECT_EQ(ResolveConfigPath("/flag.conf"), "/flag.conf");
  unsetenv("ALLGO_SSH_CONFIG");
}

TEST(Config, NulByteRejected) {
  EXPECT_EQ(ErrorOf(std::string("[nss]\nhome = /\0x\n", 16)), "test.conf: contains a NUL byte");
}

TEST(Config, DockerBackendAndNodes) {
  Config c;
  ASSERT_TRUE(Parse("", &c).ok());
  EXPECT_EQ(c.sandbox.backend, SandboxBackend::kBridge) << "today's path stays the default";
  EXPECT_EQ(c.docker.container, "{docker_name}");
  EXPECT_EQ(c.docker.gateway_socket, "/run/allgo-ssh/gateway.sock");
  EXPECT_EQ(c.docker.gateway_user, "allgo-gateway");
  EXPECT_EQ(c.docker.agent, "/.allgo/allgo-sandbox-agent");
  EXPECT_EQ(c.docker.api_timeout, 10u);
  EXPECT_EQ(c.docker.spares, 256u);
  EXPECT_EQ(c.docker.spare_idle, 300u);
  EXPECT_EQ(c.docker.max_sessions_per_owner, 256u);
  EXPECT_FALSE(c.docker.prewarm) << "spares only after a login unless the operator asks";
  EXPECT_EQ(c.docker.prewarm_every, 60u);
  EXPECT_TRUE(c.queries.sandbox_location.empty()) << "no default: nodes are asked";

  ASSERT_TRUE(Parse("[sandbox]\nbackend = docker\n"
                    "[docker]\nnode = node1 tcp://127.0.0.1:2376\nnode = local   unix:///run/docker.sock\n"
                    "tls_ca = /a/ca.pem\ntls_cert = /a/cert.pem\ntls_key = /a/key.pem\n"
                    "container = allgo-{id}-{docker_name}\napi_timeout = 3\nspares = 0\nspare_idle = 60\n"
                    "prewarm = yes\nprewarm_every = 5\nmax_sessions_per_owner = 3\n"
                    "[queries]\nsandbox_location = SELECT node, container\n  FROM placement WHERE webapp_id = ?\n",
                    &c)
                  .ok());
  EXPECT_EQ(c.sandbox.backend, SandboxBackend::kDocker);
  ASSERT_EQ(c.docker.nodes.size(), 2u);
  EXPECT_EQ(c.docker.nodes[0].name, "node1");
  EXPECT_EQ(c.docker.nodes[0].url, "tcp://127.0.0.1:2376");
  EXPECT_EQ(c.docker.nodes[1].name, "local");
  EXPECT_EQ(c.docker.nodes[1].url, "unix:///run/docker.sock");
  EXPECT_EQ(c.docker.container, "allgo-{id}-{docker_name}");
  EXPECT_EQ(c.docker.api_timeout, 3u);
  EXPECT_EQ(c.docker.spares, 0u) << "0 turns spares off";
  EXPECT_EQ(c.docker.spare_idle, 60u);
  EXPECT_TRUE(c.docker.prewarm);
  EXPECT_EQ(c.docker.prewarm_every, 5u);
  EXPECT_EQ(c.docker.max_sessions_per_owner, 3u);
  EXPECT_EQ(c.queries.sandbox_location, "SELECT node, container FROM placement WHERE webapp_id = ?");

  // A unix-only deployment needs no certificate.
  EXPECT_TRUE(Parse("[sandbox]\nbackend = docker\n[docker]\nnode = n unix:///run/docker.sock\n", &c).ok());
}

TEST(Config, DockerErrorsSayWhatIsWrong) {
  EXPECT_EQ(ErrorOf("[sandbox]\nbackend = kubernetes\n"),
            "test.conf:2: [sandbox] backend: must be bridge (shared folders, this host) or docker "
            "(Engine API, [docker] nodes)");
  EXPECT_EQ(ErrorOf("[sandbox]\nbackend = docker\n"),
            "test.conf: [sandbox] backend = docker needs at least one [docker] node = NAME URL line");
  EXPECT_EQ(ErrorOf("[sandbox]\nbackend = docker\n[docker]\nnode = n1 tcp://127.0.0.1:2376\n"),
            "test.conf: [docker] a tcp:// node needs tls_ca, tls_cert and tls_key (the gateway's client certificate)");
  EXPECT_NE(ErrorOf("[docker]\nnode = tcp://127.0.0.1:2376\n").find("test.conf:2: [docker] node: must be NAME URL"),
            std::string::npos);
  EXPECT_NE(ErrorOf("[docker]\nnode = n1 http://127.0.0.1:2375\n").find("must start with unix:// or tcp://"),
            std::string::npos);
  EXPECT_NE(ErrorOf("[docker]\nnode = n1 tcp://127.0.0.1\n").find("tcp URL: must be HOST:PORT"), std::string::npos);
  EXPECT_NE(ErrorOf("[docker]\nnode = n1 unix://run/docker.sock\n").find("absolute path"), std::string::npos);
  EXPECT_NE(ErrorOf("[docker]\nnode = N1 unix:///a\n").find("node name 'N1' must be lowercase"), std::string::npos);
  EXPECT_EQ(ErrorOf("[docker]\nnode = n1 unix:///a\nnode = n1 unix:///b\n"),
            "test.conf:3: [docker] node: node name 'n1' is given twice");
  EXPECT_NE(ErrorOf("[docker]\ncontainer = sandbox\n").find("must contain {docker_name} or {id}"), std::string::npos)
      << "a template without a placeholder would give every webapp one container";
  EXPECT_NE(ErrorOf("[docker]\ncontainer = {name}\n").find("only {docker_name} and {id} exist"), std::string::npos);
  EXPECT_NE(ErrorOf("[docker]\ncontainer = a/{id}\n").find("'/' cannot be part of a container name"),
            std::string::npos);
  EXPECT_EQ(ErrorOf("[docker]\napi_timeout = 0\n"), "test.conf:2: [docker] api_timeout: must be a whole number from 1 to 600");
  EXPECT_EQ(ErrorOf("[docker]\nspare_idle = 5\n"), "test.conf:2: [docker] spare_idle: must be a whole number from 10 to 3000");
  EXPECT_EQ(ErrorOf("[docker]\nprewarm = always\n"), "test.conf:2: [docker] prewarm: must be true or false");
  EXPECT_EQ(ErrorOf("[docker]\nspares = 4\n\nprewarm_every = 0\n"),
            "test.conf:4: [docker] prewarm_every: must be a whole number from 1 to 3600");
  EXPECT_EQ(ErrorOf("[docker]\nprewarm_every = 1h\n"),
            "test.conf:2: [docker] prewarm_every: must be a whole number from 1 to 3600");
  EXPECT_NE(ErrorOf("[queries]\nsandbox_location = SELECT node, container FROM p\n").find("[queries] sandbox_location: must have exactly 1 '?'"),
            std::string::npos);
}

// Issue 18 finding 7b: `mh-{docker_name}{id}` named webapps mhz3 (id 41) and mhz (id 341),
// of two owners, both mh-mhz341. A template must map webapps to containers one-to-one.
TEST(Config, AContainerTemplateThatMapsTwoWebappsToOneContainerIsRefused) {
  EXPECT_EQ(ErrorOf("[docker]\nspares = 3\ncontainer = mh-{docker_name}{id}\n"),
            "test.conf:3: [docker] container: 'mh-{docker_name}{id}' maps two webapps to one container: a "
            "docker_name may end in digits, so {docker_name}{id} gives mhz3 (id 41) and mhz (id 341) the same name; "
            "put a non-digit between them, e.g. mh-{docker_name}-{id}, or use {id} first or alone");
  EXPECT_NE(ErrorOf("[docker]\ncontainer = {docker_name}07{id}\n").find("maps two webapps to one container"),
            std::string::npos)
      << "digits are no separator: a071 07 5 and a 07 1075 both give a071075";
  EXPECT_NE(ErrorOf("[docker]\ncontainer = {id}-{docker_name}-{id}\n").find("{id} appears twice"), std::string::npos);
  EXPECT_NE(ErrorOf("[docker]\ncontainer = {docker_name}{docker_name}\n").find("{docker_name} appears twice"),
            std::string::npos);
  Config c;
  for (const char* good : {"mh-{docker_name}-{id}", "mh-{docker_name}x{id}", "{docker_name}_{id}", "{id}{docker_name}",
                           "allgo-{id}-{docker_name}", "{docker_name}", "allgo-{id}", "{docker_name}{id}-x"}) {
    Status s = Parse(std::string("[docker]\ncontainer = ") + good + "\n", &c);
    if (std::string(good) == "{docker_name}{id}-x") {
      EXPECT_FALSE(s.ok()) << good;
    } else {
      EXPECT_TRUE(s.ok()) << good << ": " << s.message();
    }
  }
}

TEST(Config, WebappLabel) {
  Config c;
  ASSERT_TRUE(Parse("", &c).ok());
  EXPECT_EQ(c.docker.webapp_label, "") << "off unless the operator's controller sets it";
  ASSERT_TRUE(Parse("[docker]\nwebapp_label = allgo.webapp_id\n", &c).ok());
  EXPECT_EQ(c.docker.webapp_label, "allgo.webapp_id");
  EXPECT_NE(ErrorOf("[docker]\nwebapp_label = allgo webapp\n").find("test.conf:2: [docker] webapp_label: must be a Docker label key"),
            std::string::npos);
}

}  // namespace
}  // namespace allgo
