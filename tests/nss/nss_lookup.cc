// nss-lookup: a small program that looks users up through glibc the way real programs do,
// for the NSS integration tests (run as a child inside the test's private NSS namespace).
//
//   nss-lookup threads THREADS ROUNDS NAME:UID...
//       THREADS threads each look every NAME up by name and every UID by uid, ROUNDS times,
//       and check that the answers agree. Prints "ok LOOKUPS" or the first mismatch.
//   nss-lookup fork CHILDREN NAME:UID...
//       Looks everything up (the module now holds connections and state), starts threads
//       that keep looking up, forks CHILDREN children while they run; each child looks
//       everything up again and exits 0 when all answers are right. Prints "ok".
//   nss-lookup serve
//       Reads requests on stdin, one per line: "name NAME" or "uid UID"; answers one line:
//       "found NAME UID GID GECOS", "notfound", or "error ERRNO_NAME". For long-lived
//       process tests (database restart, cache expiry, config reload).
//   nss-lookup enum [--tiny-first] [--interleave NAME]
//       setpwent/getpwent_r/endpwent, printing one name per line. --tiny-first first asks
//       each entry with a 16-byte buffer (must fail with ERANGE and not skip the entry).
//       --interleave looks NAME up by name between entries (must not disturb the cursor).
//   nss-lookup erange NAME
//       getpwnam_r and getpwuid_r with a 16-byte buffer must return ERANGE; getpwnam() (which
//       retries with a growing buffer) must then succeed. Prints "ok".
//   nss-lookup fds NAME
//       Closes stdin, looks NAME up (the module keeps its database connection open), then
//       checks that fd 0 is still closed (the connection did not land on a standard stream)
//       and that every open fd above 2 is close-on-exec. Prints "ok" or the culprits.
//   nss-lookup secure NAME
//       For the setuid tests, which run a root-owned setuid copy as an unprivileged uid: looks
//       NAME up with getpwnam_r and prints one line
//       "at_secure=N ruid=R euid=E module=loaded|absent lookup=found|notfound|errno=ERRNO_NAME",
//       module telling whether glibc loaded libnss_allgo.so.2 into this process for the lookup.
//   nss-lookup hits SERVICES NAME UID COUNT
//       Sets `passwd: SERVICES` for this process (__nss_configure_lookup, which also stops
//       glibc's per-call stat of nsswitch.conf), looks NAME and UID up once (the module's cache
//       is now warm), prints "warm", then COUNT times getpwnam_r(NAME) and getpwuid_r(UID),
//       checking every answer, and prints "done COUNT" (or the first failure). The two lines
//       are written with one write() each: run under strace, what the process did between
//       them is the cost of COUNT warm hits in system calls.
#include <dirent.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <nss.h>
#include <pwd.h>
#include <sys/auxv.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

