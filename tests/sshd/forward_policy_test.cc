// The forwarding policy: [sshd] keys and key options combined with OpenSSH's meaning, and the
// permit lists matched as OpenSSH's channels.c does.
#include "forward_policy.h"

#include <gtest/gtest.h>

#include "allgo/config.h"
#include "allgo/key_options.h"

namespace allgo::sshd {
namespace {

Config Load(const std::string& text) {
  Config c;
  Status st = ParseConfig(text, "test.conf", &c);
  EXPECT_TRUE(st.ok()) << st.message();
  return c;
}

KeyOptions Key(const std::string& text) {
  KeyOptions o;
  Status st = ParseKeyOptions(text, &o);
  EXPECT_TRUE(st.ok()) << st.message();
  return o;
}

// The policy allgo-sshd gives a key with these options under this [sshd] section.
ForwardPolicy Policy(const std::string& sshd, const std::string& key_options = "") {
  Config c = Load("[sshd]\n" + sshd);
  KeyOptions combined;
  EXPECT_TRUE(RestrictKeyOptions(c.authkeys.sshd_options, Key(key_options), &combined).ok());
  return ComputeForwardPolicy(c.sshd, combined);
}

TEST(ForwardPolicy, TheShippedDefaultsForwardEverythingIntoTheSandbox) {
  ForwardPolicy p = Policy("");
  EXPECT_TRUE(p.local_tcp && p.remote_tcp && p.local_unix && p.remote_unix && p.agent);
  EXPECT_FALSE(p.gateway_ports);
  EXPECT_TRUE(p.permit_open.empty());
  EXPECT_EQ(p.max_forwards, 64u);
  EXPECT_EQ(p.max_listeners, 16u);
  EXPECT_TRUE(PermitsOpen(p, "127.0.0.1", 8888));
  EXPECT_TRUE(PermitsListen(p, "localhost", 0)) << "ssh -R 0:... (the port is allocated)";
  EXPECT_FALSE(PermitsListen(p, "0.0.0.0", 8080)) << "gateway_ports = no: loopback only";
}

TEST(ForwardPolicy, ConfigDirectionsAndAgent) {
  ForwardPolicy p = Policy("allow_tcp_forwarding = local\nallow_stream_local_forwarding = remote\n"
                           "allow_agent_forwarding = no\n");
  EXPECT_TRUE(p.local_tcp);
  EXPECT_FALSE(p.remote_tcp);
  EXPECT_FALSE(p.local_unix);
  EXPECT_TRUE(p.remote_unix);
  EXPECT_FALSE(p.agent);
  EXPECT_FALSE(PermitsListen(p, "localhost", 8080));
  p = Policy("allow_tcp_forwarding = no\nallow_stream_local_forwarding = no\nallow_agent_forwarding = no\n");
  EXPECT_FALSE(p.Any());
  EXPECT_FALSE(PermitsOpen(p, "localhost", 80));
}

TEST(ForwardPolicy, KeyOptionsNarrowWithOpenSshsMeaning) {
  EXPECT_FALSE(Policy("", "restrict").Any());
  ForwardPolicy p = Policy("", "no-port-forwarding");
  EXPECT_FALSE(p.local_tcp || p.remote_tcp || p.local_unix || p.remote_unix) << "streamlocal too, as OpenSSH";
  EXPECT_TRUE(p.agent);
  p = Policy("", "no-agent-forwarding");
  EXPECT_FALSE(p.agent);
  EXPECT_TRUE(p.local_tcp);
  p = Policy("", "restrict,port-forwarding");
  EXPECT_TRUE(p.local_tcp && p.remote_unix);
  EXPECT_FALSE(p.agent);
  // The key never widens the config.
  p = Policy("allow_agent_forwarding = no\n", "restrict,agent-forwarding");
  EXPECT_FALSE(p.Any());
}

TEST(ForwardPolicy, KeyOptionsSetExplicitlyApplyUnderAllgoSshdToo) {
  Config c = Load("[authkeys]\nkey_options = restrict,pty\n");
  KeyOptions combined;
  ASSERT_TRUE(RestrictKeyOptions(c.authkeys.sshd_options, Key(""), &combined).ok());
  EXPECT_FALSE(ComputeForwardPolicy(c.sshd, combined).Any());
  c = Load("[authkeys]\nkey_options = no-port-forwarding,no-agent-forwarding,pty\n");
  ASSERT_TRUE(RestrictKeyOptions(c.authkeys.sshd_options, Key(""), &combined).ok());
  EXPECT_FALSE(ComputeForwardPolicy(c.sshd, combined).Any());
}

TEST(ForwardPolicy, PermitOpenListsMustAllAllow) {
  ForwardPolicy p = Policy("permit_open = localhost:8888 [::1]:* *:443\n");
  EXPECT_TRUE(PermitsOpen(p, "localhost", 8888));
  EXPECT_TRUE(PermitsOpen(p, "LOCALHOST", 8888)) << "host names are case-insensitive";
  EXPECT_FALSE(PermitsOpen(p, "localhost", 8889));
  EXPECT_FALSE(PermitsOpen(p, "127.0.0.1", 8888)) << "no name lookup: literal hosts only, as OpenSSH";
  EXPECT_TRUE(PermitsOpen(p, "::1", 22));
  EXPECT_TRUE(PermitsOpen(p, "[::1]", 22));
  EXPECT_TRUE(PermitsOpen(p, "example.org", 443));
  EXPECT_FALSE(PermitsOpen(p, "example.org", 80));
  // The key's list applies as well: the target must be in both.
  p = Policy("permit_open = localhost:8888 *:443\n", R"(permitopen="example.org:443",permitopen="localhost:*")");
  EXPECT_TRUE(PermitsOpen(p, "example.org", 443));
  EXPECT_TRUE(PermitsOpen(p, "localhost", 8888));
  EXPECT_FALSE(PermitsOpen(p, "other.org", 443)) << "in the config's list, not in the key's";
  EXPECT_FALSE(PermitsOpen(p, "localhost", 9999)) << "in the key's list, not in the config's";
  EXPECT_FALSE(PermitsOpen(Policy("permit_open = none\n"), "localhost", 80));
  EXPECT_TRUE(PermitsOpen(Policy("permit_open = any\n"), "localhost", 80));
}

TEST(ForwardPolicy, PermitListenAndGatewayPorts) {
  ForwardPolicy p = Policy("permit_listen = 8080 localhost:9000 127.0.0.*:7000\n");
  EXPECT_TRUE(PermitsListen(p, "localhost", 8080)) << "a bare port: any address, as OpenSSH";
  EXPECT_TRUE(PermitsListen(p, "", 8080)) << "no address is loopback";
  EXPECT_TRUE(PermitsListen(p, "127.0.0.1", 8080));
  EXPECT_TRUE(PermitsListen(p, "localhost", 9000));
  EXPECT_FALSE(PermitsListen(p, "127.0.0.1", 9000)) << "\"localhost\" and 127.0.0.1 differ, as in OpenSSH";
  EXPECT_TRUE(PermitsListen(p, "127.0.0.5", 7000)) << "listen hosts are patterns";
  EXPECT_FALSE(PermitsListen(p, "localhost", 0)) << "port 0 needs a * port";
  EXPECT_FALSE(PermitsListen(p, "0.0.0.0", 8080)) << "gateway_ports = no";
  EXPECT_TRUE(PermitsListen(Policy("permit_listen = *\n"), "localhost", 0));
  p = Policy("gateway_ports = clientspecified\n");
  EXPECT_TRUE(p.gateway_ports);
  EXPECT_TRUE(PermitsListen(p, "0.0.0.0", 8080));
  EXPECT_TRUE(PermitsListen(p, "::", 8080));
  EXPECT_TRUE(PermitsListen(Policy(""), "::1", 8080));
  EXPECT_TRUE(PermitsListen(Policy(""), "[::1]", 8080));
  EXPECT_TRUE(PermitsListen(Policy(""), "127.1.2.3", 8080));
  EXPECT_FALSE(PermitsListen(Policy(""), "::2", 8080));
  EXPECT_FALSE(PermitsListen(Policy("permit_listen = none\n"), "localhost", 8080));
  EXPECT_FALSE(PermitsListen(Policy("", R"(permitlisten="localhost:1")"), "localhost", 8080));
  EXPECT_FALSE(PermitsListen(Policy("allow_tcp_forwarding = local\n"), "localhost", 8080));
}

}  // namespace
}  // namespace allgo::sshd
