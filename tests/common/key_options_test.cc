// authorized_keys options: OpenSSH's grammar, what allgo-sshd honours, what it refuses.
#include "allgo/key_options.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <ctime>

namespace allgo {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

KeyOptions Parsed(const std::string& text) {
  KeyOptions o;
  Status st = ParseKeyOptions(text, &o);
  EXPECT_TRUE(st.ok()) << text << ": " << st.message();
  return o;
}

std::string ErrorOf(const std::string& text) {
  KeyOptions o;
  Status st = ParseKeyOptions(text, &o);
  EXPECT_FALSE(st.ok()) << "accepted: " << text;
  return st.message();
}

TEST(KeyOptions, RestrictThenPtyLikeOpenSsh) {
  EXPECT_TRUE(Parsed("").pty);
  EXPECT_FALSE(Parsed("restrict").pty);
  EXPECT_TRUE(Parsed("restrict,pty").pty);
  EXPECT_FALSE(Parsed("pty,restrict").pty) << "a later restrict turns pty off again";
  EXPECT_FALSE(Parsed("no-pty").pty);
  EXPECT_FALSE(Parsed("RESTRICT,No-Pty").pty) << "names are case-insensitive";
  EXPECT_TRUE(Parsed("Restrict,PTY").pty);
  KeyOptions defaults = DefaultKeyOptions();
  KeyOptions shipped = Parsed("restrict,pty");
  EXPECT_EQ(defaults.pty, shipped.pty);
  EXPECT_EQ(defaults.has_command, shipped.has_command);
  EXPECT_EQ(defaults.from.size(), shipped.from.size());
  EXPECT_EQ(defaults.expires_at, shipped.expires_at);
  EXPECT_EQ(defaults.port_forwarding, shipped.port_forwarding);
  EXPECT_EQ(defaults.agent_forwarding, shipped.agent_forwarding);
}

TEST(KeyOptions, ForwardingFlagsFollowOpenSshOrder) {
  KeyOptions bare = Parsed("");
  EXPECT_TRUE(bare.port_forwarding && bare.agent_forwarding) << "a bare key line forwards, as in OpenSSH";
  KeyOptions r = Parsed("restrict");
  EXPECT_FALSE(r.port_forwarding || r.agent_forwarding || r.pty);
  r = Parsed("restrict,port-forwarding");
  EXPECT_TRUE(r.port_forwarding);
  EXPECT_FALSE(r.agent_forwarding) << "only what is named comes back";
  r = Parsed("restrict,Agent-Forwarding,pty");
  EXPECT_TRUE(r.agent_forwarding && r.pty);
  EXPECT_FALSE(r.port_forwarding);
  r = Parsed("port-forwarding,restrict");
  EXPECT_FALSE(r.port_forwarding) << "a later restrict wins";
  r = Parsed("no-port-forwarding");
  EXPECT_FALSE(r.port_forwarding);
  EXPECT_TRUE(r.agent_forwarding && r.pty);
  r = Parsed("no-agent-forwarding");
  EXPECT_FALSE(r.agent_forwarding);
  EXPECT_TRUE(r.port_forwarding);
  EXPECT_THAT(ErrorOf(R"(port-forwarding="yes")"), StartsWith("port-forwarding: takes no value"));
}

TEST(KeyOptions, PermitOpenAndPermitListenFormOneListPerText) {
  KeyOptions o = Parsed(R"(permitopen="LocalHost:80",permitopen="[::1]:*",permitlisten="8080",permitlisten="localhost:8081")");
  ASSERT_EQ(o.permit_open.size(), 1u);
  EXPECT_TRUE(o.permit_open[0].restricted);
  ASSERT_EQ(o.permit_open[0].entries.size(), 2u);
  EXPECT_EQ(o.permit_open[0].entries[0], (PermitEntry{"localhost", 80, false}));
  EXPECT_EQ(o.permit_open[0].entries[1], (PermitEntry{"::1", 0, true}));
  ASSERT_EQ(o.permit_listen.size(), 1u);
  EXPECT_EQ(o.permit_listen[0].entries[0], (PermitEntry{"*", 8080, false})) << "a bare port is *:PORT, as OpenSSH";
  EXPECT_EQ(o.permit_listen[0].entries[1], (PermitEntry{"localhost", 8081, false}));
  EXPECT_TRUE(Parsed("restrict").permit_open.empty()) << "no permitopen: no list";
  EXPECT_THAT(ErrorOf(R"(permitopen="localhost")"), StartsWith("permitopen: \"localhost\" is not HOST:PORT"));
  EXPECT_THAT(ErrorOf(R"(permitopen="::1:80")"), HasSubstr("IPv6 address in brackets"));
  EXPECT_THAT(ErrorOf(R"(permitopen="a b:80")"), HasSubstr("cannot be part of a host"));
  EXPECT_THAT(ErrorOf(R"(permitlisten="x:0")"), StartsWith("permitlisten:"));
  EXPECT_THAT(ErrorOf(R"(permitlisten="70000")"), HasSubstr("1-65535"));
}

TEST(KeyOptions, OpenSshForwardingProblemUnlessBothAreOff) {
  EXPECT_EQ(OpenSshForwardingProblem(Parsed("restrict,pty")), "");
  EXPECT_EQ(OpenSshForwardingProblem(Parsed("no-port-forwarding,no-agent-forwarding,pty")), "");
  EXPECT_EQ(OpenSshForwardingProblem(Parsed(R"(restrict,permitopen="localhost:80")")), "")
      << "a permit list under restrict re-enables nothing";
  EXPECT_THAT(OpenSshForwardingProblem(Parsed("pty")), HasSubstr("forward ports and the agent"));
  EXPECT_THAT(OpenSshForwardingProblem(Parsed("no-port-forwarding")), HasSubstr("forward the agent"));
  EXPECT_THAT(OpenSshForwardingProblem(Parsed("restrict,port-forwarding")), HasSubstr("forward ports from"));
  EXPECT_THAT(OpenSshForwardingProblem(Parsed("restrict,agent-forwarding")), HasSubstr("restrict"));
}

TEST(KeyOptions, QuotedValuesKeepCommasSpacesAndEscapedQuotes) {
  KeyOptions o = Parsed(R"(restrict,command="echo \"a, b\" c\d",no-pty)");
  EXPECT_TRUE(o.has_command);
  EXPECT_EQ(o.command, R"(echo "a, b" c\d)") << "only \\\" is an escape, as in OpenSSH";
  EXPECT_FALSE(o.pty);
  EXPECT_TRUE(Parsed(R"(command="")").has_command) << "an empty forced command is still forced";
}

TEST(KeyOptions, SyntaxErrorsNameTheOption) {
  EXPECT_THAT(ErrorOf("restrict,"), HasSubstr("a ',' ends the options"));
  EXPECT_THAT(ErrorOf("restrict, pty"), HasSubstr("without spaces"));
  EXPECT_THAT(ErrorOf("restrict pty"), StartsWith("restrict: unexpected \" pty\""));
  EXPECT_THAT(ErrorOf(R"(command="echo)"), StartsWith("command: the value must be in double quotes"));
  EXPECT_THAT(ErrorOf("command=echo"), StartsWith("command: the value must be in double quotes"));
  EXPECT_THAT(ErrorOf(R"(command="a",command="b")"), StartsWith("command: given twice"));
  EXPECT_THAT(ErrorOf(R"(from="a",from="b")"), StartsWith("from: given twice"));
  EXPECT_THAT(ErrorOf("command"), StartsWith("command: needs a value"));
  EXPECT_THAT(ErrorOf(R"(pty="yes")"), StartsWith("pty: takes no value"));
  EXPECT_THAT(ErrorOf("no-such-option"), StartsWith("no-such-option: unknown option"));
  EXPECT_THAT(ErrorOf(",restrict"), HasSubstr("expected an option name"));
}

TEST(KeyOptions, WhatAllgoSshdCannotHonourIsRefusedWithTheReason) {
  EXPECT_THAT(ErrorOf(R"(restrict,environment="A=B")"), StartsWith("environment: allgo-sshd has no PermitUserEnvironment"));
  EXPECT_THAT(ErrorOf("X11-forwarding"), StartsWith("x11-forwarding: allgo-sshd never offers X11 forwarding"));
  EXPECT_THAT(ErrorOf("user-rc"), StartsWith("user-rc: allgo-sshd never runs ~/.ssh/rc"));
  EXPECT_THAT(ErrorOf("cert-authority"), HasSubstr("does not accept certificates"));
  EXPECT_THAT(ErrorOf(R"(principals="alice")"), HasSubstr("does not accept certificates"));
  EXPECT_THAT(ErrorOf(R"(tunnel="1")"), StartsWith("tunnel: allgo-sshd never offers tun forwarding"));
  EXPECT_THAT(ErrorOf("verify-required"), HasSubstr("FIDO"));
  EXPECT_THAT(ErrorOf("no-touch-required"), HasSubstr("FIDO"));
}

TEST(KeyOptions, X11AndUserRcRestrictionsAreAcceptedAsNoOps) {
  KeyOptions o = Parsed("no-X11-forwarding,no-user-rc,no-verify-required");
  EXPECT_TRUE(o.pty && o.port_forwarding && o.agent_forwarding);
  EXPECT_FALSE(o.has_command);
}

TEST(KeyOptions, FromPatternsWithWildcardsNegationAndCidr) {
  auto from = [](const std::string& list, const std::string& ip) {
    return FromAllows(Parsed("from=\"" + list + "\""), ip);
  };
  EXPECT_TRUE(from("127.0.0.1", "127.0.0.1"));
  EXPECT_FALSE(from("127.0.0.2", "127.0.0.1"));
  EXPECT_TRUE(from("127.0.0.*", "127.0.0.1"));
  EXPECT_TRUE(from("127.?.0.1", "127.0.0.1"));
  EXPECT_FALSE(from("10.*", "127.0.0.1"));
  EXPECT_TRUE(from("127.0.0.0/8", "127.0.0.1"));
  EXPECT_TRUE(from("127.0.0.0/8", "127.255.3.4"));
  EXPECT_FALSE(from("10.0.0.0/8", "127.0.0.1"));
  EXPECT_TRUE(from("10.0.0.0/8,127.0.0.1", "127.0.0.1"));
  EXPECT_TRUE(from("0.0.0.0/0", "192.0.2.1"));
  EXPECT_FALSE(from("!127.0.0.1,*", "127.0.0.1")) << "a negated match refuses whatever else matches";
  EXPECT_FALSE(from("*,!127.0.0.0/8", "127.0.0.1"));
  EXPECT_TRUE(from("*,!10.0.0.0/8", "127.0.0.1"));
  EXPECT_FALSE(from("!10.0.0.0/8", "127.0.0.1")) << "only negations: nothing matched, refused";
  EXPECT_TRUE(from("::1", "::1"));
  EXPECT_TRUE(from("::1/128", "::1"));
  EXPECT_TRUE(from("2001:db8::/32", "2001:DB8::5")) << "IPv6 compared as addresses";
  EXPECT_FALSE(from("::1/128", "127.0.0.1"));
  EXPECT_TRUE(from("127.0.0.0/8", "::ffff:127.0.0.1")) << "IPv4-mapped counts as IPv4";
  EXPECT_FALSE(from("*.example.org", "127.0.0.1")) << "no DNS: host names never match an address";
  // Several lists (key_options and the key's own) must all allow.
  KeyOptions both;
  ASSERT_TRUE(RestrictKeyOptions(Parsed(R"(from="127.0.0.0/8")"), Parsed(R"(from="!127.0.0.2,*")"), &both).ok());
  EXPECT_TRUE(FromAllows(both, "127.0.0.1"));
  EXPECT_FALSE(FromAllows(both, "127.0.0.2"));
  EXPECT_FALSE(FromAllows(both, "192.0.2.1"));
  EXPECT_TRUE(FromAllows(Parsed("restrict"), "192.0.2.1")) << "no from=: any address";
}

TEST(KeyOptions, BadFromListsAreErrors) {
  EXPECT_THAT(ErrorOf(R"(from="127.0.0.1/8")"), HasSubstr("host bits set"));
  EXPECT_THAT(ErrorOf(R"(from="10.0.0.0/33")"), HasSubstr("mask length above 32"));
  EXPECT_THAT(ErrorOf(R"(from="::/129")"), HasSubstr("mask length above 128"));
  EXPECT_THAT(ErrorOf(R"(from="10.0.0/8")"), HasSubstr("not ADDRESS/MASKLEN"));
  EXPECT_THAT(ErrorOf(R"(from="a,,b")"), HasSubstr("empty pattern"));
  EXPECT_THAT(ErrorOf(R"(from="!")"), HasSubstr("empty pattern"));
  EXPECT_THAT(ErrorOf(R"(from="")"), HasSubstr("empty pattern"));
  EXPECT_THAT(ErrorOf(R"(from="a b")"), HasSubstr("contains a space"));
}

TEST(KeyOptions, ExpiryTimeInLocalTimeOrUtc) {
  time_t now = time(nullptr);
  EXPECT_TRUE(Expired(Parsed(R"(expiry-time="20000101")"), now));
  EXPECT_FALSE(Expired(Parsed(R"(expiry-time="29991231")"), now));
  EXPECT_FALSE(Expired(Parsed("restrict"), now));
  std::tm local{};
  local.tm_year = 2031 - 1900;
  local.tm_mon = 5;
  local.tm_mday = 7;
  local.tm_hour = 13;
  local.tm_min = 45;
  local.tm_sec = 30;
  local.tm_isdst = -1;
  std::tm utc = local;
  EXPECT_EQ(Parsed(R"(expiry-time="20310607134530")").expires_at, static_cast<int64_t>(mktime(&local)));
  EXPECT_EQ(Parsed(R"(expiry-time="20310607134530Z")").expires_at, static_cast<int64_t>(timegm(&utc)));
  utc.tm_sec = 0;
  EXPECT_EQ(Parsed(R"(expiry-time="203106071345UTC")").expires_at, static_cast<int64_t>(timegm(&utc)));
  // The key is still good during its last second.
  KeyOptions o = Parsed(R"(expiry-time="20310607134530Z")");
  EXPECT_FALSE(Expired(o, static_cast<time_t>(o.expires_at)));
  EXPECT_TRUE(Expired(o, static_cast<time_t>(o.expires_at + 1)));
  // Two expiry times: the earlier holds (OpenSSH keeps the earliest).
  EXPECT_EQ(Parsed(R"(expiry-time="20310101Z",expiry-time="20300101Z")").expires_at,
            Parsed(R"(expiry-time="20300101Z")").expires_at);
  EXPECT_THAT(ErrorOf(R"(expiry-time="2031060713")"), HasSubstr("YYYYMMDD[HHMM[SS]]"));
  EXPECT_THAT(ErrorOf(R"(expiry-time="20310230")"), HasSubstr("not a valid date"));
  EXPECT_THAT(ErrorOf(R"(expiry-time="20311301")"), HasSubstr("not a valid date"));
  EXPECT_THAT(ErrorOf(R"(expiry-time="203106072460")"), HasSubstr("not a valid date"));
  EXPECT_THAT(ErrorOf(R"(expiry-time="tomorrow")"), HasSubstr("YYYYMMDD"));
}

TEST(KeyOptions, RestrictCombinesTwoOptionSets) {
  KeyOptions r;
  ASSERT_TRUE(RestrictKeyOptions(Parsed("restrict,pty"), Parsed("no-pty"), &r).ok());
  EXPECT_FALSE(r.pty);
  ASSERT_TRUE(RestrictKeyOptions(Parsed("no-pty"), Parsed("pty"), &r).ok());
  EXPECT_FALSE(r.pty) << "a key's own options never widen key_options";
  ASSERT_TRUE(RestrictKeyOptions(Parsed(R"(command="a")"), Parsed(""), &r).ok());
  EXPECT_EQ(r.command, "a");
  ASSERT_TRUE(RestrictKeyOptions(Parsed(""), Parsed(R"(command="b")"), &r).ok());
  EXPECT_EQ(r.command, "b");
  ASSERT_TRUE(RestrictKeyOptions(Parsed(R"(command="a")"), Parsed(R"(command="a")"), &r).ok());
  EXPECT_FALSE(RestrictKeyOptions(Parsed(R"(command="a")"), Parsed(R"(command="b")"), &r).ok());
  ASSERT_TRUE(RestrictKeyOptions(Parsed(R"(expiry-time="20310101Z")"), Parsed(R"(expiry-time="20300101Z")"), &r).ok());
  EXPECT_EQ(r.expires_at, Parsed(R"(expiry-time="20300101Z")").expires_at);
  ASSERT_TRUE(RestrictKeyOptions(Parsed(R"(expiry-time="20300101Z")"), Parsed(""), &r).ok());
  EXPECT_EQ(r.expires_at, Parsed(R"(expiry-time="20300101Z")").expires_at);
  // Forwarding: AND of both; the permit lists of both apply.
  ASSERT_TRUE(RestrictKeyOptions(Parsed("no-agent-forwarding"), Parsed("restrict,agent-forwarding,port-forwarding"), &r).ok());
  EXPECT_TRUE(r.port_forwarding);
  EXPECT_FALSE(r.agent_forwarding) << "a key's own options never widen key_options";
  ASSERT_TRUE(RestrictKeyOptions(Parsed(R"(permitopen="a:1")"), Parsed(R"(permitopen="b:2",permitlisten="3")"), &r).ok());
  ASSERT_EQ(r.permit_open.size(), 2u);
  EXPECT_EQ(r.permit_open[1].entries[0].host, "b");
  EXPECT_EQ(r.permit_listen.size(), 1u);
}

}  // namespace
}  // namespace allgo
