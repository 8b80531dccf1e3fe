// The monitor protocol is the boundary between the network-facing process and root:
// every decoder must reject what it was not built for.
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "key_source.h"
#include "monitor_protocol.h"
#include "wire.h"

namespace allgo::sshd {
namespace {

TEST(MonitorProtocol, RoundTrips) {
  SpawnRequest in;
  in.id = 7;
  in.kind = SessionKind::kExec;
  in.command = "echo hi";
  in.has_pty = true;
  in.pty.term = "xterm";
  in.pty.cols = 120;
  in.pty.rows = 40;
  in.env = {{"LANG", "C"}, {"LC_ALL", "C.UTF-8"}};
  SpawnRequest out;
  ASSERT_TRUE(Decode(Encode(in), &out).ok());
  EXPECT_EQ(out.id, 7u);
  EXPECT_EQ(out.kind, SessionKind::kExec);
  EXPECT_EQ(out.command, "echo hi");
  EXPECT_TRUE(out.has_pty);
  EXPECT_EQ(out.pty.term, "xterm");
  EXPECT_EQ(out.pty.cols, 120u);
  EXPECT_EQ(out.env, in.env);

  KeyAnswer answer{true, "owner@example.org", true};
  KeyAnswer answer2;
  ASSERT_TRUE(Decode(Encode(answer), &answer2).ok());
  EXPECT_TRUE(answer2.allowed);
  EXPECT_EQ(answer2.account, "owner@example.org");
  EXPECT_TRUE(answer2.pty_allowed);
  answer.pty_allowed = false;
  ASSERT_TRUE(Decode(Encode(answer), &answer2).ok());
  EXPECT_FALSE(answer2.pty_allowed);

  KeyQuery q{true, "webapp1", "ssh-ed25519", "AAAA"};
  KeyQuery q2;
  ASSERT_TRUE(Decode(Encode(q), &q2).ok());
  EXPECT_TRUE(q2.signed_phase);
  EXPECT_EQ(q2.user, "webapp1");
  EXPECT_EQ(q2.key_base64, "AAAA");
}

ForwardPolicy SamplePolicy() {
  ForwardPolicy p;
  p.local_tcp = p.remote_unix = p.agent = true;
  p.gateway_ports = true;
  p.permit_open = {PermitList{true, {{"localhost", 8888, false}, {"::1", 0, true}}}, PermitList{true, {}}};
  p.permit_listen = {PermitList{true, {{"*", 8080, false}}}};
  p.max_forwards = 64;
  p.max_listeners = 16;
  return p;
}

TEST(MonitorProtocol, KeyAnswerCarriesTheForwardPolicy) {
  KeyAnswer in{true, "owner@example.org", true, SamplePolicy()};
  KeyAnswer out;
  ASSERT_TRUE(Decode(Encode(in), &out).ok());
  EXPECT_EQ(out.forward_policy, in.forward_policy);
  EXPECT_TRUE(out.forward_policy.Any());
  KeyAnswer refused;  // everything off
  ASSERT_TRUE(Decode(Encode(refused), &out).ok());
  EXPECT_FALSE(out.forward_policy.Any());
  // Every truncation is refused, and so is a trailing byte.
  std::string msg = Encode(in);
  for (size_t len = 0; len < msg.size(); ++len) EXPECT_FALSE(Decode(msg.substr(0, len), &out).ok()) << len;
  EXPECT_FALSE(Decode(msg + "x", &out).ok());
}

TEST(MonitorProtocol, ForwardPolicyDecodingIsStrict) {
  KeyAnswer out;
  auto refused = [&](const ForwardPolicy& p) {
    KeyAnswer in{true, "a@b", true, p};
    return !Decode(Encode(in), &out).ok();
  };
  ForwardPolicy p = SamplePolicy();
  p.permit_open.assign(kMaxPermitLists + 1, PermitList{true, {}});
  EXPECT_TRUE(refused(p)) << "too many lists";
  p = SamplePolicy();
  p.permit_listen[0].entries.assign(kMaxPermitEntries + 1, PermitEntry{"a", 1, false});
  EXPECT_TRUE(refused(p)) << "too many entries";
  p = SamplePolicy();
  p.permit_listen[0].entries[0].port = 0;
  EXPECT_TRUE(refused(p)) << "port 0 without any_port";
  p.permit_listen[0].entries[0].port = 65536;
  EXPECT_TRUE(refused(p));
  p = SamplePolicy();
  p.permit_open[0].entries[1].port = 5;
  EXPECT_TRUE(refused(p)) << "any_port with a port would not re-encode the same";
  p = SamplePolicy();
  p.permit_open[0].entries[0].host = "";
  EXPECT_TRUE(refused(p));
  p.permit_open[0].entries[0].host = std::string(kMaxPermitHostLen + 1, 'a');
  EXPECT_TRUE(refused(p));
  p = SamplePolicy();
  p.permit_open[0].restricted = false;
  EXPECT_TRUE(refused(p)) << "an unrestricted list has no entries";
  // A flag byte that is not a bool: the first policy byte follows allowed, account, pty.
  std::string bad = Encode(KeyAnswer{true, "a@b", true, SamplePolicy()});
  bad[1 + 1 + 4 + 3 + 1] = 2;
  EXPECT_FALSE(Decode(bad, &out).ok());
}

TEST(MonitorProtocol, OpenStreamsAndItsResult) {
  OpenStreams o;
  EXPECT_EQ(Encode(o).size(), 1u);
  EXPECT_TRUE(Decode(Encode(o), &o).ok());
  EXPECT_FALSE(Decode(Encode(o) + "x", &o).ok()) << "OpenStreams has no fields";
  MsgType t;
  ASSERT_TRUE(PeekType(Encode(o), &t).ok());
  EXPECT_EQ(t, MsgType::kOpenStreams);
  StreamsResult in{false, "the sandbox of 'w' is not running (state: idle)"};
  StreamsResult out;
  ASSERT_TRUE(Decode(Encode(in), &out).ok());
  EXPECT_FALSE(out.ok);
  EXPECT_EQ(out.error, in.error);
  in = {true, ""};
  ASSERT_TRUE(Decode(Encode(in), &out).ok());
  EXPECT_TRUE(out.ok);
  EXPECT_FALSE(Decode(Encode(StreamsResult{false, std::string(kMaxErrorLen + 1, 'e')}), &out).ok());
  EXPECT_FALSE(Decode(Encode(o), &out).ok()) << "another type";
  ASSERT_TRUE(PeekType(Encode(in), &t).ok());
  EXPECT_EQ(t, MsgType::kStreamsResult);
  EXPECT_FALSE(PeekType(std::string(1, '\x0b'), &t).ok()) << "the type after the last is unknown";
}

TEST(MonitorProtocol, ForwardEventRoundTripsAndIsBounded) {
  ForwardEvent in;
  in.phase = ForwardPhase::kEnded;
  in.kind = ForwardKindCode::kForwardedTcpip;
  in.target = "127.0.0.1:8888";
  in.origin = "127.0.0.1:51000";
  in.bytes_in = 5ULL << 33;
  in.bytes_out = 7;
  in.duration_ms = 1234;
  in.result = "closed";
  ForwardEvent out;
  ASSERT_TRUE(Decode(Encode(in), &out).ok());
  EXPECT_EQ(out.phase, in.phase);
  EXPECT_EQ(out.kind, in.kind);
  EXPECT_EQ(out.target, in.target);
  EXPECT_EQ(out.origin, in.origin);
  EXPECT_EQ(out.bytes_in, in.bytes_in);
  EXPECT_EQ(out.bytes_out, in.bytes_out);
  EXPECT_EQ(out.duration_ms, in.duration_ms);
  EXPECT_EQ(out.result, in.result);
  EXPECT_STREQ(ForwardKindName(out.kind), "forwarded-tcpip");
  // The encoder cuts texts to their bound; a phase or kind out of range is refused.
  in.target = std::string(kMaxForwardText + 100, 't');
  ASSERT_TRUE(Decode(Encode(in), &out).ok());
  EXPECT_EQ(out.target.size(), kMaxForwardText);
  std::string bad = Encode(in);
  bad[1] = 9;
  EXPECT_FALSE(Decode(bad, &out).ok());
  bad = Encode(in);
  bad[2] = 0;
  EXPECT_FALSE(Decode(bad, &out).ok());
  EXPECT_FALSE(Decode(Encode(in) + "x", &out).ok()) << "trailing bytes";
  // The streamlocal kinds travel and are named as the audit log and the metrics show them;
  // one past the last is refused.
  in.kind = ForwardKindCode::kStreamlocalForward;
  ASSERT_TRUE(Decode(Encode(in), &out).ok());
  EXPECT_STREQ(ForwardKindName(out.kind), "streamlocal-forward");
  EXPECT_STREQ(ForwardKindName(ForwardKindCode::kDirectStreamlocal), "direct-streamlocal");
  EXPECT_STREQ(ForwardKindName(ForwardKindCode::kForwardedStreamlocal), "forwarded-streamlocal");
  bad = Encode(in);
  bad[2] = kForwardKindCount + 1;
  EXPECT_FALSE(Decode(bad, &out).ok());
}

TEST(MonitorProtocol, SessionEndCarries64BitCounts) {
  SessionEnd in{3, 5ULL << 33, 7};
  SessionEnd out;
  ASSERT_TRUE(Decode(Encode(in), &out).ok());
  EXPECT_EQ(out.id, 3u);
  EXPECT_EQ(out.bytes_in, 5ULL << 33);
  EXPECT_EQ(out.bytes_out, 7u);
  std::string bad = Encode(in);
  bad.pop_back();
  EXPECT_FALSE(Decode(bad, &out).ok());
}

TEST(MonitorProtocol, ABareTypeByteOfAnotherTypeIsRejected) {
  // Found by fuzz_monitor: the type check failed without marking the message malformed.
  KeyQuery q;
  EXPECT_FALSE(Decode(std::string(1, static_cast<char>(MsgType::kSessionEnd)), &q).ok());
  ExitedNotice n;
  EXPECT_FALSE(Decode(std::string(1, static_cast<char>(MsgType::kKeyQuery)), &n).ok());
  // ...and a boolean that is neither 0 nor 1 ends the message as malformed, not as "done".
  EXPECT_FALSE(Decode(std::string("\x01\x2d", 2), &q).ok());
}

TEST(MonitorProtocol, RejectsTruncatedTrailingAndWrongType) {
  std::string msg = Encode(KeyQuery{false, "u", "ssh-ed25519", "AAAA"});
  KeyQuery q;
  for (size_t len = 0; len < msg.size(); ++len) {
    EXPECT_FALSE(Decode(msg.substr(0, len), &q).ok()) << len;
  }
  EXPECT_FALSE(Decode(msg + "x", &q).ok());
  SpawnRequest r;
  EXPECT_FALSE(Decode(msg, &r).ok());
  MsgType t;
  EXPECT_FALSE(PeekType("", &t).ok());
  EXPECT_FALSE(PeekType(std::string(1, '\x63'), &t).ok());
}

TEST(MonitorProtocol, RejectsOversizedFieldsAndForbiddenEnv) {
  KeyQuery big{false, std::string(kMaxUserLen + 1, 'a'), "ssh-ed25519", "AAAA"};
  KeyQuery q;
  EXPECT_FALSE(Decode(Encode(big), &q).ok());
  SpawnRequest r;
  r.env = {{"LD_PRELOAD", "/tmp/x.so"}};
  SpawnRequest out;
  EXPECT_FALSE(Decode(Encode(r), &out).ok());
  r.env.assign(kMaxEnvEntries + 1, {"LANG", "C"});
  EXPECT_FALSE(Decode(Encode(r), &out).ok());
  // A bool field must be 0 or 1.
  std::string bad = Encode(KeyAnswer{true, "a@b", true});
  bad[1] = 2;
  KeyAnswer a;
  EXPECT_FALSE(Decode(bad, &a).ok());
}

TEST(MonitorProtocol, AcceptedEnvAndSignals) {
  EXPECT_TRUE(IsAcceptedEnvName("LANG"));
  EXPECT_TRUE(IsAcceptedEnvName("TERM"));
  EXPECT_TRUE(IsAcceptedEnvName("LC_ALL"));
  EXPECT_FALSE(IsAcceptedEnvName("LC_"));
  EXPECT_FALSE(IsAcceptedEnvName("LC_a=b"));
  EXPECT_FALSE(IsAcceptedEnvName("PATH"));
  EXPECT_FALSE(IsAcceptedEnvName("LD_PRELOAD"));
  EXPECT_EQ(SignalFromName("TERM"), SIGTERM);
  EXPECT_EQ(SignalFromName("STOP"), 0);
  EXPECT_STREQ(SignalName(SIGKILL), "KILL");
}

TEST(MonitorProtocol, RecordsCarryDescriptorsAndBoundSize) {
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
  UniqueFd a(sv[0]), b(sv[1]);
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  UniqueFd r(p[0]), w(p[1]);
  ASSERT_TRUE(SendRecord(a.get(), "hello", {w.get()}).ok());
  WireMessage msg;
  bool closed = false;
  ASSERT_TRUE(ReceiveRecord(b.get(), 1000, &msg, &closed).ok());
  EXPECT_FALSE(closed);
  EXPECT_EQ(msg.payload, "hello");
  ASSERT_EQ(msg.fds.size(), 1u);
  ASSERT_EQ(write(msg.fds[0].get(), "x", 1), 1);
  char c = 0;
  ASSERT_EQ(read(r.get(), &c, 1), 1);
  EXPECT_EQ(c, 'x');
  EXPECT_FALSE(SendRecord(a.get(), std::string(kMaxMessage + 1, 'x')).ok());
  EXPECT_TRUE(ReceiveRecord(b.get(), 0, &msg, &closed).IsUnavailable());
  a.reset();
  ASSERT_TRUE(ReceiveRecord(b.get(), 1000, &msg, &closed).ok());
  EXPECT_TRUE(closed);
}

TEST(KeyCommand, SplitsOnSpacesAndSubstitutesUser) {
  auto argv = ExpandCommand("/usr/bin/allgo-authkeys --config /etc/x.conf %u %U", "webapp1", 2001);
  ASSERT_EQ(argv.size(), 5u);
  EXPECT_EQ(argv[3], "webapp1");
  EXPECT_EQ(argv[4], "2001");
  argv = ExpandCommand("/bin/helper user=%u 100%%", "a b", 2001);
  ASSERT_EQ(argv.size(), 3u);
  EXPECT_EQ(argv[1], "user=a b");
  EXPECT_EQ(argv[2], "100%");
}

}  // namespace
}  // namespace allgo::sshd