namespace {

struct Expected {
  std::string name;
  uid_t uid = 0;
};

int Usage() {
  std::fprintf(stderr,
               "usage: nss-lookup threads THREADS ROUNDS NAME:UID... | fork CHILDREN NAME:UID...\n"
               "       | serve | enum [--tiny-first] [--interleave NAME] | erange NAME | fds NAME\n"
               "       | secure NAME | hits SERVICES NAME UID COUNT\n");
  return 2;
}

bool ParseExpected(int argc, char** argv, int first, std::vector<Expected>* out) {
  for (int i = first; i < argc; ++i) {
    const std::string arg = argv[i];
    const size_t colon = arg.find(':');
    if (colon == std::string::npos) return false;
    char* end = nullptr;
    const unsigned long uid = std::strtoul(arg.c_str() + colon + 1, &end, 10);
    if (*end != '\0' || uid > 0xFFFFFFFEul) return false;
    out->push_back({arg.substr(0, colon), static_cast<uid_t>(uid)});
  }
  return !out->empty();
}

// One check of every expected entry by name and by uid; "" when right, else what was wrong.
std::string CheckAll(const std::vector<Expected>& expected) {
  std::vector<char> buf(4096);
  for (const Expected& e : expected) {
    struct passwd pw {};
    struct passwd* result = nullptr;
    int err = getpwnam_r(e.name.c_str(), &pw, buf.data(), buf.size(), &result);
    if (err != 0 || result == nullptr || pw.pw_uid != e.uid || e.name != pw.pw_name) {
      return "getpwnam_r(" + e.name + ") failed: err=" + std::to_string(err);
    }
    err = getpwuid_r(e.uid, &pw, buf.data(), buf.size(), &result);
    if (err != 0 || result == nullptr || pw.pw_uid != e.uid || e.name != pw.pw_name) {
      return "getpwuid_r(" + std::to_string(e.uid) + ") failed: err=" + std::to_string(err);
    }
  }
  return "";
}

int Threads(int argc, char** argv) {
  if (argc < 5) return Usage();
  const int threads = std::atoi(argv[2]);
  const int rounds = std::atoi(argv[3]);
  std::vector<Expected> expected;
  if (threads <= 0 || rounds <= 0 || !ParseExpected(argc, argv, 4, &expected)) return Usage();
  std::atomic<long> lookups{0};
  std::atomic<bool> failed{false};
  std::string first_error;
  std::atomic_flag error_taken = ATOMIC_FLAG_INIT;
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      for (int r = 0; r < rounds && !failed; ++r) {
        const std::string error = CheckAll(expected);
        if (!error.empty()) {
          if (!error_taken.test_and_set()) first_error = error;
          failed = true;
          return;
        }
        lookups += 2 * static_cast<long>(expected.size());
      }
    });
  }
  for (std::thread& t : pool) t.join();
  if (failed) {
    std::printf("failed %s\n", first_error.c_str());
    return 1;
  }
  std::printf("ok %ld\n", lookups.load());
  return 0;
}

int Fork(int argc, char** argv) {
  if (argc < 4) return Usage();
  const int children = std::atoi(argv[2]);
  std::vector<Expected> expected;
  if (children <= 0 || !ParseExpected(argc, argv, 3, &expected)) return Usage();
  if (const std::string error = CheckAll(expected); !error.empty()) {
    std::printf("parent before fork: %s\n", error.c_str());
    return 1;
  }
  // Threads keep the module busy (mutex taken, connections in use) while we fork.
  std::atomic<bool> stop{false};
  std::atomic<bool> thread_failed{false};
  std::vector<std::thread> busy;
  for (int t = 0; t < 3; ++t) {
    busy.emplace_back([&] {
      while (!stop) {
        if (!CheckAll(expected).empty()) thread_failed = true;
      }
    });
  }
  int bad_children = 0;
  for (int c = 0; c < children; ++c) {
    const pid_t pid = fork();
    if (pid < 0) {
      std::perror("fork");
      bad_children++;
      continue;
    }
    if (pid == 0) {
      alarm(20);  // a deadlocked child dies instead of hanging the test
      _exit(CheckAll(expected).empty() && CheckAll(expected).empty() ? 0 : 1);
    }
    int status = 0;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      std::printf("child %d failed: status %d\n", c, status);
      bad_children++;
    }
  }
  stop = true;
  for (std::thread& t : busy) t.join();
  if (const std::string error = CheckAll(expected); !error.empty()) {
    std::printf("parent after fork: %s\n", error.c_str());
    return 1;
  }
  if (bad_children != 0 || thread_failed) {
    std::printf("failed children=%d threads=%d\n", bad_children, thread_failed ? 1 : 0);
    return 1;
  }
  std::printf("ok\n");
  return 0;
}

void PrintAnswer(int err, const struct passwd* result) {
  if (err == 0 && result != nullptr) {
    std::printf("found %s %u %u %s\n", result->pw_name, result->pw_uid, result->pw_gid,
                result->pw_gecos);
  } else if (err == 0) {
    std::printf("notfound\n");
  } else {
    std::printf("error %s\n", strerrorname_np(err) != nullptr ? strerrorname_np(err) : "?");
  }
  std::fflush(stdout);
}

