// ResponseReader: Engine API answers fed as bytes, whole and in pieces, and the bounds that
// keep a hostile engine from growing the gateway's memory (issue 18).
#include "allgo/engine_response.h"

#include <gtest/gtest.h>

#include <string>

namespace allgo::engine {
namespace {

// Feeds `answer` `piece` bytes at a time; the first error, or Ok.
Status FeedInPieces(ResponseReader& reader, const std::string& answer, size_t piece) {
  for (size_t at = 0; at < answer.size(); at += piece) {
    Status s = reader.Feed(std::string_view(answer).substr(at, piece));
    if (!s.ok()) return s;
  }
  return Status::Ok();
}

const std::string kInspect = R"({"Id":"abc","Name":"/web1","State":{"Status":"running"}})";

TEST(ResponseReader, ContentLengthAnswerWholeAndByteByByte) {
  std::string answer = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
                       std::to_string(kInspect.size()) + "\r\n\r\n" + kInspect;
  for (size_t piece : {answer.size(), size_t{1}, size_t{7}}) {
    ResponseReader reader;
    ASSERT_TRUE(FeedInPieces(reader, answer, piece).ok());
    ASSERT_TRUE(reader.done()) << piece;
    EXPECT_EQ(reader.status(), 200);
    EXPECT_EQ(reader.TakeBody(), kInspect);
  }
}

TEST(ResponseReader, ChunkedAnswerAsDockerSendsIt) {
  std::string answer = "HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n"
                       "10\r\n{\"message\":\"No s\r\n"
                       "15;ext=1\r\nuch container: web1\"}\r\n"
                       "0\r\n\r\n";
  for (size_t piece : {answer.size(), size_t{1}, size_t{3}}) {
    ResponseReader reader;
    ASSERT_TRUE(FeedInPieces(reader, answer, piece).ok());
    ASSERT_TRUE(reader.done());
    EXPECT_EQ(reader.status(), 404);
    EXPECT_EQ(reader.TakeBody(), R"({"message":"No such container: web1"})");
  }
}

TEST(ResponseReader, UpgradeLeavesTheStreamBytes) {
  ResponseReader reader;
  const std::string stream("\x01\0\0\0", 4);
  ASSERT_TRUE(reader.Feed("HTTP/1.1 101 UPGRADED\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n" + stream).ok());
  ASSERT_TRUE(reader.done());
  EXPECT_EQ(reader.status(), 101);
  EXPECT_EQ(reader.TakeLeftover(), stream);
}

TEST(ResponseReader, BodyToTheEndOfTheConnection) {
  ResponseReader reader;
  ASSERT_TRUE(reader.Feed("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{}").ok());
  EXPECT_FALSE(reader.done());
  ASSERT_TRUE(reader.FeedEof().ok());
  EXPECT_EQ(reader.TakeBody(), "{}");
}

TEST(ResponseReader, ClosedMidAnswerSaysWhere) {
  ResponseReader none;
  Status s = none.FeedEof();
  EXPECT_EQ(s.message(), "the engine closed the connection without answering");

  ResponseReader head;
  ASSERT_TRUE(head.Feed("HTTP/1.1 200 OK\r\nContent-Le").ok());
  s = head.FeedEof();
  EXPECT_TRUE(s.IsUnavailable());
  EXPECT_EQ(s.message(), "the engine closed the connection mid-answer, after 27 bytes (in the status line and headers)");

  ResponseReader body;
  ASSERT_TRUE(body.Feed("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{\"a\"").ok());
  s = body.FeedEof();
  EXPECT_EQ(s.message(), "the engine closed the connection mid-answer, after 43 bytes (in the body)");
}

// Feeds `piece` again and again after `start` until the reader fails; fails the test when
// it never does within `most` bytes or holds more than `held` bytes at any time.
Status FeedEndlessly(const std::string& start, const std::string& piece, size_t most, size_t held) {
  ResponseReader reader;
  Status s = reader.Feed(start);
  for (size_t fed = 0; s.ok() && fed < most; fed += piece.size()) {
    s = reader.Feed(piece);
    EXPECT_LE(reader.held(), held);
  }
  EXPECT_FALSE(s.ok()) << "no bound after " << most << " bytes";
  EXPECT_EQ(reader.held(), 0u) << "a failed reader frees what it held";
  // Failed for good.
  EXPECT_FALSE(reader.Feed("x").ok());
  return s;
}

TEST(ResponseReader, ChunkSizeLineWithoutEndIsBounded) {
  Status s = FeedEndlessly("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1", std::string(16 * 1024, '0'),
                           64 << 20, 20 * 1024);
  EXPECT_TRUE(s.IsInvalid());
  EXPECT_EQ(s.message(), "a chunk-size line (or the trailer) of the answer is longer than 1024 bytes");
  // Extensions that never end, likewise.
  s = FeedEndlessly("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;a=", std::string(16 * 1024, 'b'), 64 << 20, 20 * 1024);
  EXPECT_EQ(s.message(), "a chunk-size line (or the trailer) of the answer is longer than 1024 bytes");
}

TEST(ResponseReader, StatusLineAndHeadersWithoutEndAreBounded) {
  Status s = FeedEndlessly("HTTP/1.1 200 ", std::string(16 * 1024, 'O'), 64 << 20, 40 * 1024);
  EXPECT_EQ(s.message(), "the status line and headers of the answer are longer than 16384 bytes");
  s = FeedEndlessly("HTTP/1.1 200 OK\r\nX: ", std::string(16 * 1024, 'y'), 64 << 20, 40 * 1024);
  EXPECT_EQ(s.message(), "the status line and headers of the answer are longer than 16384 bytes");
}

TEST(ResponseReader, TooManyHeaderFields) {
  std::string answer = "HTTP/1.1 200 OK\r\n";
  for (int i = 0; i < 65; ++i) answer += "X-" + std::to_string(i) + ": 1\r\n";
  answer += "Content-Length: 0\r\n\r\n";
  ResponseReader reader;
  Status s = reader.Feed(answer);
  EXPECT_EQ(s.message(), "the answer has more than 64 header fields");
}

TEST(ResponseReader, BodyWithoutEndIsBounded) {
  // Chunks without end, a body to the end of the connection, and a Content-Length over it.
  const std::string data(16 * 1024, 'z');
  Status s = FeedEndlessly("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "4000\r\n" + data + "\r\n",
                           64 << 20, (1 << 20) + 40 * 1024);
  EXPECT_EQ(s.message(), "the body of the answer is longer than 1048576 bytes");
  s = FeedEndlessly("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", data, 64 << 20, (1 << 20) + 40 * 1024);
  EXPECT_EQ(s.message(), "the body of the answer is longer than 1048576 bytes");
  ResponseReader reader;
  s = reader.Feed("HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n");
  EXPECT_EQ(s.message(), "the body of the answer is longer than 1048576 bytes");
  // The same with body bytes in the same read (fuzz_engine_response's find): the parser must
  // stop at the header, not reserve 93 GiB for the body (bad_alloc, or the gateway's RSS).
  for (size_t piece : {size_t{1024}, size_t{1}}) {
    ResponseReader eager;
    s = FeedInPieces(eager, "HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n{\"Id\":\"x\"}\n", piece);
    EXPECT_EQ(s.message(), "the body of the answer is longer than 1048576 bytes") << piece;
    EXPECT_LT(eager.held(), 64u) << piece;
  }
}

TEST(ResponseReader, NotHttpIsAClearError) {
  ResponseReader reader;
  Status s = reader.Feed("SSH-2.0-OpenSSH_9.2\r\n");
  EXPECT_TRUE(s.IsInvalid());
  EXPECT_EQ(s.message().rfind("the answer is not valid HTTP/1.1 (", 0), 0u) << s.message();

  ResponseReader chunk;
  s = chunk.Feed("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n");
  EXPECT_EQ(s.message().rfind("the answer is not valid HTTP/1.1 (", 0), 0u) << s.message();
}

TEST(ResponseReader, BytesAfterTheAnswerAreRefused) {
  ResponseReader reader;
  ASSERT_TRUE(reader.Feed("HTTP/1.1 204 No Content\r\n\r\n").ok());
  ASSERT_TRUE(reader.done());
  EXPECT_FALSE(reader.Feed("more").ok());
}

}  // namespace
}  // namespace allgo::engine
