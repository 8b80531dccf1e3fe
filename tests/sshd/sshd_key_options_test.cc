// [authkeys] key_options under allgo-sshd, through the real OpenSSH client: each option means
// what it means in an OpenSSH authorized_keys file, and one allgo-sshd cannot honour stops
// the server from starting.
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "sshd_fixture.h"
#include "test_support.h"

namespace allgo::test {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class SshdKeyOptionsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    db().Clear();
    chmod(keys_.path().c_str(), 0755);
    owner_key_ = MakeKeyPair(keys_.path(), "owner");
    uint32_t owner = db().AddUser("owner@example.org");
    db().AddKey(owner, owner_key_.public_line);
    db().AddWebapp("webapp1", owner);
  }
  static TestDatabase& db() { return TestDatabase::Get(); }
  static std::string KeyOptions(const std::string& value) { return "[authkeys]\nkey_options = " + value + "\n"; }
  RunResult Ssh(const SshdServer& server, const std::string& command, const std::vector<std::string>& extra = {}) {
    return server.Ssh("webapp1", owner_key_.private_path, command, extra);
  }

  // A server with these key_options refuses the login, and its log says why.
  void ExpectRefused(const std::string& options, const std::string& logged_reason) {
    SshdServer server("", KeyOptions(options));
    RunResult r = Ssh(server, "echo in");
    EXPECT_EQ(r.exit_code, 255) << options;
    EXPECT_EQ(r.out, "");
    EXPECT_THAT(r.err, HasSubstr("Permission denied (publickey)"));
    EXPECT_TRUE(server.WaitForLog(logged_reason)) << server.log();
  }
  void ExpectAllowed(const std::string& options) {
    SshdServer server("", KeyOptions(options));
    RunResult r = Ssh(server, "echo in");
    EXPECT_EQ(r.exit_code, 0) << options << ": " << r.err;
    EXPECT_EQ(r.out, "in\n");
  }

  TempDir keys_{"allgo-sshd-keyopts"};
  KeyPair owner_key_;
};

