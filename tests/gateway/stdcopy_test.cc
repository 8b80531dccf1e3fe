// The stdcopy demuxer and the URL guards of the Engine API client: pure, no engine.
#include "allgo/stdcopy.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "allgo/engine_client.h"

namespace allgo::engine {
namespace {

std::string Frame(uint8_t stream, const std::string& payload) {
  std::string f(8, '\0');
  f[0] = static_cast<char>(stream);
  uint32_t n = static_cast<uint32_t>(payload.size());
  f[4] = static_cast<char>(n >> 24);
  f[5] = static_cast<char>(n >> 16);
  f[6] = static_cast<char>(n >> 8);
  f[7] = static_cast<char>(n);
  return f + payload;
}

struct Collected {
  std::string out, err, sys;
  StdcopyDemuxer::Sink Sink() {
    return [this](StdStream s, std::string_view b) {
      if (s == StdStream::kStdout) out += b;
      else if (s == StdStream::kStderr) err += b;
      else sys += b;
    };
  }
};

TEST(StdcopyDemuxer, SplitsStdoutAndStderr) {
  StdcopyDemuxer demux;
  Collected c;
  std::string data = Frame(1, "hello\n") + Frame(2, "oops\n") + Frame(1, "") + Frame(1, "world\n") + Frame(3, "sys");
  ASSERT_TRUE(demux.Feed(data, c.Sink()).ok());
  EXPECT_EQ(c.out, "hello\nworld\n");
  EXPECT_EQ(c.err, "oops\n");
  EXPECT_EQ(c.sys, "sys");
  EXPECT_TRUE(demux.AtFrameBoundary());
}

TEST(StdcopyDemuxer, SameResultWhateverTheChunking) {
  std::string data = Frame(1, std::string(1000, 'a')) + Frame(2, "bb") + Frame(1, "c");
  for (size_t chunk : {1u, 2u, 7u, 8u, 9u, 100u}) {
    StdcopyDemuxer demux;
    Collected c;
    for (size_t i = 0; i < data.size(); i += chunk) {
      ASSERT_TRUE(demux.Feed(std::string_view(data).substr(i, chunk), c.Sink()).ok()) << chunk;
    }
    EXPECT_EQ(c.out, std::string(1000, 'a') + "c") << chunk;
    EXPECT_EQ(c.err, "bb") << chunk;
    EXPECT_TRUE(demux.AtFrameBoundary());
  }
}

TEST(StdcopyDemuxer, PartialFrameIsNotABoundary) {
  StdcopyDemuxer demux;
  Collected c;
  std::string data = Frame(1, "abcdef");
  ASSERT_TRUE(demux.Feed(data.substr(0, 5), c.Sink()).ok());
  EXPECT_FALSE(demux.AtFrameBoundary());
  ASSERT_TRUE(demux.Feed(data.substr(5, 6), c.Sink()).ok());
  EXPECT_FALSE(demux.AtFrameBoundary());
  EXPECT_EQ(c.out, "abc");
}

TEST(StdcopyDemuxer, RejectsBadStreamByte) {
  StdcopyDemuxer demux;
  Collected c;
  Status s = demux.Feed(Frame(4, "x"), c.Sink());
  EXPECT_TRUE(s.IsInvalid());
  EXPECT_NE(s.message().find("Tty=true"), std::string::npos) << s.message();
  // Raw TTY output fed by mistake: 'h' is not a stream byte.
  StdcopyDemuxer tty;
  EXPECT_TRUE(tty.Feed("hello world\n", c.Sink()).IsInvalid());
  EXPECT_TRUE(c.out.empty());
  // Once failed, it stays failed.
  EXPECT_TRUE(tty.Feed(Frame(1, "ok"), c.Sink()).IsInvalid());
  EXPECT_TRUE(c.out.empty());
}

TEST(StdcopyDemuxer, RejectsNonZeroPadding) {
  StdcopyDemuxer demux;
  Collected c;
  std::string f = Frame(1, "x");
  f[2] = 1;
  EXPECT_TRUE(demux.Feed(f, c.Sink()).IsInvalid());
  EXPECT_TRUE(c.out.empty());
}

TEST(StdcopyDemuxer, RejectsOversizedFrame) {
  StdcopyDemuxer demux(16);
  Collected c;
  EXPECT_TRUE(demux.Feed(Frame(1, std::string(16, 'x')), c.Sink()).ok());
  std::string big = Frame(1, std::string(17, 'x'));
  Status s = demux.Feed(big, c.Sink());
  EXPECT_TRUE(s.IsInvalid());
  EXPECT_NE(s.message().find("17 bytes"), std::string::npos) << s.message();
  EXPECT_EQ(c.out, std::string(16, 'x'));
  // A header claiming 4 GiB with the default limit.
  StdcopyDemuxer def;
  std::string huge("\x01\0\0\0\xff\xff\xff\xff", 8);
  EXPECT_TRUE(def.Feed(huge, c.Sink()).IsInvalid());
}

TEST(EngineNames, ContainerNamesFollowDockerName) {
  EXPECT_TRUE(IsValidContainerName("webapp1"));
  EXPECT_TRUE(IsValidContainerName("my-app_2"));
  for (const char* bad : {"", "../etc", "a/b", "App", "a b", "a%2f", "a?x", "1abc", "a.b",
                          "abcdefghijabcdefghijabcdefghijabc"}) {
    EXPECT_FALSE(IsValidContainerName(bad)) << bad;
  }
  // Names an engine could take for the id prefix of another container.
  for (const char* ambiguous : {"cafe", "a", "dead", "bad0"}) {
    EXPECT_TRUE(IsAmbiguousWithContainerId(ambiguous)) << ambiguous;
    EXPECT_FALSE(IsValidContainerName(ambiguous)) << ambiguous;
  }
  EXPECT_TRUE(IsValidContainerName("cafe-1")) << "a non-hex character makes it a name only";
  EXPECT_TRUE(IsValidContainerName("allgo-cafe"));
}

TEST(EngineNames, ExecIds) {
  EXPECT_TRUE(IsValidExecId(std::string(64, 'a')));
  EXPECT_FALSE(IsValidExecId(std::string(63, 'a')));
  EXPECT_FALSE(IsValidExecId(std::string(64, 'A')));
  EXPECT_FALSE(IsValidExecId(std::string(60, 'a') + "/../"));
}

TEST(EngineNames, PercentEncode) {
  EXPECT_EQ(PercentEncode("my-app_1.x~"), "my-app_1.x~");
  EXPECT_EQ(PercentEncode("a/b?c d%"), "a%2Fb%3Fc%20d%25");
}

TEST(EngineClientCreate, RejectsBadUrlsWithTheReason) {
  std::unique_ptr<EngineClient> client;
  struct Case {
    std::string url, expect;
  };
  for (const Case& c : std::vector<Case>{
           {"http://x:1", "unix:///PATH or tcp://HOST:PORT"},
           {"unix://relative", "absolute path"},
           {"unix:///" + std::string(120, 'a'), "longer than"},
           {"tcp://127.0.0.1", "HOST:PORT"},
           {"tcp://127.0.0.1:99999", "bad HOST:PORT"},
           {"tcp://127.0.0.1:2376", "tls_ca, tls_cert and tls_key"},
       }) {
    Status s = EngineClient::Create({.url = c.url}, &client);
    EXPECT_TRUE(s.IsInvalid()) << c.url;
    EXPECT_NE(s.message().find(c.expect), std::string::npos) << c.url << ": " << s.message();
  }
  Status s = EngineClient::Create({.url = "tcp://127.0.0.1:2376", .tls_ca = "/nonexistent/ca.pem",
                                   .tls_cert = "/nonexistent/c.pem", .tls_key = "/nonexistent/k.pem"},
                                  &client);
  EXPECT_NE(s.message().find("tls_ca /nonexistent/ca.pem"), std::string::npos) << s.message();
  EXPECT_TRUE(EngineClient::Create({.url = "unix:///run/docker.sock"}, &client).ok());
  ASSERT_TRUE(client);
  // A bad name never reaches the engine (which does not exist here).
  ContainerInfo info;
  s = client->InspectContainer("../../info", &info);
  EXPECT_TRUE(s.IsInvalid());
  EXPECT_NE(s.message().find("refusing container name"), std::string::npos) << s.message();
  std::string id;
  EXPECT_TRUE(client->CreateExec("a/b", {.cmd = {"true"}}, &id).IsInvalid());
  EXPECT_TRUE(client->ResizeExec("../containers/x", 24, 80).IsInvalid());
}

}  // namespace
}  // namespace allgo::engine