int Serve() {
  std::string line;
  std::vector<char> buf(4096);
  while (std::getline(std::cin, line)) {
    struct passwd pw {};
    struct passwd* result = nullptr;
    int err = 0;
    if (line.rfind("name ", 0) == 0) {
      err = getpwnam_r(line.c_str() + 5, &pw, buf.data(), buf.size(), &result);
    } else if (line.rfind("uid ", 0) == 0) {
      const uid_t uid = static_cast<uid_t>(std::strtoul(line.c_str() + 4, nullptr, 10));
      err = getpwuid_r(uid, &pw, buf.data(), buf.size(), &result);
    } else {
      std::printf("bad request\n");
      std::fflush(stdout);
      continue;
    }
    PrintAnswer(err, result);
  }
  return 0;
}

int Enumerate(int argc, char** argv) {
  bool tiny_first = false;
  std::string interleave;
  for (int i = 2; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--tiny-first") {
      tiny_first = true;
    } else if (arg == "--interleave" && i + 1 < argc) {
      interleave = argv[++i];
    } else {
      return Usage();
    }
  }
  std::vector<char> buf(4096);
  std::vector<char> other(4096);
  setpwent();
  for (int guard = 0; guard < 1000000; ++guard) {
    struct passwd pw {};
    struct passwd* result = nullptr;
    if (tiny_first) {
      char tiny[16];
      const int err = getpwent_r(&pw, tiny, sizeof tiny, &result);
      if (err == ENOENT) break;  // the end (it does not matter how big the buffer is)
      if (err != ERANGE) {
        std::printf("tiny buffer: expected ERANGE, got %d\n", err);
        return 1;
      }
    }
    const int err = getpwent_r(&pw, buf.data(), buf.size(), &result);
    if (err == ENOENT || result == nullptr) break;
    if (err != 0) {
      std::printf("getpwent_r failed: %d\n", err);
      return 1;
    }
    std::printf("%s\n", pw.pw_name);
    if (!interleave.empty()) {
      struct passwd opw {};
      struct passwd* oresult = nullptr;
      if (getpwnam_r(interleave.c_str(), &opw, other.data(), other.size(), &oresult) != 0 ||
          oresult == nullptr) {
        std::printf("interleaved getpwnam_r(%s) failed\n", interleave.c_str());
        return 1;
      }
    }
  }
  endpwent();
  return 0;
}

int Erange(int argc, char** argv) {
  if (argc != 3) return Usage();
  const char* name = argv[2];
  char tiny[16];
  struct passwd pw {};
  struct passwd* result = nullptr;
  int err = getpwnam_r(name, &pw, tiny, sizeof tiny, &result);
  if (err != ERANGE || result != nullptr) {
    std::printf("getpwnam_r with 16 bytes: expected ERANGE, got %d\n", err);
    return 1;
  }
  const struct passwd* full = getpwnam(name);
  if (full == nullptr) {
    std::printf("getpwnam after ERANGE failed\n");
    return 1;
  }
  const uid_t uid = full->pw_uid;
  err = getpwuid_r(uid, &pw, tiny, sizeof tiny, &result);
  if (err != ERANGE || result != nullptr) {
    std::printf("getpwuid_r with 16 bytes: expected ERANGE, got %d\n", err);
    return 1;
  }
  if (getpwuid(uid) == nullptr) {
    std::printf("getpwuid after ERANGE failed\n");
    return 1;
  }
  std::printf("ok\n");
  return 0;
}

// The open fds of this process above 2, except the one used to list them.
std::vector<int> OpenFds() {
  std::vector<int> fds;
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return fds;
  const int dir_fd = dirfd(dir);
  while (const struct dirent* e = readdir(dir)) {
    const int fd = std::atoi(e->d_name);
    if (e->d_name[0] != '.' && fd > 2 && fd != dir_fd) fds.push_back(fd);
  }
  closedir(dir);
  return fds;
}