TEST_F(SshdKeyOptionsTest, NoPtyRefusesTheTerminalLikeOpenSsh) {
  {
    SshdServer server("", KeyOptions("restrict"));
    // A terminal the user asked for explicitly (-tt): OpenSSH's client gives up, with its
    // own message (the same against OpenSSH: authkeys_test.cc, UnderOpenSsh).
    RunResult r = Ssh(server, "echo ran", {"-tt"});
    EXPECT_EQ(r.exit_code, 255);
    EXPECT_EQ(r.out, "");
    EXPECT_THAT(r.err, HasSubstr("PTY allocation request failed on channel 0"));
    // An interactive login from a terminal (RequestTTY auto): warned, then a shell without one.
    TempDir t("allgo-sshd-keyopts-tmux");
    std::string tmux = "TERM=xterm tmux -S " + (t / "tmux.sock") + " ";
    std::string ssh = server.SshCommandLine(owner_key_.private_path, {"-o", "LogLevel=ERROR"}) + " webapp1@127.0.0.1";
    ASSERT_EQ(Sh(tmux + "new-session -d -x 100 -y 30 " + ShellQuote(ssh + "; sleep 30")).exit_code, 0);
    auto wait_for = [&](const std::string& needle) {
      for (int i = 0; i < 250; ++i) {
        if (Sh(tmux + "capture-pane -p").out.find(needle) != std::string::npos) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
      return false;
    };
    EXPECT_TRUE(wait_for("PTY allocation request failed")) << Sh(tmux + "capture-pane -p").out;
    Sh(tmux + "send-keys 'echo TTY=$(tty)' Enter");
    EXPECT_TRUE(wait_for("TTY=not a tty")) << Sh(tmux + "capture-pane -p").out;
    Sh(tmux + "kill-server");
  }
  {
    SshdServer server("", KeyOptions("restrict,pty,no-pty"));
    EXPECT_THAT(Ssh(server, "true", {"-tt"}).err, HasSubstr("PTY allocation request failed"));
  }
  // The shipped default (restrict,pty) still gives one.
  SshdServer server;
  RunResult r = Ssh(server, "tty", {"-tt"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("/dev/pts/"));
}

TEST_F(SshdKeyOptionsTest, FromMustAllowTheClientAddress) {
  ExpectRefused("restrict,pty,from=\"10.0.0.0/8,192.0.2.*\"", "key option from= does not allow 127.0.0.1");
  ExpectRefused("restrict,from=\"!127.0.0.1,127.0.0.0/8\"", "key option from= does not allow 127.0.0.1");
  ExpectAllowed("restrict,from=\"127.0.0.0/8,!127.0.0.2\"");
}

// Behind a trusted proxy, from= sees the client address of the PROXY header.
TEST_F(SshdKeyOptionsTest, FromMatchesTheAddressFromAProxyHeader) {
  SshdServer server("proxy_protocol = required\nproxy_trusted = 127.0.0.1/32",
                    KeyOptions("restrict,from=\"203.0.113.0/24\""));
  auto via_proxy = [&](const std::string& source) {
    // socat is exec'd so that nothing else holds ssh's end open once the server hangs up.
    std::string proxy = "bash -c 'exec socat - TCP:127.0.0.1:" + std::to_string(server.port()) +
                        " < <(printf \"PROXY TCP4 " + source + " 127.0.0.1 40001 22\\r\\n\"; exec cat)'";
    return Ssh(server, "echo in", {"-o", "ProxyCommand=" + proxy});
  };
  RunResult r = via_proxy("203.0.113.9");
  EXPECT_EQ(r.exit_code, 0) << r.err << server.log();
  EXPECT_EQ(r.out, "in\n");
  r = via_proxy("198.51.100.7");
  EXPECT_EQ(r.exit_code, 255);
  EXPECT_EQ(r.out, "");
  EXPECT_TRUE(server.WaitForLog("key option from= does not allow 198.51.100.7")) << server.log();
}

TEST_F(SshdKeyOptionsTest, ExpiredKeyIsRefusedAndAFutureOneWorks) {
  ExpectRefused("restrict,expiry-time=\"20200101\"", "key expired (key option expiry-time)");
  ExpectAllowed("restrict,expiry-time=\"29991231\"");
}

TEST_F(SshdKeyOptionsTest, ForcedCommandRunsWhateverTheClientAsks) {
  SshdServer server("", KeyOptions("restrict,command=\"echo forced:$SSH_ORIGINAL_COMMAND:$(id -u)\""));
  RunResult r = Ssh(server, "rm -rf / anything");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  std::string uid_part;
  ASSERT_THAT(r.out, testing::StartsWith("forced:rm -rf / anything:"));
  uid_part = r.out.substr(std::string("forced:rm -rf / anything:").size());
  EXPECT_NE(uid_part, "0\n") << "runs as the webapp";
  // A shell request runs it too, without SSH_ORIGINAL_COMMAND.
  RunOptions no_input;
  r = server.Ssh("webapp1", owner_key_.private_path, "", {"-T"}, no_input);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "forced::" + uid_part);
  // So does a subsystem: SSH_ORIGINAL_COMMAND is the subsystem's command.
  r = Ssh(server, "sftp", {"-s"});
  EXPECT_EQ(r.out, "forced:/usr/lib/openssh/sftp-server:" + uid_part) << r.err;
}

TEST_F(SshdKeyOptionsTest, OptionsPrintedByTheAuthorizedKeysCommandAlsoHold) {
  TempDir helper_dir("allgo-sshd-keyopts-akc");
  chmod(helper_dir.path().c_str(), 0755);
  std::string helper = helper_dir / "keys.sh";
  WriteFile(helper, "#!/bin/sh\necho 'no-pty,command=\"echo from-helper\" " + owner_key_.public_line + "'\n", 0755);
  {
    SshdServer server("authorized_keys_command = " + helper + " %u");
    RunResult r = Ssh(server, "tty");
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, "from-helper\n");
    r = Ssh(server, "tty", {"-tt"});
    EXPECT_THAT(r.err, HasSubstr("PTY allocation request failed"));
  }
  // A helper key with an option allgo-sshd cannot honour is skipped, not used without it.
  WriteFile(helper, "#!/bin/sh\necho 'environment=\"A=B\" " + owner_key_.public_line + "'\n", 0755);
  SshdServer server("authorized_keys_command = " + helper + " %u");
  RunResult r = Ssh(server, "echo in");
  EXPECT_EQ(r.exit_code, 255);
  EXPECT_TRUE(server.WaitForLog("its options cannot be honoured: environment:")) << server.log();
}

TEST_F(SshdKeyOptionsTest, AnOptionAllgoSshdCannotHonourStopsCheckAndStart) {
  TempDir t("allgo-sshd-keyopts-check");
  std::string key = t / "hk";
  ASSERT_EQ(test::Run({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key}).exit_code, 0);
  std::string text = db().ConfigText("[sshd]\nhost_key = " + key + "\nprivsep_chroot = " + (t / "empty") + "\n");
  int line = static_cast<int>(std::count(text.begin(), text.end(), '\n')) + 2;
  text += "[authkeys]\nkey_options = restrict,environment=\"LANG=C\"\n";
  std::string conf = t / "bad.conf";
  WriteFile(conf, text);
  std::string expected = conf + ":" + std::to_string(line) + ": [authkeys] key_options: environment:";
  RunResult r = test::Run({Artifact("allgo-sshd"), "--config", conf, "--check"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr(expected));
  r = test::Run({Artifact("allgo-sshd"), "--config", conf}, {.timeout_seconds = 20});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr(expected));
  EXPECT_THAT(r.err, Not(HasSubstr("ready")));
}

}  // namespace
}  // namespace allgo::test
