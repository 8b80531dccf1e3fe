#include "key_source.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <sstream>

#include <spdlog/spdlog.h>

#include "allgo/allowed_keys.h"
#include "allgo/directory.h"
#include "allgo/identity.h"
#include "allgo/key_options.h"
#include "allgo/names.h"
#include "allgo/pubkey.h"
#include "allgo/unique_fd.h"
#include "child_process.h"
#include "privsep.h"

namespace allgo::sshd {
namespace {

class InProcessKeySource : public KeySource {
 public:
  explicit InProcessKeySource(WebappDirectory* directory) : directory_(directory) {}

  Status Allowed(const Webapp& webapp, std::vector<AllowedEntry>* out) override {
    AllowedKeys keys;
    Status st = LookupAllowedKeys(*directory_, webapp, &keys);
    if (!st.ok()) return st;
    for (const auto& message : keys.dropped) {
      spdlog::warn("user {}: ignoring a stored key: {}", webapp.docker_name, SanitizeForLog(message, 300));
    }
    for (const auto& k : keys.keys) out->push_back({k.key.base64, k.email, ""});
    return out->empty() ? Status::NotFound("no usable key") : Status::Ok();
  }

 private:
  WebappDirectory* directory_;
};

class CommandKeySource : public KeySource {
 public:
  CommandKeySource(const Config& config, uid_t uid, gid_t gid)
      : config_(&config),
        command_(config.sshd.authorized_keys_command),
        timeout_seconds_(std::max(1u, std::min(config.sshd.login_grace_time, 30u))),
        uid_(uid),
        gid_(gid) {}

  Status Allowed(const Webapp& webapp, std::vector<AllowedEntry>* out) override {
    std::string output;
    Status st = RunHelper(ExpandCommand(command_, webapp.docker_name, AccountOf(*config_, webapp).uid), &output);
    if (!st.ok()) return st;
    std::istringstream lines(output);
    std::string line;
    while (std::getline(lines, line)) {
      if (line.empty() || line[0] == '#') continue;
      PublicKey key;
      if (!ParsePublicKeyLine(line, &key).ok()) continue;
      // Like OpenSSH, a key whose options cannot be honoured is skipped (never used
      // without them).
      KeyOptions options;
      Status parsed = ParseKeyOptions(key.options, &options);
      if (!parsed.ok()) {
        spdlog::warn("user {}: authorized_keys_command: key {} skipped, its options cannot be honoured: {}",
                     webapp.docker_name, key.fingerprint, SanitizeForLog(parsed.message(), 300));
        continue;
      }
      // The helper's output names no allgo account (its comment is whatever the user
      // pasted): ALLGO_USER stays empty with this source.
      out->push_back({key.base64, "", key.options});
    }
    return out->empty() ? Status::NotFound("no usable key") : Status::Ok();
  }

 private:
  Status RunHelper(const std::vector<std::string>& argv, std::string* output) {
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) return Status::FromErrno("pipe2", errno);
    UniqueFd read_end(p[0]), write_end(p[1]);
    pid_t pid = fork();
    if (pid < 0) return Status::FromErrno("fork", errno);
    if (pid == 0) {
      ResetSignalsInChild();
      int devnull = open("/dev/null", O_RDWR);
      if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(write_end.get(), 1) < 0) _exit(127);
      // allgo-sshd's lookup child already runs as lookup_user (it cannot drop again); a root
      // caller drops here. Never run the helper as root.
      if (geteuid() != uid_ && !DropPrivileges(uid_, gid_, {gid_}).ok()) _exit(127);
      if (geteuid() == 0) _exit(127);
      close_range(3, ~0U, 0);
      std::vector<char*> cargv;
      for (const auto& s : argv) cargv.push_back(const_cast<char*>(s.c_str()));
      cargv.push_back(nullptr);
      char path_env[] = "PATH=/usr/bin:/bin:/usr/sbin:/sbin";
      char* envp[] = {path_env, nullptr};
      execve(cargv[0], cargv.data(), envp);
      _exit(127);
    }
    write_end.reset();
    int status = 0;
    Status st = CollectChildOutput(pid, read_end.get(), 1u << 20, timeout_seconds_ * 1000LL,
                                   "authorized_keys_command " + command_, output, &status);
    if (!st.ok()) return st;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      // Like sshd: a failed helper's output is discarded.
      return Status::Unavailable("authorized_keys_command failed (status " + std::to_string(status) + ")");
    }
    return Status::Ok();
  }

  const Config* config_;
  std::string command_;
  unsigned timeout_seconds_;
  uid_t uid_;
  gid_t gid_;
};

}  // namespace

std::vector<std::string> ExpandCommand(const std::string& command, const std::string& user, uid_t uid) {
  std::vector<std::string> argv;
  std::istringstream words(command);
  std::string word;
  while (words >> word) {
    std::string expanded;
    for (size_t i = 0; i < word.size(); ++i) {
      if (word[i] == '%' && i + 1 < word.size()) {
        if (word[i + 1] == 'u') {
          expanded += user;
          ++i;
          continue;
        }
        if (word[i + 1] == 'U') {
          expanded += std::to_string(uid);
          ++i;
          continue;
        }
        if (word[i + 1] == '%') {
          expanded += '%';
          ++i;
          continue;
        }
      }
      expanded += word[i];
    }
    argv.push_back(expanded);
  }
  return argv;
}

std::unique_ptr<KeySource> MakeKeySource(const Config& config, WebappDirectory* directory, uid_t run_uid,
                                         gid_t run_gid) {
  if (config.sshd.authorized_keys_command.empty()) return std::make_unique<InProcessKeySource>(directory);
  return std::make_unique<CommandKeySource>(config, run_uid, run_gid);
}

}  // namespace allgo::sshd
