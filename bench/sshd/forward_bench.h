// sshd_bench --forward (issue 19, bench/sshd/forward.md): forwarding through allgo-sshd into a
// bubblewrap sandbox with its own network namespace (bridge backend) against stock OpenSSH
// sshd's own -L (forwarding from its frontend) and against a session's stdout through the
// same backend, all in one run.
#pragma once

#include <string>

namespace allgo::bench {

struct ForwardBenchOptions {
  double gib = 1;           // per -L / session transfer, each way
  int rounds = 3;           // transfers per kind and direction (the median is printed)
  int opens = 200;          // channel opens on a warm connection, for p50 / p90
  int concurrent = 200;     // forwarded channels open at once on one connection
  int payload_kib = 64;     // echoed through each concurrent channel and checked
  std::string cipher = "aes128-gcm@openssh.com";
  bool gateway = false;     // also channel opens through the docker gateway backend
};

int RunForwardBench(const ForwardBenchOptions& options);

// The forwards' target, run on the frontend's 127.0.0.1 (for OpenSSH) and inside the sandbox
// (for allgo-sshd): on each connection it writes "target NAME\n", then serves one request line:
// "D n" (writes n bytes and half-closes), "U n" (reads n bytes, answers "n\n") or "E" (echoes
// until EOF). Never returns.
[[noreturn]] void ServeForwardTarget(int port, const std::string& name);

}  // namespace allgo::bench