int Fds(int argc, char** argv) {
  if (argc != 3) return Usage();
  close(0);
  const std::vector<int> before = OpenFds();  // inherited from whoever started us
  if (getpwnam(argv[2]) == nullptr) {
    std::printf("getpwnam(%s) failed\n", argv[2]);
    return 1;
  }
  std::string bad;
  if (fcntl(0, F_GETFD) != -1) bad += " fd 0 reused";
  int new_fds = 0;
  for (const int fd : OpenFds()) {
    if (std::find(before.begin(), before.end(), fd) != before.end()) continue;
    ++new_fds;
    const int flags = fcntl(fd, F_GETFD);
    if (flags == -1 || (flags & FD_CLOEXEC) == 0) {
      char target[256] = {};
      const std::string link = "/proc/self/fd/" + std::to_string(fd);
      if (readlink(link.c_str(), target, sizeof target - 1) < 0) target[0] = '?';
      bad += " fd " + std::to_string(fd) + " (" + target + ") not CLOEXEC";
    }
  }
  if (!bad.empty()) {
    std::printf("bad:%s\n", bad.c_str());
    return 1;
  }
  std::printf("ok %d\n", new_fds);
  return 0;
}

int Secure(int argc, char** argv) {
  if (argc != 3) return Usage();
  std::vector<char> buf(4096);
  struct passwd pw {};
  struct passwd* result = nullptr;
  const int err = getpwnam_r(argv[2], &pw, buf.data(), buf.size(), &result);
  // RTLD_NOLOAD: a handle only if the module is already in the process (glibc loaded it).
  void* module = dlopen("libnss_allgo.so.2", RTLD_LAZY | RTLD_NOLOAD);
  if (module != nullptr) dlclose(module);
  std::string lookup = result != nullptr ? "found" : "notfound";
  if (err != 0) {
    lookup = std::string("errno=") + (strerrorname_np(err) != nullptr ? strerrorname_np(err) : "?");
  }
  std::printf("at_secure=%lu ruid=%u euid=%u module=%s lookup=%s\n", getauxval(AT_SECURE),
              getuid(), geteuid(), module != nullptr ? "loaded" : "absent", lookup.c_str());
  return 0;
}

// Writes `text` with a single write(2): a marker an strace log can be cut at.
bool Mark(const std::string& text) {
  return write(1, text.data(), text.size()) == static_cast<ssize_t>(text.size());
}

int Hits(int argc, char** argv) {
  if (argc != 6) return Usage();
  const std::string name = argv[3];
  const uid_t uid = static_cast<uid_t>(std::strtoul(argv[4], nullptr, 10));
  const long count = std::atol(argv[5]);
  if (count <= 0) return Usage();
  if (__nss_configure_lookup("passwd", argv[2]) != 0) {
    std::printf("__nss_configure_lookup(passwd, %s) failed\n", argv[2]);
    return 1;
  }
  const std::vector<Expected> expected = {{name, uid}};
  if (const std::string error = CheckAll(expected); !error.empty()) {
    std::printf("warming: %s\n", error.c_str());
    return 1;
  }
  std::vector<char> buf(4096);
  if (!Mark("warm\n")) return 1;
  for (long i = 0; i < count; ++i) {
    struct passwd pw {};
    struct passwd* result = nullptr;
    if (getpwnam_r(name.c_str(), &pw, buf.data(), buf.size(), &result) != 0 || result == nullptr ||
        pw.pw_uid != uid || getpwuid_r(uid, &pw, buf.data(), buf.size(), &result) != 0 ||
        result == nullptr || name != pw.pw_name) {
      Mark("failed at " + std::to_string(i) + "\n");
      return 1;
    }
  }
  return Mark("done " + std::to_string(count) + "\n") ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return Usage();
  const std::string mode = argv[1];
  if (mode == "threads") return Threads(argc, argv);
  if (mode == "fork") return Fork(argc, argv);
  if (mode == "serve") return Serve();
  if (mode == "enum") return Enumerate(argc, argv);
  if (mode == "erange") return Erange(argc, argv);
  if (mode == "fds") return Fds(argc, argv);
  if (mode == "secure") return Secure(argc, argv);
  if (mode == "hits") return Hits(argc, argv);
  return Usage();
}
