// allgo-sshd end to end: the real OpenSSH client tools against allgo-sshd, with the real
// MariaDB fixture and the NSS module through nsswitch.conf in the private namespace.
// Until the bridge lands, webapps log in with `[nss] shell = /bin/sh` and so run on the
// frontend as their own uid.
#include <arpa/inet.h>
#include <fcntl.h>
#include <signal.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <chrono>
#include <fstream>
#include <mutex>
#include <random>
#include <sstream>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "sshd_fixture.h"
#include "test_support.h"

namespace allgo::test {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

int ConnectLoopback(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// Reads until EOF/error or the deadline; true when the server closed the socket.
bool ClosedByPeerWithin(int fd, int timeout_ms) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  char buf[4096];
  while (true) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n <= 0) return true;
  }
}

class SshdTest : public ::testing::Test {
 protected:
  void SetUp() override {
    db().Clear();
    chmod(keys_.path().c_str(), 0755);
    owner_key_ = MakeKeyPair(keys_.path(), "owner");
    owner_id_ = db().AddUser("owner@example.org");
    db().AddKey(owner_id_, owner_key_.public_line);
    webapp_id_ = db().AddWebapp("webapp1", owner_id_);
  }

  static TestDatabase& db() { return TestDatabase::Get(); }
  uid_t WebappUid() const { return 2000 + webapp_id_; }

  TempDir keys_{"allgo-sshd-keys"};
  KeyPair owner_key_;
  uint32_t owner_id_ = 0;
  uint32_t webapp_id_ = 0;
};

// ---------------------------------------------------------------- sessions

TEST_F(SshdTest, ExecReturnsOutputStderrAndExitCode) {
  SshdServer server;
  RunResult r = server.Ssh("webapp1", owner_key_.private_path, "echo out; echo err >&2; exit 3");
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_EQ(r.out, "out\n");
  EXPECT_THAT(r.err, HasSubstr("err"));
  EXPECT_THAT(r.err, Not(HasSubstr("out")));
  r = server.Ssh("webapp1", owner_key_.private_path, "id -u");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, std::to_string(WebappUid()) + "\n");
}

TEST_F(SshdTest, EnvironmentFollowsOpenSsh) {
  SshdServer server;
  RunOptions opts;
  opts.env["LC_ALL"] = "C.UTF-8";
  opts.env["LANG"] = "C";
  opts.env["EVIL_VAR"] = "x";
  RunResult r = server.Ssh("webapp1", owner_key_.private_path, "env", {"-o", "SendEnv=LC_* LANG EVIL_VAR"}, opts);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("USER=webapp1\n"));
  EXPECT_THAT(r.out, HasSubstr("LOGNAME=webapp1\n"));
  EXPECT_THAT(r.out, HasSubstr("HOME=/\n"));
  EXPECT_THAT(r.out, HasSubstr("SHELL=/bin/sh\n"));
  EXPECT_THAT(r.out, HasSubstr("PATH="));
  EXPECT_THAT(r.out, HasSubstr("SSH_CONNECTION=127.0.0.1 "));
  EXPECT_THAT(r.out, HasSubstr("SSH_CLIENT=127.0.0.1 "));
  EXPECT_THAT(r.out, HasSubstr("ALLGO_USER=owner@example.org\n"));
  EXPECT_THAT(r.out, HasSubstr(std::string("ALLGO_SSH_CONFIG=") + AllgoConfigPath() + "\n"));
  EXPECT_THAT(r.out, HasSubstr("LC_ALL=C.UTF-8\n"));
  EXPECT_THAT(r.out, HasSubstr("LANG=C\n"));
  EXPECT_THAT(r.out, Not(HasSubstr("EVIL_VAR")));
  EXPECT_THAT(r.out, Not(HasSubstr("SSH_TTY")));
}

TEST_F(SshdTest, StdinEofReachesTheCommand) {
  SshdServer server;
  RunOptions opts;
  opts.stdin_data = "abc";
  opts.timeout_seconds = 20;
  RunResult r = server.Ssh("webapp1", owner_key_.private_path, "cat", {}, opts);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "abc");
  r = server.Ssh("webapp1", owner_key_.private_path, "wc -c", {}, opts);
  EXPECT_EQ(r.out, "3\n");
}

TEST_F(SshdTest, HundredMegabytesBothWaysKeepTheirChecksum) {
  SshdServer server;
  TempDir data("allgo-sshd-data");
  chmod(data.path().c_str(), 0777);
  std::string blob(100 * 1000 * 1000, '\0');
  std::mt19937_64 rng(42);
  for (size_t i = 0; i + 8 <= blob.size(); i += 8) {
    uint64_t v = rng();
    std::memcpy(&blob[i], &v, 8);
  }
  WriteFile(data / "local.bin", blob);
  std::string local_sum = Sh("sha256sum < " + data / "local.bin").out;
  RunOptions opts;
  opts.stdin_data = blob;
  opts.timeout_seconds = 120;
  // RekeyLimit forces several key re-exchanges in the middle of each transfer (libssh
  // accepts no channel data while one runs: nothing may be lost).
  const std::vector<std::string> rekey = {"-o", "RekeyLimit=8M"};
  RunResult up = server.Ssh("webapp1", owner_key_.private_path,
                            "cat > " + data / "remote.bin" + " && sha256sum < " + data / "remote.bin", rekey, opts);
  ASSERT_EQ(up.exit_code, 0) << up.err;
  EXPECT_EQ(up.out, local_sum);
  RunOptions down_opts;
  down_opts.timeout_seconds = 120;
  RunResult down = server.Ssh("webapp1", owner_key_.private_path, "cat " + data / "remote.bin", rekey, down_opts);
  ASSERT_EQ(down.exit_code, 0) << down.err;
  EXPECT_EQ(down.out.size(), blob.size());
  EXPECT_TRUE(down.out == blob);
}

TEST_F(SshdTest, GigabyteThroughASlowReaderKeepsItsBytesInOrder) {
  // A client whose stdout is a pipe often closes the window: libssh then polls from inside
  // ssh_channel_write, and a re-entrant read once lost or reordered data near the end of
  // the stream. 1 GiB with chacha20 also crosses both sides' default rekey point.
  SshdServer server;
  TempDir t("allgo-sshd-gig");
  std::string gen =
      "head -c 1073741824 /dev/zero | openssl enc -aes-128-ctr -nosalt -K 000102030405060708090a0b0c0d0e0f "
      "-iv 00000000000000000000000000000000";
  ASSERT_EQ(Sh(gen + " | sha256sum > " + (t / "want")).exit_code, 0);
  for (int i = 0; i < 2; ++i) {
    RunResult r = Sh(server.SshCommandLine(owner_key_.private_path, {"-o", "Ciphers=chacha20-poly1305@openssh.com"}) +
                         " webapp1@127.0.0.1 " + ShellQuote(gen) + " </dev/null | cat | sha256sum",
                     RunOptions{.timeout_seconds = 120});
    EXPECT_EQ(r.out, ReadFile(t / "want")) << "run " << i << ": " << r.err;
  }
}

