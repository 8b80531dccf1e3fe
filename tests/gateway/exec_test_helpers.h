// Helpers the Engine API tests share (engine_client_test.cc, nginx_allowlist_test.cc): reading
// an exec stream to its end and waiting for an exec's exit code, with gtest failures on error.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <optional>
#include <string>

#include "allgo/engine_client.h"
#include "test_support.h"

namespace allgo::engine {

inline std::string TrimNewlines(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// Everything the stream gives until EOF (or `limit` passes: then what came, and a failure).
inline std::string ReadToEof(ExecStream& stream, std::chrono::milliseconds limit = std::chrono::seconds(20)) {
  std::string all, chunk;
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    Status s = stream.Read(&chunk, 4096, std::chrono::seconds(5));
    if (!s.ok()) {
      ADD_FAILURE() << s.ToString();
      return all;
    }
    if (chunk.empty()) return all;
    all += chunk;
  }
  ADD_FAILURE() << "no EOF within the limit; got: " << all;
  return all;
}

// The exit code once the engine has seen the process end.
inline std::optional<int> ExitCode(EngineClient& client, const std::string& id) {
  ExecInfo info;
  test::WaitFor(
      [&] {
        Status s = client.InspectExec(id, &info);
        EXPECT_TRUE(s.ok()) << s.ToString();
        return !s.ok() || !info.running;
      },
      10000);
  return info.exit_code;
}

}  // namespace allgo::engine
