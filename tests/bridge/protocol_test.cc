// The bridge protocol's encoder and strict decoder (docs/protocol.md).
#include "allgo/bridge/protocol.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <string>

namespace allgo::bridge {
namespace {

Open SampleOpen() {
  Open o;
  o.command = "ls -l /data";
  o.pty = true;
  o.term = "xterm-256color";
  o.window = {40, 120, 800, 600};
  o.modes = {{1, 3}, {53, 1}};
  o.env = {{"LANG", "C.UTF-8"}, {"LC_ALL", "fr_FR.UTF-8"}, {"TERM", "xterm"}};
  return o;
}

std::string Body(const std::string& frame) { return frame.substr(kFrameHeaderSize); }

// Decodes a whole frame through FrameReader, feeding it `chunk` bytes at a time.
std::vector<Message> Feed(const std::string& stream, size_t chunk, std::string* error) {
  FrameReader reader;
  std::vector<Message> out;
  size_t pos = 0;
  while (pos < stream.size() || reader.buffered() > 0) {
    size_t n = reader.Append(std::string_view(stream).substr(pos, std::min(chunk, stream.size() - pos)));
    pos += n;
    for (;;) {
      Message m;
      auto r = reader.Next(&m, error);
      if (r == FrameReader::Result::kError) return out;
      if (r == FrameReader::Result::kNeedMore) break;
      out.push_back(m);
    }
    if (pos >= stream.size()) break;
  }
  return out;
}

TEST(BridgeProtocol, EveryMessageRoundTrips) {
  std::vector<Message> all = {SampleOpen(),
                              Open{kProtocolVersion, true, false, "", "", {}, {}, {}},
                              Opened{kProtocolVersion, "s-0123456789abcdef0123456789abcdef"},
                              Attached{},
                              Started{4242},
                              Window{{24, 80, 0, 0}},
                              Signal{15},
                              Exit{false, 3, false},
                              Exit{true, 9, true},
                              Error{"uid 12 may not use this sandbox"}};
  std::string stream;
  for (const Message& m : all) {
    EXPECT_EQ(Validate(m), "");
    stream += EncodeFrame(m);
  }
  for (size_t chunk : {size_t{1}, size_t{7}, stream.size()}) {
    std::string error;
    std::vector<Message> got = Feed(stream, chunk, &error);
    EXPECT_EQ(error, "");
    EXPECT_EQ(got, all) << "chunk " << chunk;
  }
}

TEST(BridgeProtocol, FrameHeaderIsTheBigEndianBodyLength) {
  std::string frame = EncodeFrame(Signal{1});
  ASSERT_EQ(frame.size(), 6u);
  EXPECT_EQ(frame.substr(0, 4), std::string("\0\0\0\2", 4));
  EXPECT_EQ(frame[4], 6);  // type
  EXPECT_EQ(frame[5], 1);
}

TEST(BridgeProtocol, RejectsFrameLengthsOutsideTheBound) {
  for (std::string header : {std::string("\0\0\0\0", 4), std::string("\xff\xff\xff\xff", 4),
                             std::string("\0\1\0\1", 4)}) {
    FrameReader reader;
    reader.Append(header);
    Message m;
    std::string error;
    EXPECT_EQ(reader.Next(&m, &error), FrameReader::Result::kError);
    EXPECT_NE(error.find("frame length"), std::string::npos) << error;
  }
}

TEST(BridgeProtocol, ReaderBuffersAtMostFourFrames) {
  FrameReader reader;
  std::string big(400000, 'x');
  EXPECT_EQ(FrameReader::kMaxBuffered, 4 * (kFrameHeaderSize + kMaxBody));
  EXPECT_EQ(reader.Append(big), FrameReader::kMaxBuffered);
  EXPECT_EQ(reader.Room(), 0u);
  EXPECT_EQ(reader.Append("more"), 0u);
}

TEST(BridgeProtocol, RejectsUnknownTypesTrailingBytesAndTruncation) {
  Message m;
  std::string error;
  EXPECT_FALSE(DecodeBody(std::string("\x63", 1), &m, &error));
  EXPECT_NE(error.find("unknown message type 99"), std::string::npos) << error;

  std::string body = Body(EncodeFrame(Started{1})) + "!";
  EXPECT_FALSE(DecodeBody(body, &m, &error));
  EXPECT_NE(error.find("trailing bytes"), std::string::npos) << error;

  std::string open = Body(EncodeFrame(SampleOpen()));
  for (size_t cut = 1; cut < open.size(); ++cut) {
    EXPECT_FALSE(DecodeBody(open.substr(0, cut), &m, &error)) << cut;
  }
  EXPECT_FALSE(DecodeBody("", &m, &error));
}

TEST(BridgeProtocol, UnsupportedVersionIsNamed) {
  Open o = SampleOpen();
  o.version = 7;
  Message m;
  std::string error;
  EXPECT_FALSE(DecodeBody(Body(EncodeFrame(o)), &m, &error));
  EXPECT_EQ(error, "open: unsupported protocol version 7 (this side speaks 1)");
}

TEST(BridgeProtocol, OpenFieldsAreBounded) {
  Message m;
  std::string error;
  auto rejects = [&](Open o, const std::string& expected) {
    EXPECT_NE(Validate(o), "");
    EXPECT_FALSE(DecodeBody(Body(EncodeFrame(o)), &m, &error));
    EXPECT_NE(error.find(expected), std::string::npos) << error;
  };
  Open o = SampleOpen();
  o.command = std::string(kMaxCommand + 1, 'a');
  rejects(o, "command longer than 60000");
  o = SampleOpen();
  o.command = std::string("a\0b", 3);
  rejects(o, "NUL");
  o = SampleOpen();
  o.env.push_back({"LD_PRELOAD", "/tmp/x.so"});
  rejects(o, "not allowed: LD_PRELOAD");
  o = SampleOpen();
  o.term = "xterm;rm -rf /";
  rejects(o, "terminal type");
  o = SampleOpen();
  o.window.rows = 10001;
  rejects(o, "window larger");
  o = SampleOpen();
  o.modes.push_back({0, 1});
  rejects(o, "opcode");
  o = SampleOpen();
  o.command.clear();
  rejects(o, "empty command");
  o = SampleOpen();
  o.login_shell = true;
  rejects(o, "takes no command");
  o = SampleOpen();
  o.env.assign(kMaxEnv + 1, {"LANG", "C"});
  rejects(o, "more than 64 environment");
}

TEST(BridgeProtocol, OtherMessagesAreChecked) {
  Message m;
  std::string error;
  EXPECT_FALSE(DecodeBody(Body(EncodeFrame(Opened{1, "s-../../etc"})), &m, &error));
  EXPECT_FALSE(DecodeBody(Body(EncodeFrame(Opened{1, "s-0123456789ABCDEF0123456789abcdef"})), &m, &error));
  EXPECT_FALSE(DecodeBody(Body(EncodeFrame(Signal{19})), &m, &error));  // SIGSTOP
  EXPECT_NE(error.find("may not be relayed"), std::string::npos);
  EXPECT_FALSE(DecodeBody(Body(EncodeFrame(Exit{true, 0, false})), &m, &error));
  EXPECT_FALSE(DecodeBody(Body(EncodeFrame(Exit{false, 0, true})), &m, &error));
  EXPECT_FALSE(DecodeBody(Body(EncodeFrame(Error{"bell\a"})), &m, &error));
  std::string bad_bool = Body(EncodeFrame(Exit{false, 1, false}));
  bad_bool[1] = 2;
  EXPECT_FALSE(DecodeBody(bad_bool, &m, &error));
  EXPECT_NE(error.find("neither 0 nor 1"), std::string::npos);
}

TEST(BridgeProtocol, EnvironmentAllowList) {
  // SSH_AUTH_SOCK: agent forwarding's socket, a path inside the sandbox (docs/forwarding.md).
  for (const char* ok : {"TERM", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ", "COLORTERM", "ALLGO_USER",
                         "SSH_AUTH_SOCK"}) {
    EXPECT_TRUE(IsForwardableEnv(ok)) << ok;
  }
  for (const char* no : {"PATH", "LD_PRELOAD", "HOME", "LC_", "LC_all", "SSH_AUTH_SOCKET", "TERMINFO", ""}) {
    EXPECT_FALSE(IsForwardableEnv(no)) << no;
  }
}

TEST(BridgeProtocol, ShellStatusOfExit) {
  EXPECT_EQ((Exit{false, 7, false}.ShellStatus()), 7);
  EXPECT_EQ((Exit{true, 15, false}.ShellStatus()), 143);
}

// ---- stdio mode (docs/protocol.md "Stdio mode") ----

Open StdioOpen() {
  Open o = SampleOpen();
  o.version = kStdioProtocolVersion;
  return o;
}

std::vector<Message> FeedStdio(const std::string& stream, std::string* error) {
  FrameReader reader(Mode::kStdio);
  std::vector<Message> out;
  for (char c : stream) {  // one byte at a time: the hardest split
    EXPECT_EQ(reader.Append(std::string_view(&c, 1)), 1u);
    Message m;
    auto r = reader.Next(&m, error);
    if (r == FrameReader::Result::kError) return out;
    if (r == FrameReader::Result::kMessage) out.push_back(m);
  }
  return out;
}

TEST(BridgeProtocolStdio, EveryStdioMessageRoundTrips) {
  std::vector<Message> all = {StdioOpen(),
                              Started{7},
                              Data{Stream::kStdin, std::string("\0\377binary", 8)},
                              Data{Stream::kStdout, std::string(kMaxData, 'o')},
                              Data{Stream::kStderr, "e"},
                              Window{{50, 132, 0, 0}},
                              Signal{2},
                              Eof{Stream::kStdin},
                              Eof{Stream::kStdout},
                              Eof{Stream::kStderr},
                              Exit{true, 15, false},
                              Error{"no such container"}};
  std::string stream;
  for (const Message& m : all) {
    EXPECT_EQ(Validate(m, Mode::kStdio), "");
    stream += EncodeFrame(m);
  }
  std::string error;
  EXPECT_EQ(FeedStdio(stream, &error), all);
  EXPECT_EQ(error, "");
  // Data frames are exactly: type 9, the stream, the length, the bytes.
  EXPECT_EQ(EncodeFrame(Data{Stream::kStderr, "hi"}), std::string("\0\0\0\x08\x09\x02\0\0\0\x02hi", 12));
  EXPECT_EQ(EncodeFrame(Eof{Stream::kStdout}), std::string("\0\0\0\x02\x0a\x01", 6));
}

TEST(BridgeProtocolStdio, DataFrameHeaderMatchesTheEncoder) {
  for (size_t n : {size_t{1}, size_t{300}, kMaxData}) {
    std::string bytes(n, 'z');
    std::string frame(kDataFrameHeader, '\0');
    PutDataFrameHeader(frame.data(), Stream::kStderr, n);
    EXPECT_EQ(frame + bytes, EncodeFrame(Data{Stream::kStderr, bytes})) << n;
  }
}

TEST(BridgeProtocolStdio, TheVersionOfOpenSaysTheMode) {
  Message m;
  std::string error;
  // A socket-mode open on a stdio stream, and the other way round, are refused by name.
  EXPECT_FALSE(DecodeBody(Body(EncodeFrame(SampleOpen())), &m, &error, Mode::kStdio));
  EXPECT_EQ(error, "open: unsupported protocol version 1 (this side speaks 2, the stdio mode)");
  EXPECT_FALSE(DecodeBody(Body(EncodeFrame(StdioOpen())), &m, &error));
  EXPECT_EQ(error, "open: unsupported protocol version 2 (this side speaks 1)");
  EXPECT_NE(Validate(SampleOpen(), Mode::kStdio), "");
  EXPECT_NE(Validate(StdioOpen()), "");
  EXPECT_TRUE(DecodeBody(Body(EncodeFrame(StdioOpen())), &m, &error, Mode::kStdio)) << error;
  EXPECT_EQ(m, Message(StdioOpen()));
}

TEST(BridgeProtocolStdio, EachModeRefusesTheOthersMessages) {
  Message m;
  std::string error;
  // Data and eof do not exist on agent.sock: the socket mode is unchanged.
  EXPECT_FALSE(DecodeBody(Body(EncodeFrame(Data{Stream::kStdin, "x"})), &m, &error));
  EXPECT_EQ(error, "unknown message type 9");
  EXPECT_FALSE(DecodeBody(Body(EncodeFrame(Eof{Stream::kStdin})), &m, &error));
  EXPECT_EQ(error, "unknown message type 10");
  EXPECT_NE(Validate(Data{Stream::kStdin, "x"}), "");
  // The fifo handshake has no meaning on one stream.
  EXPECT_FALSE(DecodeBody(Body(EncodeFrame(Attached{})), &m, &error, Mode::kStdio));
  EXPECT_EQ(error, "unknown message type 3 (stdio mode)");
  EXPECT_FALSE(DecodeBody(Body(EncodeFrame(Opened{kProtocolVersion, "s-0123456789abcdef0123456789abcdef"})), &m,
                          &error, Mode::kStdio));
  EXPECT_EQ(error, "unknown message type 2 (stdio mode)");
  EXPECT_NE(Validate(Attached{}, Mode::kStdio), "");
}

TEST(BridgeProtocolStdio, DataIsBoundedAndStreamsAreChecked) {
  Message m;
  std::string error;
  auto rejects = [&](const Message& message, const std::string& expected) {
    EXPECT_NE(Validate(message, Mode::kStdio), "");
    EXPECT_FALSE(DecodeBody(Body(EncodeFrame(message)), &m, &error, Mode::kStdio));
    EXPECT_NE(error.find(expected), std::string::npos) << error;
  };
  rejects(Data{Stream::kStdout, std::string(kMaxData + 1, 'x')}, "data longer than 32768 bytes");
  rejects(Data{Stream::kStdout, ""}, "data: empty");
  rejects(Data{static_cast<Stream>(3), "x"}, "unknown stream 3");
  rejects(Eof{static_cast<Stream>(7)}, "eof: unknown stream");
  // The bound is checked before anything is copied: a huge claimed length fails at once.
  EXPECT_FALSE(DecodeBody(std::string("\x09\x01\xff\xff\xff\xff", 6), &m, &error, Mode::kStdio));
  EXPECT_NE(error.find("longer than 32768"), std::string::npos) << error;
  // Trailing bytes after an eof.
  EXPECT_FALSE(DecodeBody(std::string("\x0a\x01\x00", 3), &m, &error, Mode::kStdio));
  EXPECT_NE(error.find("trailing bytes"), std::string::npos) << error;
  // The biggest data frame fits in one frame with room to spare.
  EXPECT_LT(EncodeFrame(Data{Stream::kStdout, std::string(kMaxData, 'x')}).size(), kFrameHeaderSize + kMaxBody);
}

// NextView, the copy-free data path: valid data frames come out as views into the reader,
// everything else exactly as Next gives it, whatever the read sizes.
TEST(BridgeProtocolStdio, NextViewGivesWhatNextGives) {
  std::vector<Message> all = {StdioOpen(), Started{7}, Data{Stream::kStdout, std::string(kMaxData, 'o')},
                              Data{Stream::kStderr, std::string("\0e", 2)}, Eof{Stream::kStdout},
                              Data{Stream::kStdin, "in"}, Exit{false, 3, false}};
  std::string stream;
  for (const Message& m : all) stream += EncodeFrame(m);
  for (size_t read_size : {size_t{1}, size_t{7}, size_t{4096}, stream.size()}) {
    FrameReader reader(Mode::kStdio);
    std::vector<Message> got;
    size_t pos = 0;
    for (;;) {
      Message m;
      DataView data;
      std::string error;
      auto r = reader.NextView(&m, &data, &error);
      ASSERT_NE(r, FrameReader::Result::kError) << error;
      if (r == FrameReader::Result::kMessage) {
        got.push_back(data.bytes.empty() ? m : Message(Data{data.stream, std::string(data.bytes)}));
        continue;
      }
      if (pos == stream.size()) break;
      size_t want = std::min({read_size, reader.Room(), stream.size() - pos});
      char* at = reader.Grow(want + 5);  // more room than the "read" fills
      std::memcpy(at, stream.data() + pos, want);
      reader.Shrink(5);
      pos += want;
    }
    EXPECT_EQ(got, all) << "reads of " << read_size;
  }
}

TEST(BridgeProtocolStdio, NextViewRefusesWhatNextRefuses) {
  auto both = [](const std::string& frame, const std::string& expected) {
    FrameReader a(Mode::kStdio), b(Mode::kStdio);
    a.Append(frame);
    b.Append(frame);
    Message m;
    DataView data;
    std::string error_a, error_b;
    EXPECT_EQ(a.Next(&m, &error_a), FrameReader::Result::kError);
    EXPECT_EQ(b.NextView(&m, &data, &error_b), FrameReader::Result::kError);
    EXPECT_EQ(error_a, error_b);
    EXPECT_NE(error_b.find(expected), std::string::npos) << error_b;
    EXPECT_TRUE(data.bytes.empty());
  };
  std::string good = EncodeFrame(Data{Stream::kStdout, "abc"});
  std::string bad_stream = good, long_count = good, short_count = good;
  bad_stream[5] = 3;
  long_count[9] = 4;   // claims 4 bytes, 3 follow
  short_count[9] = 2;  // claims 2 bytes, 3 follow
  both(bad_stream, "unknown stream 3");
  both(long_count, "truncated");
  both(short_count, "trailing bytes");
  both(std::string("\0\0\0\x06\x09\x01\0\0\0\0", 10), "data: empty");
  // A data frame on agent.sock is an unknown type there, also through NextView.
  FrameReader socket_mode;
  socket_mode.Append(good);
  Message m;
  DataView data;
  std::string error;
  EXPECT_EQ(socket_mode.NextView(&m, &data, &error), FrameReader::Result::kError);
  EXPECT_EQ(error, "unknown message type 9");
}

TEST(ByteQueue, KeepsOrderAcrossPartialConsumesAndStaysWithinFourTimesItsBound) {
  ByteQueue q;
  std::string expected, out;
  uint8_t next = 0;
  // A producer that keeps at most 100 KB queued, a consumer that takes odd-sized bites.
  for (int round = 0; round < 2000; ++round) {
    size_t room = 100000 - q.size();
    size_t n = std::min<size_t>(room, 1 + (round * 7919) % 40000);
    char* at = q.Grow(n + 10);
    for (size_t i = 0; i < n; ++i) at[i] = static_cast<char>(next++);
    expected.append(at, n);
    q.Shrink(10);
    size_t take = std::min<size_t>(q.size(), (round * 104729) % 50000);
    out.append(q.data(), take);
    q.Consume(take);
  }
  out.append(q.data(), q.size());
  q.Consume(q.size());
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(out, expected);
  EXPECT_LE(q.capacity(), 4u * 100010u);  // the owner's bound: 100000 queued + 10 of spare room
}

TEST(ByteQueue, MovedFromIsEmptyAndUsable) {
  ByteQueue a;
  a.Append("hello");
  ByteQueue b = std::move(a);
  EXPECT_EQ(b.view(), "hello");
  EXPECT_TRUE(a.empty());  // NOLINT(bugprone-use-after-move): the documented state
  a.Append("again");
  EXPECT_EQ(a.view(), "again");
}

// ---- stream mode (version 3)

std::vector<Message> SampleStreamMessages() {
  return {Hello{},
          StreamOpen{1, StreamKind::kTcp, "127.0.0.1", 8888, "192.0.2.7", 51000, 0, 262144},
          StreamOpen{3, StreamKind::kUnix, "/run/user/app.sock", 0, "", 0, 0, 65536},
          StreamOpen{2, StreamKind::kForwardedTcp, "127.0.0.1", 8080, "127.0.0.1", 40000, 7, 65536},
          StreamOpen{4, StreamKind::kForwardedUnix, "/tmp/listen.sock", 0, "", 0, 8, 65536},
          StreamOpen{6, StreamKind::kAuthAgent, "", 0, "", 0, 9, 65536},
          StreamAccept{1, 262144},
          StreamRefuse{3, RefuseReason::kConnectFailed, "connect to /run/user/app.sock: No such file or directory"},
          StreamData{1, std::string("GET / HTTP/1.0\r\n\r\n")},
          StreamWindow{1, 32768},
          StreamEof{1},
          StreamClose{1},
          Listen{7, ListenKind::kTcp, "127.0.0.1", 0},
          Listen{8, ListenKind::kUnix, "/tmp/listen.sock", 0},
          Listen{9, ListenKind::kAuthAgent, "", 0},
          ListenResult{7, true, 43211, "", ""},
          ListenResult{9, true, 0, "/tmp/allgo-agent-0123/agent.sock", ""},
          ListenResult{8, false, 0, "", "bind /tmp/listen.sock: Address already in use"},
          Unlisten{7},
          Error{"too many streams"}};
}

TEST(BridgeProtocolStream, EveryMessageRoundTripsThroughOneReader) {
  std::string stream;
  for (const Message& m : SampleStreamMessages()) {
    EXPECT_EQ(Validate(m, Mode::kStream), "") << TypeName(static_cast<Type>(EncodeFrame(m)[4]));
    stream += EncodeFrame(m);
  }
  FrameReader reader(Mode::kStream);
  std::vector<Message> got;
  size_t pos = 0;
  std::string error;
  while (pos < stream.size()) {
    pos += reader.Append(std::string_view(stream).substr(pos, 7));
    Message m;
    while (reader.Next(&m, &error) == FrameReader::Result::kMessage) got.push_back(m);
    ASSERT_EQ(error, "");
  }
  EXPECT_EQ(got, SampleStreamMessages());
}

TEST(BridgeProtocolStream, AnOlderAgentRefusesTheHelloByVersion) {
  // What a version 1 agent (agent.sock) or a version 2 one (--stdio) answers to a stream
  // client: the version mismatch, by name, not a garbled field.
  std::string body = Body(EncodeFrame(Hello{}));
  EXPECT_EQ(PeekVersion(body), kStreamProtocolVersion);
  Message m;
  std::string error;
  EXPECT_FALSE(DecodeBody(body, &m, &error, Mode::kSocket));
  EXPECT_EQ(error, "open: unsupported protocol version 3 (this side speaks 1)");
  EXPECT_FALSE(DecodeBody(body, &m, &error, Mode::kStdio));
  EXPECT_EQ(error, "open: unsupported protocol version 3 (this side speaks 2, the stdio mode)");
  // And a stream agent reading a version 1 open says so too.
  std::string v1 = Body(EncodeFrame(SampleOpen()));
  EXPECT_EQ(PeekVersion(v1), kProtocolVersion);
  EXPECT_FALSE(DecodeBody(v1, &m, &error, Mode::kStream));
  EXPECT_EQ(error, "hello: unsupported protocol version 1 (this side speaks 3, the stream mode)");
}

TEST(BridgeProtocolStream, ModesKeepTheirOwnTypes) {
  Message m;
  std::string error;
  EXPECT_FALSE(DecodeBody(Body(EncodeFrame(StreamData{1, "x"})), &m, &error, Mode::kSocket));
  EXPECT_EQ(error, "unknown message type 14");
  EXPECT_FALSE(DecodeBody(Body(EncodeFrame(StreamData{1, "x"})), &m, &error, Mode::kStdio));
  EXPECT_EQ(error, "unknown message type 14 (stdio mode)");
  EXPECT_FALSE(DecodeBody(Body(EncodeFrame(Data{Stream::kStdin, "x"})), &m, &error, Mode::kStream));
  EXPECT_EQ(error, "unknown message type 9 (stream mode)");
  EXPECT_NE(Validate(SampleOpen(), Mode::kStream), "");
  EXPECT_NE(Validate(Hello{}, Mode::kSocket), "");
}

TEST(BridgeProtocolStream, RefusesWhatNoHonestPeerSends) {
  struct Case {
    Message message;
    std::string error;
  };
  std::vector<Case> cases = {
      {StreamOpen{0, StreamKind::kTcp, "h", 1, "", 0, 0, 0}, "stream-open: stream id 0"},
      {StreamOpen{2, StreamKind::kTcp, "h", 1, "", 0, 0, 0}, "stream-open: stream id of the wrong side for its kind"},
      {StreamOpen{1, StreamKind::kForwardedTcp, "h", 1, "", 0, 1, 0}, "stream-open: stream id of the wrong side for its kind"},
      {StreamOpen{2, StreamKind::kForwardedTcp, "h", 1, "", 0, 0, 0}, "stream-open: listener id does not match the kind"},
      {StreamOpen{1, StreamKind::kTcp, "h", 0, "", 0, 0, 0}, "stream-open: port 0"},
      {StreamOpen{1, StreamKind::kTcp, "h", 65536, "", 0, 0, 0}, "stream-open: port out of range"},
      {StreamOpen{1, StreamKind::kTcp, "a b", 1, "", 0, 0, 0}, "stream-open: malformed host"},
      {StreamOpen{1, StreamKind::kUnix, "relative.sock", 0, "", 0, 0, 0}, "stream-open: malformed socket path"},
      {StreamOpen{1, StreamKind::kUnix, std::string("/a\0b", 4), 0, "", 0, 0, 0}, "stream-open: malformed socket path"},
      {StreamOpen{1, static_cast<StreamKind>(9), "h", 1, "", 0, 0, 0}, "stream-open: unknown kind 9"},
      {StreamOpen{1, StreamKind::kTcp, "h", 1, "", 0, 0, kMaxStreamWindow + 1}, "stream-open: window larger than 16 MiB"},
      {StreamRefuse{1, static_cast<RefuseReason>(5), ""}, "stream-refuse: unknown reason 5"},
      {StreamData{1, ""}, "stream-data: empty"},
      {StreamWindow{1, 0}, "stream-window: increment out of range"},
      {Listen{1, ListenKind::kTcp, "127.0.0.1", 70000}, "listen: port out of range"},
      {Listen{1, ListenKind::kAuthAgent, "/x", 0}, "listen: an agent socket has no address"},
      {ListenResult{1, false, 0, "", ""}, "listen-result: fields do not match the outcome"},
      {ListenResult{1, true, 5, "", "but failed"}, "listen-result: fields do not match the outcome"},
      {Unlisten{0}, "unlisten: listener id 0"},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(Validate(c.message, Mode::kStream), c.error);
    Message m;
    std::string error;
    EXPECT_FALSE(DecodeBody(Body(EncodeFrame(c.message)), &m, &error, Mode::kStream)) << c.error;
    EXPECT_EQ(error, c.error);
  }
  // Trailing bytes and truncation, as in every mode.
  std::string body = Body(EncodeFrame(StreamEof{5}));
  Message m;
  std::string error;
  EXPECT_FALSE(DecodeBody(body + "x", &m, &error, Mode::kStream));
  EXPECT_EQ(error, "stream-eof: trailing bytes");
  EXPECT_FALSE(DecodeBody(body.substr(0, 3), &m, &error, Mode::kStream));
  EXPECT_EQ(error, "stream-eof: truncated");
}

TEST(BridgeProtocolStream, NextViewHandsStreamDataOutInPlace) {
  std::string payload(kMaxData, 'z');
  std::string stream = EncodeFrame(StreamData{77, payload}) + EncodeFrame(StreamEof{77});
  char header[kStreamDataFrameHeader];
  PutStreamDataFrameHeader(header, 77, payload.size());
  EXPECT_EQ(stream.compare(0, kStreamDataFrameHeader, header, kStreamDataFrameHeader), 0);
  FrameReader reader(Mode::kStream);
  ASSERT_EQ(reader.Append(stream), stream.size());
  Message m;
  DataView view;
  std::string error;
  ASSERT_EQ(reader.NextView(&m, &view, &error), FrameReader::Result::kMessage);
  EXPECT_EQ(view.id, 77u);
  EXPECT_EQ(view.bytes, payload);
  ASSERT_EQ(reader.NextView(&m, &view, &error), FrameReader::Result::kMessage);
  EXPECT_TRUE(view.bytes.empty());
  EXPECT_EQ(m, Message(StreamEof{77}));
}

}  // namespace
}  // namespace allgo::bridge