TEST_F(SshdTest, PtyShellFollowsTheTerminalSizeUnderTmux) {
  SshdServer server;
  TempDir t("allgo-sshd-tmux");
  std::string sock = t / "tmux.sock";
  std::string tmux = "TERM=xterm tmux -S " + sock + " ";
  std::string ssh = server.SshCommandLine(owner_key_.private_path, {"-tt"}) + " webapp1@127.0.0.1";
  ASSERT_EQ(Sh(tmux + "new-session -d -x 100 -y 30 " + ShellQuote(ssh)).exit_code, 0);
  auto capture = [&]() { return Sh(tmux + "capture-pane -p").out; };
  auto wait_for = [&](const std::string& needle) {
    for (int i = 0; i < 250; ++i) {
      if (capture().find(needle) != std::string::npos) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  };
  Sh(tmux + "send-keys 'echo SIZE=$(stty size) TTY=$SSH_TTY T=${TERM:-none}' Enter");
  EXPECT_TRUE(wait_for("SIZE=30 100")) << capture();
  EXPECT_TRUE(wait_for("TTY=/dev/pts/")) << capture();
  EXPECT_FALSE(wait_for("T=none")) << capture();  // the client's TERM came through pty-req
  Sh(tmux + "resize-window -x 120 -y 40");
  Sh(tmux + "send-keys 'echo NEW=$(stty size)' Enter");
  EXPECT_TRUE(wait_for("NEW=40 120")) << capture();
  Sh(tmux + "send-keys 'exit 4' Enter");
  bool ended = false;
  for (int i = 0; i < 250 && !ended; ++i) {
    ended = Sh(tmux + "has-session").exit_code != 0;
    if (!ended) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_TRUE(ended) << "ssh did not end after the shell exited";
  Sh(tmux + "kill-server");
  EXPECT_TRUE(server.WaitForLog("kind=shell status=4"));
}

TEST_F(SshdTest, PtyExecReportsExitStatus) {
  SshdServer server;
  RunResult r = server.Ssh("webapp1", owner_key_.private_path, "tty; exit 6", {"-tt"});
  EXPECT_EQ(r.exit_code, 6) << r.err;
  EXPECT_THAT(r.out, HasSubstr("/dev/pts/"));
}

TEST_F(SshdTest, ExitSignalIsReported) {
  SshdServer server;
  RunResult r = server.Ssh("webapp1", owner_key_.private_path, "kill -TERM $$");
  EXPECT_EQ(r.exit_code, 255);  // what OpenSSH's client returns for exit-signal
  EXPECT_TRUE(server.WaitForLog("status=signal 15"));
}

TEST_F(SshdTest, SignalOutsideTheSshTableGivesExitStatus128PlusNInTheAuditLine) {
  TempDir t("allgo-sshd-audit");
  std::string audit = t / "audit.log";
  SshdServer server("audit_log = " + audit);
  // SIGVTALRM has no SSH name (RFC 4254 6.10): the client gets exit-status 128+26.
  RunResult r = server.Ssh("webapp1", owner_key_.private_path, "kill -VTALRM $$");
  EXPECT_EQ(r.exit_code, 128 + SIGVTALRM) << r.err;
  std::string lines;
  for (int i = 0; i < 100 && lines.find("\"event\":\"session\"") == std::string::npos; ++i) {
    lines = ReadFile(audit);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_THAT(lines, HasSubstr("\"exit_status\":" + std::to_string(128 + SIGVTALRM))) << server.log();
  EXPECT_THAT(lines, Not(HasSubstr("exit_signal")));
  // A signal with a name keeps it, and no number.
  r = server.Ssh("webapp1", owner_key_.private_path, "kill -TERM $$");
  EXPECT_EQ(r.exit_code, 255);
  for (int i = 0; i < 100 && lines.find("\"exit_signal\":\"TERM\"") == std::string::npos; ++i) {
    lines = ReadFile(audit);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_THAT(lines, HasSubstr("\"exit_signal\":\"TERM\""));
  EXPECT_THAT(lines, HasSubstr("\"exit_status\":null"));
}

TEST_F(SshdTest, ScpInBothModesSftpAndRsync) {
  SshdServer server;
  TempDir data("allgo-sshd-files");
  chmod(data.path().c_str(), 0777);
  std::string payload;
  for (int i = 0; i < 200000; ++i) payload += std::to_string(i) + "\n";
  WriteFile(data / "src.txt", payload);
  std::vector<std::string> opts = server.ClientOptions(owner_key_.private_path);
  auto with = [&](std::vector<std::string> argv, std::vector<std::string> tail) {
    argv.insert(argv.end(), opts.begin(), opts.end());
    argv.insert(argv.end(), tail.begin(), tail.end());
    return allgo::test::Run(argv);
  };
  std::string port = std::to_string(server.port());
  RunResult r = with({"scp", "-P", port}, {data / "src.txt", "webapp1@127.0.0.1:" + data / "sftp-mode.txt"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(ReadFile(data / "sftp-mode.txt"), payload);
  r = with({"scp", "-O", "-P", port}, {"webapp1@127.0.0.1:" + data / "sftp-mode.txt", data / "legacy.txt"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(ReadFile(data / "legacy.txt"), payload);

  WriteFile(data / "batch", "put " + data / "src.txt" + " " + data / "via-sftp.txt\nls " + data.path() + "\n");
  r = with({"sftp", "-b", data / "batch", "-P", port}, {"webapp1@127.0.0.1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(ReadFile(data / "via-sftp.txt"), payload);
  EXPECT_THAT(r.out, HasSubstr("via-sftp.txt"));

  r = allgo::test::Run({"rsync", "-a", "-e", server.SshCommandLine(owner_key_.private_path, {}), data / "src.txt",
           "webapp1@127.0.0.1:" + data / "via-rsync.txt"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(ReadFile(data / "via-rsync.txt"), payload);
  EXPECT_TRUE(server.WaitForLog("kind=subsystem sftp"));
}

TEST_F(SshdTest, ControlMasterCarriesSeveralChannels) {
  SshdServer server;
  TempDir t("allgo-sshd-cm");
  std::string path = t / "cm";
  RunResult m = server.Ssh("webapp1", owner_key_.private_path, "",
                           {"-o", "ControlMaster=yes", "-o", "ControlPath=" + path, "-o", "ControlPersist=30", "-N", "-f"});
  ASSERT_EQ(m.exit_code, 0) << m.err;
  std::vector<std::thread> threads;
  std::atomic<int> good{0};
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] {
      RunResult r = server.Ssh("webapp1", owner_key_.private_path, "sleep 0.2; echo ch" + std::to_string(i),
                               {"-o", "ControlPath=" + path});
      if (r.exit_code == 0 && r.out == "ch" + std::to_string(i) + "\n") ++good;
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(good.load(), 4);
  RunResult r = server.Ssh("webapp1", owner_key_.private_path, "exit 9", {"-o", "ControlPath=" + path});
  EXPECT_EQ(r.exit_code, 9);
  allgo::test::Run({"ssh", "-o", "ControlPath=" + path, "-O", "exit", "webapp1@127.0.0.1"});
  // One TCP connection served all of them.
  std::string log = server.log();
  size_t connections = 0;
  for (size_t pos = 0; (pos = log.find("auth accepted", pos)) != std::string::npos; ++pos) ++connections;
  EXPECT_EQ(connections, 1u);
}

TEST_F(SshdTest, MaxSessionsPerConnectionIsEnforced) {
  SshdServer server("max_sessions = 2");
  TempDir t("allgo-sshd-cm");
  std::string path = t / "cm";
  RunResult m = server.Ssh("webapp1", owner_key_.private_path, "",
                           {"-o", "ControlMaster=yes", "-o", "ControlPath=" + path, "-o", "ControlPersist=30", "-N", "-f"});
  ASSERT_EQ(m.exit_code, 0) << m.err;
  std::vector<std::thread> threads;
  std::atomic<int> ok{0}, refused{0};
  for (int i = 0; i < 3; ++i) {
    threads.emplace_back([&] {
      RunResult r = server.Ssh("webapp1", owner_key_.private_path, "sleep 1; echo done", {"-o", "ControlPath=" + path});
      if (r.exit_code == 0 && r.out == "done\n") ++ok;
      if (r.err.find("refused by peer") != std::string::npos) ++refused;
    });
  }
  for (auto& th : threads) th.join();
  // The master refuses the third channel; OpenSSH's client then falls back to a connection
  // of its own, so all three commands still run.
  EXPECT_EQ(refused.load(), 1);
  EXPECT_EQ(ok.load(), 3);
  EXPECT_TRUE(server.WaitForLog("max_sessions (2) reached"));
  RunResult after = server.Ssh("webapp1", owner_key_.private_path, "echo again", {"-o", "ControlPath=" + path});
  EXPECT_EQ(after.out, "again\n");
  allgo::test::Run({"ssh", "-o", "ControlPath=" + path, "-O", "exit", "webapp1@127.0.0.1"});
}

TEST_F(SshdTest, FiftyParallelSessions) {
  SshdServer server("max_startups = 100:30:200");
  std::vector<std::thread> threads;
  std::atomic<int> good{0};
  for (int i = 0; i < 50; ++i) {
    threads.emplace_back([&, i] {
      RunResult r = server.Ssh("webapp1", owner_key_.private_path, "echo n" + std::to_string(i));
      if (r.exit_code == 0 && r.out == "n" + std::to_string(i) + "\n") ++good;
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(good.load(), 50);
}

// ---------------------------------------------------------------- authentication

TEST_F(SshdTest, RefusedLogins) {
  KeyPair other = MakeKeyPair(keys_.path(), "other");
  uint32_t other_id = db().AddUser("other@example.org");
  db().AddKey(other_id, other.public_line);
  db().AddWebapp("otherapp", other_id);
  KeyPair inactive = MakeKeyPair(keys_.path(), "inactive");
  uint32_t inactive_id = db().AddUser("gone@example.org", /*active=*/false);
  db().AddKey(inactive_id, inactive.public_line);
  db().AddWebapp("goneapp", inactive_id);
  KeyPair super = MakeKeyPair(keys_.path(), "super");
  uint32_t super_id = db().AddUser("root@example.org", true, /*superuser=*/true);
  db().AddKey(super_id, super.public_line);

  SshdServer server;
  struct Case {
    const char* what;
    std::string user;
    std::string key;
  } cases[] = {
      {"unknown user", "nosuchapp", owner_key_.private_path},
      {"other user's key", "webapp1", other.private_path},
      {"inactive owner", "goneapp", inactive.private_path},
      {"superuser by default", "webapp1", super.private_path},
      {"system account", "root", owner_key_.private_path},
  };
  std::string expected_err;
  for (const auto& c : cases) {
    RunResult r = server.Ssh(c.user, c.key, "echo in");
    EXPECT_EQ(r.exit_code, 255) << c.what;
    EXPECT_EQ(r.out, "") << c.what;
    EXPECT_THAT(r.err, HasSubstr("Permission denied (publickey)")) << c.what;
  }
  EXPECT_THAT(server.log(), HasSubstr("auth refused: client=127.0.0.1:"));
  EXPECT_THAT(server.log(), HasSubstr("user=nosuchapp"));
  // The owner still gets in.
  EXPECT_EQ(server.Ssh("webapp1", owner_key_.private_path, "echo in").out, "in\n");
  EXPECT_THAT(server.log(), HasSubstr("auth accepted: client=127.0.0.1:"));
  EXPECT_THAT(server.log(), HasSubstr("account=owner@example.org"));
}

// The identity rule (DESIGN.md): whoever owns a webapp row named root, daemon or like a local
// account, or whose uid a local account owns, gets no login — and the log says why. The
// account of a login is built from the row, so `id` shows the webapp's own uid.
TEST_F(SshdTest, WebappsClaimingOtherAccountsCannotLogIn) {
  for (const char* name : {"root", "daemon", "localdev"}) db().AddWebapp(name, owner_id_);
  const uint32_t victim = db().AddWebapp("victim", owner_id_);
  const LocalAccount localdev("localdev", 1500, "/", "/bin/sh");
  const LocalAccount squatter("squatter", 2000 + victim, "/", "/bin/sh");
  SshdServer server;
  for (const char* name : {"root", "daemon", "localdev", "victim", "squatter"}) {
    RunResult r = server.Ssh(name, owner_key_.private_path, "id -u");
    EXPECT_EQ(r.exit_code, 255) << name << " let the owner of a webapp in: " << r.out;
    EXPECT_EQ(r.out, "") << name;
    EXPECT_THAT(r.err, HasSubstr("Permission denied (publickey)")) << name;
  }
  EXPECT_THAT(server.log(), HasSubstr("user=root key=SHA256:"));
  EXPECT_THAT(server.log(), HasSubstr("the name 'root' belongs to another account (uid 0)"));
  EXPECT_THAT(server.log(), HasSubstr("the name 'localdev' belongs to another account (uid 1500)"));
  EXPECT_THAT(server.log(), HasSubstr("belongs to another account ('squatter')"));
  RunResult ok = server.Ssh("webapp1", owner_key_.private_path, "id -u; id -g");
  EXPECT_EQ(ok.out, std::to_string(WebappUid()) + "\n65534\n") << ok.err;
}

// The session account comes from the row and [nss], not from getpwnam: with the NSS module
// out of nsswitch.conf the webapp still logs in as its own uid (and only that).
TEST_F(SshdTest, SessionAccountIsBuiltFromTheWebappRow) {
  const std::string nsswitch = ReadFile("/etc/nsswitch.conf");
  struct Restore {
    std::string text;
    ~Restore() { WriteFile("/etc/nsswitch.conf", text); }
  } restore{nsswitch};
  std::string files_only;
  std::istringstream in(nsswitch);
  for (std::string line; std::getline(in, line);) {
    files_only += (line.rfind("passwd:", 0) == 0 ? std::string("passwd: files") : line) + "\n";
  }
  WriteFile("/etc/nsswitch.conf", files_only);
  SshdServer server;
  RunResult r = server.Ssh("webapp1", owner_key_.private_path, "id -u; id -g; echo $HOME $SHELL $USER");
  EXPECT_EQ(r.exit_code, 0) << r.err << server.log();
  EXPECT_EQ(r.out, std::to_string(WebappUid()) + "\n65534\n/ /bin/sh webapp1\n");
}

TEST_F(SshdTest, SuperuserAllowedWhenConfigured) {
  KeyPair super = MakeKeyPair(keys_.path(), "super");
  uint32_t super_id = db().AddUser("root@example.org", true, true);
  db().AddKey(super_id, super.public_line);
  SshdServer server("", "[authkeys]\nallow_superusers = true\n");
  RunResult r = server.Ssh("webapp1", super.private_path, "echo $ALLGO_USER");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "root@example.org\n");
}

TEST_F(SshdTest, OnlyPublickeyIsOffered) {
  SshdServer server;
  RunResult r = allgo::test::Run({"ssh", "-F", "/dev/null", "-v", "-o", "StrictHostKeyChecking=no", "-o",
                     "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o",
                     "PreferredAuthentications=password,keyboard-interactive", "-p", std::to_string(server.port()),
                     "webapp1@127.0.0.1", "true"});
  EXPECT_EQ(r.exit_code, 255);
  EXPECT_THAT(r.err, HasSubstr("Authentications that can continue: publickey\r\n"));
  EXPECT_THAT(r.err, Not(HasSubstr("continue: publickey,")));
  EXPECT_THAT(r.err, HasSubstr("Permission denied (publickey)"));
}

TEST_F(SshdTest, AuthorizedKeysCommandIsUsedWhenConfigured) {
  TempDir helper_dir("allgo-sshd-akc");
  chmod(helper_dir.path().c_str(), 0755);
  std::string helper = helper_dir / "keys.sh";
  // Prints the owner's key for webapp1 only; records which user it and its parent (the
  // lookup child) ran as.
  std::string ran_as = helper_dir / "ran-as";
  WriteFile(ran_as, "", 0666);
  chmod(ran_as.c_str(), 0666);
  WriteFile(helper,
            "#!/bin/sh\necho \"$(id -u) $(awk '/^Uid:/{print $2,$3,$4,$5}' /proc/$PPID/status)\" >> " + ran_as +
                "\n[ \"$1\" = webapp1 ] || exit 0\necho '" + owner_key_.public_line + "'\n",
            0755);
  KeyPair stranger = MakeKeyPair(keys_.path(), "stranger");
  SshdServer server("authorized_keys_command = " + helper + " %u");
  RunResult r = server.Ssh("webapp1", owner_key_.private_path, "echo via-command");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "via-command\n");
  EXPECT_EQ(server.Ssh("webapp1", stranger.private_path, "true").exit_code, 255);
  // Neither the helper nor the lookup child that parses its output is root: both are
  // [sshd] lookup_user, a user of its own.
  std::string lookup = std::to_string(UidOf("allgo-authkeys"));
  std::string line = ReadFile(ran_as).substr(0, ReadFile(ran_as).find('\n'));
  EXPECT_EQ(line, lookup + " " + lookup + " " + lookup + " " + lookup + " " + lookup);
  EXPECT_NE(UidOf("allgo-authkeys"), UidOf("allgo-sshd"));
}

TEST_F(SshdTest, TooManyAuthFailuresDisconnect) {
  std::vector<std::string> keys;
  for (int i = 0; i < 4; ++i) keys.push_back(MakeKeyPair(keys_.path(), "k" + std::to_string(i)).private_path);
  SshdServer server("max_auth_tries = 2");
  std::vector<std::string> extra;
  for (const auto& k : keys) {
    extra.push_back("-i");
    extra.push_back(k);
  }
  // The owner's key comes last: the server hangs up before it is tried.
  RunResult r = server.Ssh("webapp1", keys[0], "echo in", extra);
  EXPECT_EQ(r.exit_code, 255);
  EXPECT_EQ(r.out, "");
  EXPECT_TRUE(server.WaitForLog("too many authentication failures"));
}

// ---------------------------------------------------------------- refusals that keep the connection

TEST_F(SshdTest, ForwardingIsRefusedAndTheConnectionLivesOn) {
  SshdServer server;
  int lport = FreeLoopbackPort();
  std::thread poke([&] {
    for (int i = 0; i < 100; ++i) {
      int fd = ConnectLoopback(lport);
      if (fd >= 0) {
        ClosedByPeerWithin(fd, 2000);  // the client closes it once the server refuses
        close(fd);
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
  RunResult l = server.Ssh("webapp1", owner_key_.private_path, "sleep 1.5; echo alive",
                           {"-o", "LogLevel=INFO", "-L", "127.0.0.1:" + std::to_string(lport) + ":127.0.0.1:22"});
  poke.join();
  EXPECT_EQ(l.exit_code, 0) << l.err;
  EXPECT_EQ(l.out, "alive\n");
  EXPECT_THAT(l.err, HasSubstr("open failed"));

  RunResult rf = server.Ssh("webapp1", owner_key_.private_path, "echo alive",
                            {"-o", "LogLevel=INFO", "-R", "127.0.0.1:" + std::to_string(FreeLoopbackPort()) + ":127.0.0.1:22"});
  EXPECT_EQ(rf.exit_code, 0) << rf.err;
  EXPECT_EQ(rf.out, "alive\n");
  EXPECT_THAT(rf.err, HasSubstr("remote port forwarding failed"));

  RunResult w = server.Ssh("webapp1", owner_key_.private_path, "", {"-W", "127.0.0.1:22"});
  EXPECT_EQ(w.exit_code, 255);

  TempDir agent_dir("allgo-sshd-agent");
  RunOptions agent_env;
  std::string agent_sock = agent_dir / "agent.sock";
  RunResult agent = allgo::test::Run({"ssh-agent", "-s", "-a", agent_sock});
  ASSERT_EQ(agent.exit_code, 0) << agent.err;
  size_t pid_at = agent.out.find("SSH_AGENT_PID=");
  ASSERT_NE(pid_at, std::string::npos) << agent.out;
  pid_t agent_pid = static_cast<pid_t>(std::stol(agent.out.substr(pid_at + 14)));
  agent_env.env["SSH_AUTH_SOCK"] = agent_sock;
  RunResult a = server.Ssh("webapp1", owner_key_.private_path, "echo \"agent=[$SSH_AUTH_SOCK]\"", {"-A"}, agent_env);
  kill(agent_pid, SIGTERM);
  EXPECT_EQ(a.exit_code, 0) << a.err;
  EXPECT_EQ(a.out, "agent=[]\n");

  RunOptions x_env;
  x_env.env["DISPLAY"] = ":0";
  RunResult x = server.Ssh("webapp1", owner_key_.private_path, "echo \"display=[$DISPLAY]\"",
                           {"-X", "-o", "LogLevel=INFO"}, x_env);
  EXPECT_EQ(x.exit_code, 0) << x.err;
  EXPECT_EQ(x.out, "display=[]\n");
  EXPECT_THAT(x.err, HasSubstr("X11 forwarding request failed"));
}

// ---------------------------------------------------------------- hostile clients

TEST_F(SshdTest, ServerKeepsServingAfterGarbageAndLongUserNames) {
  SshdServer server;
  std::mt19937 rng(7);
  for (int round = 0; round < 3; ++round) {
    int fd = ConnectLoopback(server.port());
    ASSERT_GE(fd, 0);
    std::string garbage(65536, '\0');
    for (auto& c : garbage) c = static_cast<char>(rng());
    if (round == 1) garbage = "SSH-2.0-OpenSSH_9.2\r\n" + garbage;  // valid banner, garbage packets
    ssize_t ignored = send(fd, garbage.data(), garbage.size(), MSG_NOSIGNAL);
    (void)ignored;
    EXPECT_TRUE(ClosedByPeerWithin(fd, 10000)) << "round " << round;
    close(fd);
  }
  std::string long_user(300, 'a');
  RunResult r = server.Ssh(long_user, owner_key_.private_path, "true");
  EXPECT_EQ(r.exit_code, 255);
  EXPECT_THAT(r.err, HasSubstr("Permission denied"));
  EXPECT_EQ(server.Ssh("webapp1", owner_key_.private_path, "echo still").out, "still\n");
}

TEST_F(SshdTest, HalfOpenFloodDoesNotLockOutRealUsers) {
  SshdServer server("login_grace_time = 2");
  std::vector<int> idle;
  for (int i = 0; i < 60; ++i) {
    int fd = ConnectLoopback(server.port());
    if (fd >= 0) idle.push_back(fd);
  }
  ASSERT_EQ(idle.size(), 60u);
  // Early drops (max_startups) and the login grace time clear the flood; a real user gets
  // in within a few seconds, retrying like a person would.
  bool in = false;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  while (!in && std::chrono::steady_clock::now() < deadline) {
    in = server.Ssh("webapp1", owner_key_.private_path, "echo in").out == "in\n";
    if (!in) std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  EXPECT_TRUE(in);
  for (int fd : idle) {
    EXPECT_TRUE(ClosedByPeerWithin(fd, 8000));
    close(fd);
  }
  EXPECT_THAT(server.log(), HasSubstr("max_startups"));
  EXPECT_THAT(server.log(), HasSubstr("login grace time"));
}

TEST_F(SshdTest, HundredSimultaneousLoginsWithTheDefaultsAreAllServed) {
  // A parallel scp/rsync script: 100 logins at once from one client. OpenSSH's default
  // MaxStartups 10:30:100 resets about half of them; the defaults here queue them instead.
  SshdServer server;
  std::vector<std::thread> threads;
  std::atomic<int> good{0};
  std::mutex failures_mutex;
  std::string failures;
  std::atomic<long> slowest_ms{0};
  for (int i = 0; i < 100; ++i) {
    threads.emplace_back([&, i] {
      auto t0 = std::chrono::steady_clock::now();
      RunResult r = server.Ssh("webapp1", owner_key_.private_path, "echo n" + std::to_string(i));
      long ms = static_cast<long>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                      std::chrono::steady_clock::now() - t0).count());
      for (long seen = slowest_ms; ms > seen && !slowest_ms.compare_exchange_weak(seen, ms);) {
      }
      if (r.exit_code == 0 && r.out == "n" + std::to_string(i) + "\n") {
        ++good;
      } else {
        std::lock_guard<std::mutex> lock(failures_mutex);
        failures += "login " + std::to_string(i) + ": exit " + std::to_string(r.exit_code) + " " + r.err + "\n";
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(good.load(), 100) << failures;
  EXPECT_THAT(server.log(), Not(HasSubstr("refused:"))) << "nothing was refused";
  std::printf("100 simultaneous logins: slowest %ld ms\n", slowest_ms.load());
}

// Sum of the proportional set size (KiB) of the listener and all its descendants.
long ServerPssKib(pid_t listener, size_t* processes) {
  long total = 0;
  std::vector<pid_t> todo = {listener};
  *processes = 0;
  while (!todo.empty()) {
    pid_t p = todo.back();
    todo.pop_back();
    std::ifstream f("/proc/" + std::to_string(p) + "/smaps_rollup");
    std::string key;
    long value = 0;
    while (f >> key) {
      if (key == "Pss:" && f >> value) total += value;
    }
    ++*processes;
    for (pid_t c : ChildrenOf(p)) todo.push_back(c);
  }
  return total;
}

TEST_F(SshdTest, IdleAndSlowlorisFloodLeavesRoomForARealLoginInBoundedMemory) {
  // Defaults: max_startups 32:30:1000, per_source_max_startups 200, version_timeout 5.
  SshdServer server;
  ASSERT_EQ(server.Ssh("webapp1", owner_key_.private_path, "true").exit_code, 0) << server.log();
  for (int i = 0; i < 50 && !ChildrenOf(server.pid()).empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));  // that login's processes exit
  }
  size_t base_processes = 0;
  long base_pss = ServerPssKib(server.pid(), &base_processes);

  // Everything from 127.0.0.1, the real user's own address: the hardest case (one source).
  std::vector<int> idle;
  for (int i = 0; i < 200; ++i) {
    int fd = ConnectLoopback(server.port());
    if (fd >= 0) idle.push_back(fd);
  }
  ASSERT_EQ(idle.size(), 200u);
  // Slowloris: a version line sent one byte a second, never completed within the timeout.
  std::vector<int> slow;
  for (int i = 0; i < 20; ++i) slow.push_back(ConnectLoopback(server.port()));
  const std::string line = "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n";
  std::vector<std::chrono::steady_clock::duration> slow_closed(slow.size());
  auto flood_start = std::chrono::steady_clock::now();
  std::atomic<bool> stop{false};
  std::thread loris([&] {
    std::vector<bool> open(slow.size(), true);
    for (size_t sent = 0; sent < line.size() && !stop; ++sent) {
      for (size_t i = 0; i < slow.size(); ++i) {
        if (open[i] && send(slow[i], &line[sent], 1, MSG_NOSIGNAL | MSG_DONTWAIT) != 1) {
          open[i] = false;
          slow_closed[i] = std::chrono::steady_clock::now() - flood_start;
        }
      }
      for (int t = 0; t < 10 && !stop; ++t) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });
  std::this_thread::sleep_for(std::chrono::seconds(1));

  auto t0 = std::chrono::steady_clock::now();
  RunResult r = server.Ssh("webapp1", owner_key_.private_path, "echo in");
  auto login = std::chrono::steady_clock::now() - t0;
  EXPECT_EQ(r.out, "in\n") << r.err << server.log().substr(0, 4000);
  EXPECT_LT(login, std::chrono::seconds(10));

  // Memory: the pending connections have no process (a socket and a few hundred bytes in the
  // listener each); idle ones hold at most half of the 32 running slots: 16 monitor + network
  // child pairs, measured at about 0.6 MiB PSS each (forked from the listener, pages shared).
  // 32 MiB above the resting size leaves room for twice that, plus the real login.
  size_t processes = 0;
  long pss = ServerPssKib(server.pid(), &processes);
  EXPECT_LE(processes, base_processes + 2 * 16 + 4) << "pending connections must not have processes";
  EXPECT_LT(pss - base_pss, 32 * 1024) << "PSS " << pss << " KiB, at rest " << base_pss << " KiB";
  std::printf("flood of 200 idle + 20 slowloris: login %.0f ms, %zu server processes (rest %zu), PSS %ld KiB (rest %ld KiB)\n",
              std::chrono::duration<double, std::milli>(login).count(), processes, base_processes, pss, base_pss);

  // Slowloris connections are closed at version_timeout (5 s), not login_grace_time (30 s).
  for (int fd : slow) EXPECT_TRUE(ClosedByPeerWithin(fd, 8000));
  // Idle connections wait (queued, not reset): only those whose place a newcomer took are
  // gone (per_source_max_startups 200: one per slowloris and real login).
  int idle_open = 0;
  for (int fd : idle) {
    char c;
    ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);  // admitted ones have our version line
    if (n > 0 || (n < 0 && errno == EAGAIN)) ++idle_open;
  }
  EXPECT_GE(idle_open, 170);
  stop = true;
  loris.join();
  for (size_t i = 0; i < slow.size(); ++i) {
    EXPECT_LT(slow_closed[i], std::chrono::seconds(8)) << "slowloris " << i << " was never closed";
  }
  for (int fd : slow) close(fd);
  for (int fd : idle) close(fd);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  while (ServerPssKib(server.pid(), &processes) > 0 && processes > base_processes &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_LE(processes, base_processes) << "connection processes left behind";
  EXPECT_EQ(server.Ssh("webapp1", owner_key_.private_path, "echo after").out, "after\n");
}

// A client that sends nothing until it has the server's version, as libssh's client does.
// Returns the server's version line ("" when none came within `timeout_ms`).
std::string ServerVersionForASilentClient(int port, int timeout_ms) {
  int fd = ConnectLoopback(port);
  if (fd < 0) return "";
  std::string got;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (got.find('\n') == std::string::npos) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    pollfd p{fd, POLLIN, 0};
    if (left.count() <= 0 || poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
    char buf[256];
    ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return got.substr(0, got.find('\n') + 1);
}

TEST_F(SshdTest, ClientsThatWaitForTheServersVersionAreServedAlsoWithOptionalProxy) {
  {
    SshdServer server;
    EXPECT_THAT(ServerVersionForASilentClient(server.port(), 3000), testing::StartsWith("SSH-2.0-"));
  }
  SshdServer server("proxy_protocol = optional\nproxy_trusted = 127.0.0.1/32");
  // From a trusted source the server first gives a proxy a moment to send its header.
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_THAT(ServerVersionForASilentClient(server.port(), 5000), testing::StartsWith("SSH-2.0-")) << server.log();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(3));
  // Real logins with and without a PROXY header still work.
  EXPECT_EQ(server.Ssh("webapp1", owner_key_.private_path, "echo direct").out, "direct\n");
  std::string proxy = "bash -c 'exec socat - TCP:127.0.0.1:" + std::to_string(server.port()) +
                      " < <(printf \"PROXY TCP4 203.0.113.9 127.0.0.1 40001 22\\r\\n\"; exec cat)'";
  RunResult r = server.Ssh("webapp1", owner_key_.private_path, "echo proxied", {"-o", "ProxyCommand=" + proxy});
  EXPECT_EQ(r.out, "proxied\n") << r.err << server.log();
  EXPECT_TRUE(server.WaitForLog("connection from 203.0.113.9:40001 via proxy")) << server.log();
}

TEST_F(SshdTest, RequiredProxyClosesASilentTrustedConnectionAtVersionTimeout) {
  SshdServer server("proxy_protocol = required\nproxy_trusted = 127.0.0.1/32\nversion_timeout = 2");
  int fd = ConnectLoopback(server.port());
  ASSERT_GE(fd, 0);
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_TRUE(ClosedByPeerWithin(fd, 6000));
  EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(1500));
  close(fd);
  EXPECT_TRUE(server.WaitForLog("within version_timeout (2 s)")) << server.log();
}

// ---------------------------------------------------------------- privilege separation

// The monitor and network child of the one open connection to `server` (listener → monitor →
// network child); false if they did not appear within 5 s.
bool FindConnectionProcesses(const SshdServer& server, pid_t* monitor, pid_t* net) {
  for (int i = 0; i < 250; ++i) {
    for (pid_t m : ChildrenOf(server.pid())) {
      for (pid_t n : ChildrenOf(m)) {
        *monitor = m;
        *net = n;
        return true;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

TEST_F(SshdTest, PreAuthProcessIsUnprivilegedAndChrooted) {
  SshdServer server;
  int fd = ConnectLoopback(server.port());
  ASSERT_GE(fd, 0);
  // Find listener → monitor → network child while the client has not even sent a banner.
  pid_t monitor = -1, net = -1;
  ASSERT_TRUE(FindConnectionProcesses(server, &monitor, &net));
  EXPECT_EQ(ProcStatusField(monitor, "Uid"), "0\t0\t0\t0");
  std::string uid = std::to_string(UidOf("allgo-sshd")), gid = std::to_string(GidOf("allgo-sshd"));
  // Found right after its fork, it may still be setting up as root (no network byte read).
  EXPECT_TRUE(WaitFor([&] { return ProcStatusField(net, "Seccomp") == "2"; }, 5000));
  EXPECT_EQ(ProcStatusField(net, "Uid"), uid + "\t" + uid + "\t" + uid + "\t" + uid);
  EXPECT_EQ(ProcStatusField(net, "Gid"), gid + "\t" + gid + "\t" + gid + "\t" + gid);
  EXPECT_EQ(ProcStatusField(net, "Groups"), gid);
  EXPECT_EQ(ProcStatusField(net, "NoNewPrivs"), "1");
  EXPECT_EQ(ProcStatusField(net, "Seccomp"), "2");  // filter mode
  char root[4096];
  ssize_t n = readlink(("/proc/" + std::to_string(net) + "/root").c_str(), root, sizeof(root) - 1);
  ASSERT_GT(n, 0);
  EXPECT_EQ(std::string(root, static_cast<size_t>(n)), server.chroot_dir());
  struct stat st{};
  ASSERT_EQ(stat(server.chroot_dir().c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 0u);
  EXPECT_EQ(st.st_mode & 07777, 0755u);
  close(fd);

  // After authentication the session runs as the webapp, the monitor stays root.
  RunResult r = server.Ssh("webapp1", owner_key_.private_path, "grep -E '^(Uid|Gid|NoNewPrivs):' /proc/self/status");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  uid = std::to_string(WebappUid());
  EXPECT_THAT(r.out, HasSubstr("Uid:\t" + uid + "\t" + uid + "\t" + uid + "\t" + uid));
  EXPECT_THAT(r.out, HasSubstr("Gid:\t65534\t65534\t65534\t65534"));
}

// Issue 18, finding 6: a member line in /etc/group (or LDAP) equal to a webapp's name — a
// stale account in `docker`, say — must not hand that group to the session: anyone who can
// create a webapp chooses its name. The session has the [nss] gid and nothing else.
TEST_F(SshdTest, AGroupListingTheWebappsNameGivesTheSessionNothing) {
  const std::string group_before = ReadFile("/etc/group");
  WriteFile("/etc/group", group_before + "allgo-test-docker:x:4242:someone,webapp1\n");
  struct Restore {
    std::string text;
    ~Restore() { WriteFile("/etc/group", text); }
  } restore{group_before};
  SshdServer server;  // writes the allgo config the NSS module reads
  RunResult id = test::Run({"id", "-G", "webapp1"});
  ASSERT_EQ(id.out, "65534 4242\n") << "the control: glibc lists the group. " << id.err;
  RunResult r = server.Ssh("webapp1", owner_key_.private_path, "id -G");
  ASSERT_EQ(r.exit_code, 0) << r.err << server.log();
  EXPECT_EQ(r.out, "65534\n");
}

// Opens a connection (no byte sent) and checks, once its network child has dropped (so is
// past the scrub, before its first read), where the password can be found.
void ExpectPasswordOnlyInTheMonitor(const SshdServer& server) {
  std::string password = TestDatabase::kPassword;
  int fd = ConnectLoopback(server.port());
  ASSERT_GE(fd, 0);
  pid_t monitor = -1, net = -1;
  ASSERT_TRUE(FindConnectionProcesses(server, &monitor, &net));
  std::string uid = std::to_string(UidOf("allgo-sshd"));
  for (int i = 0; i < 250 && ProcStatusField(net, "Uid") != uid + "\t" + uid + "\t" + uid + "\t" + uid; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  // Controls: the same search finds the password in the monitor, which needs it, and does
  // read the network child's memory (its config is still there, the chroot path in it).
  EXPECT_TRUE(MemoryContains(monitor, password)) << "monitor " << monitor << ", network child " << net << "\n"
                                                 << server.log();
  // A freed copy loses its first 16 bytes to the allocator's links, a reused one its head:
  // the network child must hold neither end of the password.
  EXPECT_FALSE(MemoryContains(net, password.substr(0, 16))) << "the network child holds the [mysql] password";
  EXPECT_FALSE(MemoryContains(net, password.substr(password.size() - 16))) << "the network child holds the [mysql] password";
  EXPECT_TRUE(MemoryContains(net, server.chroot_dir())) << server.log();
  close(fd);
  for (int i = 0; i < 250 && !ChildrenOf(server.pid()).empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

TEST_F(SshdTest, NetworkChildHoldsNoDatabaseSecret) {
  SshdServer server;
  ASSERT_THAT(ReadFile(AllgoConfigPath()), HasSubstr("password = " + std::string(TestDatabase::kPassword)));
  ExpectPasswordOnlyInTheMonitor(server);
  // A reload reads the config again (and frees the old one): still no stray copy.
  kill(server.pid(), SIGHUP);
  ASSERT_TRUE(server.WaitForLog("SIGHUP: configuration reloaded"));
  ExpectPasswordOnlyInTheMonitor(server);
  // And logins still work after the scrub.
  RunResult r = server.Ssh("webapp1", owner_key_.private_path, "echo ok");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "ok\n");
}

// 48 random hex characters: a password in no binary and no other file, so that no copy
// elsewhere can hide a leak or fake a find; long enough that a freed copy, whose first 16
// bytes the allocator overwrites, still holds 32 characters of it.
std::string RandomPassword() {
  std::random_device random;
  std::string password;
  for (int i = 0; i < 48; ++i) password += "0123456789abcdef"[random() % 16];
  return password;
}

// (Re)creates the read-only database account `sshrandom` with `password`; its [mysql]
// section, the password inline.
std::string RandomPasswordAccount(TestDatabase& db, const std::string& password) {
  db.Exec("DROP USER IF EXISTS 'sshrandom'@'localhost'; CREATE USER 'sshrandom'@'localhost' IDENTIFIED BY '" +
          password + "'; GRANT SELECT ON allgo.* TO 'sshrandom'@'localhost'");
  return "[mysql]\nsocket = " + db.socket() + "\ndatabase = allgo\nuser = sshrandom\npassword = " + password +
         "\nconnect_timeout = 2\n";
}

// Every process under `pid`, recursively.
std::vector<pid_t> DescendantsOf(pid_t pid) {
  std::vector<pid_t> all;
  for (pid_t child : ChildrenOf(pid)) {
    all.push_back(child);
    for (pid_t grandchild : DescendantsOf(child)) all.push_back(grandchild);
  }
  return all;
}

// Searches every process of the server. Those that talk to the database (root: the listener
// and the monitors; lookup_user: the health child and lookup children) are the controls:
// the same search must find the running password in the listener. Every other one — network
// children (privsep_user), the metrics process (metrics_user), sessions (the webapp) — must
// hold any 16-character third of a password the server ever read: a freed copy loses its
// first 16 bytes to the allocator's links, a reused one its head.
void ExpectNoUnprivilegedProcessHolds(const SshdServer& server, const std::string& running,
                                      const std::vector<std::string>& passwords, const std::string& when,
                                      size_t want_network_children, size_t want_others) {
  const std::string privsep = std::to_string(UidOf("allgo-sshd"));
  const std::string lookup = std::to_string(UidOf("allgo-authkeys"));
  EXPECT_TRUE(MemoryContains(server.pid(), running)) << when << ": the control failed: the listener holds it";
  size_t network_children = 0, searched = 0;
  std::string tree;  // every process, for the failure messages
  for (pid_t pid : DescendantsOf(server.pid())) {
    std::string uid = ProcStatusField(pid, "Uid");
    uid = uid.substr(0, uid.find('\t'));
    std::string exe;
    std::ifstream(std::string("/proc/") + std::to_string(pid) + "/comm") >> exe;
    tree += " " + std::to_string(pid) + " (" + exe + ", uid " + uid + ")";
    if (uid.empty() || uid == "0" || uid == lookup) continue;
    network_children += uid == privsep;
    ++searched;
    for (const std::string& password : passwords) {
      for (const std::string& piece : {password.substr(0, 16), password.substr(16, 16), password.substr(32)}) {
        EXPECT_FALSE(MemoryContains(pid, piece)) << when << ": process " << pid << " (" << exe << ", uid " << uid
                                                 << ") holds the [mysql] password " << password;
      }
    }
  }
  EXPECT_EQ(network_children, want_network_children) << when << "; processes:" << tree;
  EXPECT_EQ(searched, want_network_children + want_others) << when << "; processes:" << tree;
}

// Processes of the server running as the privsep user: network children past their drop
// (so past their scrub).
size_t DroppedNetworkChildren(const SshdServer& server) {
  const std::string privsep = std::to_string(UidOf("allgo-sshd"));
  size_t dropped = 0;
  for (pid_t pid : DescendantsOf(server.pid())) {
    std::string uid = ProcStatusField(pid, "Uid");
    dropped += uid.substr(0, uid.find('\t')) == privsep;
  }
  return dropped;
}

// Issue 18, finding 4: before authentication, during a session, after a SIGHUP reload to a
// new password (from a root-only password_file) and after a reload that failed on a line
// below a third password, no process of allgo-sshd that parses network bytes (or HTTP) or
// runs a session holds a database password.
TEST_F(SshdTest, NoUnprivilegedProcessHoldsARandomDatabasePassword) {
  const std::string first = RandomPassword();
  const std::string mysql = RandomPasswordAccount(db(), first);
  const int metrics_port = FreeLoopbackPort();
  SshdServer server("metrics_listen = 127.0.0.1:" + std::to_string(metrics_port), "", "/bin/sh", mysql);
  const std::string config = ReadFile(AllgoConfigPath());
  ASSERT_THAT(config, HasSubstr("password = " + first));
  auto check = [&](const std::string& running, const std::vector<std::string>& passwords, const std::string& when) {
    // Before authentication: a connection that has sent nothing. Besides its network child,
    // the metrics process is searched.
    int fd = ConnectLoopback(server.port());
    ASSERT_GE(fd, 0);
    ASSERT_TRUE(WaitFor([&] { return DroppedNetworkChildren(server) == 1; }, 10000)) << when;
    ExpectNoUnprivilegedProcessHolds(server, running, passwords, when + ", before authentication", 1, 1);
    // During a session: a second connection, logged in (its lookup used the database); the
    // session process is searched too.
    const std::string log = keys_ / ("session " + when + ".log");
    Daemon session([&] {
      std::vector<std::string> argv = {"ssh"};
      for (const std::string& option : server.ClientOptions(owner_key_.private_path)) argv.push_back(option);
      for (const char* word : {"-p", "", "webapp1@127.0.0.1", "echo in; exec sleep 60"}) argv.push_back(word);
      argv[argv.size() - 3] = std::to_string(server.port());
      return argv;
    }(), log);
    ASSERT_TRUE(WaitFor([&] { return ReadFile(log).find("in\n") != std::string::npos; }, 15000))
        << ReadFile(log) << server.log();
    ExpectNoUnprivilegedProcessHolds(server, running, passwords, when + ", during a session", 2, 2);
    close(fd);
    session.Stop(SIGTERM, 5000);
    ASSERT_TRUE(WaitFor([&] { return DroppedNetworkChildren(server) == 0; }, 10000)) << when << ": connections remain";
  };
  auto reload = [&](const std::string& config_text, const std::string& outcome) {
    WriteAllgoConfig(config_text);
    auto count = [&] {
      const std::string log = server.log();
      size_t n = 0;
      for (size_t at = log.find(outcome); at != std::string::npos; at = log.find(outcome, at + 1)) ++n;
      return n;
    };
    const size_t before = count();
    kill(server.pid(), SIGHUP);
    return WaitFor([&] { return count() > before; }, 10000);
  };
  check(first, {first}, "at start");

  // A new password, now in a file only root reads.
  const std::string second = RandomPassword();
  RandomPasswordAccount(db(), second);
  const std::string password_file = keys_ / "mysql.password";
  WriteFile(password_file, second + "\n", 0600);
  std::string with_file = config;
  with_file.replace(with_file.find("password = " + first), ("password = " + first).size(),
                    "password_file = " + password_file);
  ASSERT_TRUE(reload(with_file, "SIGHUP: configuration reloaded")) << server.log();
  check(second, {first, second}, "after a SIGHUP reload to a password_file");

  // Reloads that fail keep the second password and forget the third: one on a line below
  // it (the parse fails), one on a banner that does not exist (after the parse).
  const std::string third = RandomPassword();
  std::string broken = config;
  broken.replace(broken.find("password = " + first), ("password = " + first).size(),
                 "password = " + third + "\nno_such_key = 1");
  ASSERT_TRUE(reload(broken, "SIGHUP: reload failed")) << server.log();
  broken.replace(broken.find("\nno_such_key = 1"), std::string("\nno_such_key = 1").size(), "");
  ASSERT_NE(broken.find("[sshd]\n"), std::string::npos);
  broken.replace(broken.find("[sshd]\n"), 7, "[sshd]\nbanner = " + (keys_ / "no-such-banner") + "\n");
  ASSERT_TRUE(reload(broken, "no-such-banner")) << server.log();
  check(second, {first, second, third}, "after a failed SIGHUP reload");
}

// Issue 18, finding 4: allgo-sshd never asks the allgo NSS module for anything. With the
// module listed before `files`, the listener's getpwnam of its service users would load the
// module's config and open a database connection (Connector/C keeps its own copy of the
// password), and every network child would inherit both.
TEST_F(SshdTest, AllgoBeforeFilesInNsswitchLeavesNoPasswordInTheNetworkChild) {
  const std::string nsswitch = ReadFile("/etc/nsswitch.conf");
  struct Restore {
    std::string text;
    ~Restore() { WriteFile("/etc/nsswitch.conf", text); }
  } restore{nsswitch};
  std::string allgo_first = nsswitch;
  for (const std::string db : {"passwd:", "group:"}) {
    size_t at = allgo_first.compare(0, db.size(), db) == 0 ? 0 : allgo_first.find("\n" + db);
    ASSERT_NE(at, std::string::npos) << nsswitch;
    if (at != 0) ++at;
    allgo_first.insert(allgo_first.find_first_not_of(' ', at + db.size()), "allgo ");
  }
  WriteFile("/etc/nsswitch.conf", allgo_first);
  const std::string password = RandomPassword();
  SshdServer server("", "", "/bin/sh", RandomPasswordAccount(db(), password));
  int fd = ConnectLoopback(server.port());
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(WaitFor([&] { return DroppedNetworkChildren(server) == 1; }, 10000)) << server.log();
  ExpectNoUnprivilegedProcessHolds(server, password, {password}, "allgo first in nsswitch.conf", 1, 0);
  close(fd);
  RunResult r = server.Ssh("webapp1", owner_key_.private_path, "echo ok");
  EXPECT_EQ(r.out, "ok\n") << r.err << server.log();
}

// ---------------------------------------------------------------- operations

TEST_F(SshdTest, CheckValidatesConfigAndHostKeys) {
  TempDir t("allgo-sshd-check");
  std::string key = t / "hk";
  ASSERT_EQ(allgo::test::Run({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key}).exit_code, 0);
  std::string good = t / "good.conf";
  WriteFile(good, db().ConfigText("[sshd]\nhost_key = " + key + "\nprivsep_chroot = " + (t / "empty") + "\n"));
  RunResult r = allgo::test::Run({Artifact("allgo-sshd"), "--config", good, "--check"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  // The forwarding policy before any key's options, like `sshd -T`.
  EXPECT_THAT(r.out, HasSubstr("allow_tcp_forwarding = yes\nallow_stream_local_forwarding = yes\n"
                               "allow_agent_forwarding = yes\npermit_open = any\npermit_listen = any\n"
                               "gateway_ports = no\nmax_forwards = 64\nmax_listeners = 16\n"
                               "key_options = (not set: none)\n"));
  WriteFile(good, db().ConfigText("[sshd]\nhost_key = " + key + "\nprivsep_chroot = " + (t / "empty") +
                                  "\nallow_tcp_forwarding = local\npermit_open = localhost:8888\npermit_open = [::1]:*\n"
                                  "[authkeys]\nkey_options = restrict,pty\n"));
  r = allgo::test::Run({Artifact("allgo-sshd"), "--config", good, "--check"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("allow_tcp_forwarding = local\n"));
  EXPECT_THAT(r.out, HasSubstr("permit_open = localhost:8888 [::1]:*\n"));
  EXPECT_THAT(r.out, HasSubstr("key_options = restrict,pty\n"));
  std::string missing = t / "missing.conf";
  WriteFile(missing, db().ConfigText("[sshd]\nhost_key = " + (t / "nokey") + "\n"));
  r = allgo::test::Run({Artifact("allgo-sshd"), "--config", missing, "--check"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("ssh-keygen -t ed25519 -f " + (t / "nokey") + " -N ''"));
  r = allgo::test::Run({Artifact("allgo-sshd"), "--config", missing});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("ssh-keygen"));
  // Service users: missing, or shared with other daemons, is refused with the fix.
  std::string no_user = t / "no-user.conf";
  WriteFile(no_user, db().ConfigText("[sshd]\nhost_key = " + key + "\nprivsep_chroot = " + (t / "empty") +
                                     "\nprivsep_user = allgo-no-such-user\n"));
  r = allgo::test::Run({Artifact("allgo-sshd"), "--config", no_user});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("[sshd] privsep_user = allgo-no-such-user: no such user; create it with "
                               "`adduser --system --no-create-home --group --shell /usr/sbin/nologin "
                               "allgo-no-such-user`"));
  std::string shared = t / "shared.conf";
  WriteFile(shared, db().ConfigText("[sshd]\nhost_key = " + key + "\nprivsep_chroot = " + (t / "empty") +
                                    "\nlookup_user = nobody\n"));
  r = allgo::test::Run({Artifact("allgo-sshd"), "--config", shared, "--check"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("[sshd] lookup_user = nobody: must be a dedicated user of its own"));
  EXPECT_EQ(allgo::test::Run({Artifact("allgo-sshd"), "--version"}).exit_code, 0);
  EXPECT_THAT(allgo::test::Run({Artifact("allgo-sshd"), "--help"}).out, HasSubstr("--check"));
}

TEST_F(SshdTest, CheckWarnsWhenTheSandboxDirIsNotMountedNosuidNodevNoexec) {
  TempDir t("allgo-sshd-check");
  std::string key = t / "hk";
  ASSERT_EQ(allgo::test::Run({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key}).exit_code, 0);
  auto check = [&](const std::string& sandboxes) {
    std::string conf = t / "sandbox.conf";
    WriteFile(conf, db().ConfigText("[sshd]\nhost_key = " + key + "\nprivsep_chroot = " + (t / "empty") +
                                    "\n[sandbox]\ndir = " + sandboxes + "\n"));
    return allgo::test::Run({Artifact("allgo-sshd"), "--config", conf, "--check"});
  };
  std::string plain = t / "plain";
  ASSERT_EQ(mkdir(plain.c_str(), 0755), 0);
  RunResult r = check(plain);
  EXPECT_EQ(r.exit_code, 0) << r.err;  // a warning, not a refusal
  EXPECT_THAT(r.err, HasSubstr("warning: [sandbox] dir " + plain + " is not mounted"));
  EXPECT_THAT(r.err, HasSubstr("mount it nosuid,nodev,noexec"));
  SandboxesMount mounted(t / "mounted");
  r = check(mounted.path());
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.err, Not(HasSubstr("warning")));
}

TEST_F(SshdTest, BannerIsShownBeforeAuthentication) {
  TempDir t("allgo-sshd-banner");
  WriteFile(t / "banner", "Welcome to allgo: this is a test banner\n");
  SshdServer server("banner = " + (t / "banner"));
  RunResult r = server.Ssh("webapp1", owner_key_.private_path, "echo in", {"-o", "LogLevel=INFO"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "in\n");
  EXPECT_THAT(r.err, HasSubstr("Welcome to allgo: this is a test banner"));
}

TEST_F(SshdTest, IdleTimeoutDisconnects) {
  SshdServer server("idle_timeout = 1");
  auto t0 = std::chrono::steady_clock::now();
  RunResult r = server.Ssh("webapp1", owner_key_.private_path, "sleep 20; echo never");
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(10));
  EXPECT_EQ(r.exit_code, 255);
  EXPECT_EQ(r.out, "");
  EXPECT_TRUE(server.WaitForLog("idle_timeout"));
  // Activity keeps a session alive past the timeout.
  r = server.Ssh("webapp1", owner_key_.private_path, "for i in 1 2 3 4; do echo $i; sleep 0.5; done");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "1\n2\n3\n4\n");
}

TEST_F(SshdTest, UnresponsiveClientIsDisconnectedByKeepalives) {
  SshdServer server("client_alive_interval = 1\nclient_alive_count_max = 1");
  // A client that stops answering: the ssh process is frozen mid-session.
  pid_t client = fork();
  if (client == 0) {
    std::vector<std::string> argv = {"ssh"};
    for (const auto& o : server.ClientOptions(owner_key_.private_path)) argv.push_back(o);
    for (const std::string& o : std::vector<std::string>{"-p", std::to_string(server.port()), "webapp1@127.0.0.1", "sleep 60"}) {
      argv.push_back(o);
    }
    std::vector<char*> cargv;
    for (auto& a : argv) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    execvp("ssh", cargv.data());
    _exit(127);
  }
  ASSERT_TRUE(server.WaitForLog("auth accepted", 10000));
  // An answering client survives several intervals.
  std::this_thread::sleep_for(std::chrono::milliseconds(3500));
  EXPECT_THAT(server.log(), Not(HasSubstr("not responding")));
  kill(client, SIGSTOP);
  EXPECT_TRUE(server.WaitForLog("client not responding", 10000));
  EXPECT_TRUE(server.WaitForLog("session end: user=webapp1 kind=exec sleep 60", 5000));
  kill(client, SIGKILL);
  kill(client, SIGCONT);
  waitpid(client, nullptr, 0);
}

TEST_F(SshdTest, AuditLogHasOneLinePerDecisionAndSession) {
  TempDir t("allgo-sshd-audit");
  std::string audit = t / "audit.log";
  KeyPair stranger = MakeKeyPair(keys_.path(), "stranger");
  SshdServer server("audit_log = " + audit);
  EXPECT_EQ(server.Ssh("webapp1", owner_key_.private_path, "echo 12345678; exit 4").exit_code, 4);
  EXPECT_EQ(server.Ssh("webapp1", stranger.private_path, "true").exit_code, 255);
  std::string lines;
  for (int i = 0; i < 100 && std::count(lines.begin(), lines.end(), '\n') < 3; ++i) {
    lines = ReadFile(audit);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(std::count(lines.begin(), lines.end(), '\n'), 3) << lines;
  EXPECT_THAT(lines, HasSubstr("\"event\":\"auth\""));
  EXPECT_THAT(lines, HasSubstr("\"account\":\"owner@example.org\""));
  EXPECT_THAT(lines, HasSubstr("\"result\":\"success\""));
  EXPECT_THAT(lines, HasSubstr("\"result\":\"failure\""));
  EXPECT_THAT(lines, HasSubstr("\"fingerprint\":\"SHA256:"));
  EXPECT_THAT(lines, HasSubstr("\"event\":\"session\""));
  EXPECT_THAT(lines, HasSubstr("\"exit_status\":4"));
  EXPECT_THAT(lines, HasSubstr("\"kind\":\"exec\""));
  EXPECT_THAT(lines, HasSubstr("\"bytes_out\":9"));
  struct stat st{};
  ASSERT_EQ(stat(audit.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST_F(SshdTest, SigtermLetsRunningSessionsFinish) {
  SshdServer server;
  RunResult r;
  std::thread session([&] { r = server.Ssh("webapp1", owner_key_.private_path, "sleep 1; echo finished"); });
  ASSERT_TRUE(server.WaitForLog("auth accepted"));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  kill(server.pid(), SIGTERM);
  ASSERT_TRUE(server.WaitForLog("stopping"));
  // New connections are refused while the running session completes.
  int fd = ConnectLoopback(server.port());
  EXPECT_LT(fd, 0);
  if (fd >= 0) close(fd);
  session.join();
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "finished\n");
  EXPECT_EQ(server.Stop(), 0);
}

TEST_F(SshdTest, SighupReloadsConfigForNewConnections) {
  KeyPair super = MakeKeyPair(keys_.path(), "super");
  uint32_t super_id = db().AddUser("admin@example.org", true, true);
  db().AddKey(super_id, super.public_line);
  SshdServer server("", "[authkeys]\nallow_superusers = false\n");
  EXPECT_EQ(server.Ssh("webapp1", super.private_path, "echo in").exit_code, 255);
  std::string conf = ReadFile(AllgoConfigPath());
  size_t pos = conf.find("allow_superusers = false");
  ASSERT_NE(pos, std::string::npos);
  conf.replace(pos, std::string("allow_superusers = false").size(), "allow_superusers = true");
  WriteAllgoConfig(conf);
  kill(server.pid(), SIGHUP);
  ASSERT_TRUE(server.WaitForLog("configuration reloaded"));
  RunResult r = server.Ssh("webapp1", super.private_path, "echo $ALLGO_USER");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "admin@example.org\n");
}

}  // namespace
}  // namespace allgo::test
