#include "module.h"

#include <grp.h>
#include <pthread.h>
#include <sys/stat.h>

#include <chrono>
#include <utility>

#include "allgo/identity.h"
#include "allgo/names.h"
#include "call_guard.h"
#include "pack.h"

namespace allgo::nss {
namespace {

using Connections = std::vector<std::unique_ptr<MysqlConnection>>;

Module* instance = nullptr;

void ForkPrepare() { instance->LockForFork(); }
void ForkParent() { instance->UnlockAfterFork(); }
void ForkChild() { instance->UnlockInForkedChild(); }

int64_t Nanoseconds(const struct timespec& ts) {
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

// Lookups from inside the module: the nested glibc call into our own module returns at once
// (CallGuard), so only the other services answer.
const OtherAccountSources& OtherSources() {
  static const OtherAccountSources sources(OtherAccountSources::Caller::kInsideNssModule);
  return sources;
}

bool OtherServiceHasGid(gid_t gid) {
  // The other services may talk to a server of theirs (LDAP, sssd): as before the hit-path
  // work, their socket writes cannot kill the host program from inside our call either.
  const SigpipeGuard no_sigpipe;
  return OtherSources().HasGroup(gid);
}

}  // namespace

Result PackInto(const PasswdRecord& record, const PasswdBuffer& out) {
  return PackPasswd(record, out.pwd, out.buf, out.buflen) == PackResult::kOk ? Result::Found()
                                                                               : Result::Range();
}

Module& Module::Get() {
  // Never destroyed: a thread may still be inside the module while the process exits.
  static Module* const module = [] {
    auto* created = new Module();
    instance = created;
    pthread_atfork(ForkPrepare, ForkParent, ForkChild);
    return created;
  }();
  return *module;
}

void Module::LockForFork() { mu_.lock(); }
void Module::UnlockAfterFork() { mu_.unlock(); }
void Module::UnlockInForkedChild() {
  ++fork_generation_;  // the parent's pooled connections are no longer this process's
  mu_.unlock();
}

Result Module::FromStatus(const Status& status) {
  if (status.ok()) return Result::Found();
  if (status.IsNotFound()) return Result::NotFound();
  if (status.IsUnavailable()) return Result::DatabaseDown();
  // A rejected statement (bad [queries] override), a broken row shape, a local I/O error:
  // the service cannot answer, and retrying will not help.
  return {NSS_STATUS_UNAVAIL, EIO};
}

Result Module::CurrentConfig(Snapshot* out) {
  {
    const std::lock_guard<std::mutex> lock(mu_);
    if (config_ != nullptr && CoarseClock::now() < config_fresh_until_) {
      *out = Snapshot{config_, generation_};
      return Result::Found();
    }
  }
  return CheckConfigFile(out);
}

Result Module::CheckConfigFile(Snapshot* out) {
  // Read before the stat: the check is trusted for kConfigRecheck from no later than it ran.
  const CoarseClock::time_point checked = CoarseClock::now();
  // The path is read here, with the file: a changed $ALLGO_SSH_CONFIG counts as a changed file.
  const std::string path = ResolveConfigPath("");
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) {
    const std::lock_guard<std::mutex> lock(mu_);
    config_.reset();
    return Result::NoConfig();
  }
  const FileStamp stamp{st.st_dev, st.st_ino, st.st_size, Nanoseconds(st.st_mtim),
                        Nanoseconds(st.st_ctim)};
  {
    const std::lock_guard<std::mutex> lock(mu_);
    if (config_ != nullptr && stamp == config_stamp_ && path == config_path_) {
      config_fresh_until_ = checked + kConfigRecheck;
      *out = Snapshot{config_, generation_};
      return Result::Found();
    }
  }

  // Read and parse without the lock: other threads keep using the old config meanwhile.
  auto loaded = std::make_shared<Config>();
  const Status status = LoadConfig(path, loaded.get());
  const SigpipeGuard no_sigpipe;  // closing the old config's connections writes to them
  Connections drop;
  {
    const std::lock_guard<std::mutex> lock(mu_);
    if (!status.ok()) {
      config_.reset();
      return Result::NoConfig();
    }
    config_ = std::move(loaded);
    config_path_ = path;
    config_stamp_ = stamp;
    config_fresh_until_ = checked + kConfigRecheck;
    ++generation_;
    cache_.Clear();
    cache_.SetTtl(std::chrono::seconds(config_->nss.cache_ttl));
    pool_.Clear(&drop);
    // A running enumeration keeps its snapshot: restarting it here could repeat entries.
    *out = Snapshot{config_, generation_};
  }
  return Result::Found();  // `drop` closes the old connections here, outside the lock
}

Status Module::WithDirectory(const Snapshot& snapshot,
                             const std::function<Status(WebappDirectory&)>& query) {
  const SigpipeGuard no_sigpipe;  // connecting, querying and closing write to the database
  Connections drop;
  std::unique_ptr<MysqlConnection> connection;
  uint64_t fork_generation = 0;
  {
    const std::lock_guard<std::mutex> lock(mu_);
    fork_generation = fork_generation_;
    connection = pool_.TakeIdle(snapshot.generation, fork_generation, &drop);
  }
  drop.clear();
  if (connection == nullptr) connection = std::make_unique<MysqlConnection>(snapshot.config->mysql);

  WebappDirectory directory(*snapshot.config, connection.get(),
                            OtherAccountSources::Caller::kInsideNssModule);
  const Status status = query(directory);

  // A connection that just failed is not trusted again; a healthy one goes back to the pool
  // if the config did not change meanwhile.
  const bool healthy = status.ok() || status.IsNotFound();
  {
    const std::lock_guard<std::mutex> lock(mu_);
    if (healthy && snapshot.generation == generation_) {
      pool_.Release(std::move(connection), snapshot.generation, fork_generation, &drop);
    }
  }
  return status;  // `connection` (if not pooled) and `drop` are closed outside the lock
}

PasswdRecord Module::ToRecord(const Config& config, const Webapp& webapp) {
  const WebappAccount account = AccountOf(config, webapp);
  PasswdRecord record;
  record.name = account.name;
  record.passwd = "*";
  record.uid = account.uid;
  record.gid = account.gid;
  record.gecos = SanitizeGecos(webapp.display_name);
  record.dir = account.home;
  record.shell = account.shell;
  return record;
}

Result Module::LoadWebapp(const Snapshot& snapshot,
                          const std::function<Status(WebappDirectory&, Webapp*)>& find,
                          const PasswdBuffer& out) {
  PasswdRecord record;
  const Status status = WithDirectory(snapshot, [&](WebappDirectory& directory) {
    Webapp webapp;
    Status found = find(directory, &webapp);
    if (found.ok()) record = ToRecord(*snapshot.config, webapp);
    return found;
  });
  if (!status.ok()) return FromStatus(status);
  {
    const std::lock_guard<std::mutex> lock(mu_);
    // Stamped with the precise time (hits compare with the coarse one, never ahead of it): an
    // entry is never dropped before cache_ttl has passed.
    if (snapshot.generation == generation_) cache_.Insert(record, CoarseClock::precise());
  }
  return PackInto(record, out);
}

template <typename Find>
std::optional<Result> Module::FromCache(const Find& find, const PasswdBuffer& out) {
  const CoarseClock::time_point now = CoarseClock::now();
  const std::lock_guard<std::mutex> lock(mu_);
  if (config_ == nullptr || now >= config_fresh_until_) return std::nullopt;
  const PasswdRecord* record = find(cache_, now);
  if (record == nullptr) return std::nullopt;
  return PackInto(*record, out);  // under the lock: the record is the cache's own, not a copy
}

Result Module::PasswdByName(const char* name, const PasswdBuffer& out) {
  // Names that can never be webapps are answered before any file or database is touched.
  if (name == nullptr || !IsValidUserName(name)) return Result::NotFound();
  const auto cached = [name](const PasswdCache& cache, CoarseClock::time_point now) {
    return cache.FindByName(name, now);
  };
  if (const std::optional<Result> hit = FromCache(cached, out)) return *hit;
  Snapshot snapshot;
  if (const Result r = CurrentConfig(&snapshot); !r.found()) return r;
  // The config was just re-checked (or changed, which emptied the cache): ask again.
  if (const std::optional<Result> hit = FromCache(cached, out)) return *hit;
  return LoadWebapp(
      snapshot,
      [name](WebappDirectory& directory, Webapp* webapp) {
        return directory.FindByName(name, webapp);
      },
      out);
}

Result Module::PasswdByUid(uid_t uid, const PasswdBuffer& out) {
  // Only webapp uids are ever cached (and the cache is emptied when the range changes).
  const auto cached = [uid](const PasswdCache& cache, CoarseClock::time_point now) {
    return cache.FindByUid(uid, now);
  };
  if (const std::optional<Result> hit = FromCache(cached, out)) return *hit;
  Snapshot snapshot;
  if (const Result r = CurrentConfig(&snapshot); !r.found()) return r;
  const NssConfig& nss = snapshot.config->nss;
  if (!IsWebappUid(nss, uid)) return Result::NotFound();
  if (const std::optional<Result> hit = FromCache(cached, out)) return *hit;
  return LoadWebapp(
      snapshot,
      [uid](WebappDirectory& directory, Webapp* webapp) {
        return directory.FindByUid(uid, webapp);
      },
      out);
}

void Module::RestartPasswdEnumeration() {
  const std::lock_guard<std::mutex> lock(mu_);
  ++pw_enum_.epoch;
  pw_enum_.loaded = false;
  pw_enum_.entries.clear();
  pw_enum_.next = 0;
}

void Module::EndPasswdEnumeration() { RestartPasswdEnumeration(); }

Result Module::PeekPasswd(PasswdRecord* out, Position* at) {
  {
    const std::lock_guard<std::mutex> lock(mu_);
    if (pw_enum_.loaded) {
      if (pw_enum_.next >= pw_enum_.entries.size()) return Result::NotFound();
      *out = pw_enum_.entries[pw_enum_.next];
      *at = Position{pw_enum_.epoch, pw_enum_.next};
      return Result::Found();
    }
  }

  Snapshot snapshot;
  if (const Result r = CurrentConfig(&snapshot); !r.found()) return r;
  std::vector<PasswdRecord> entries;
  const Status status = WithDirectory(snapshot, [&](WebappDirectory& directory) {
    std::vector<Webapp> webapps;
    Status listed = directory.List(&webapps);
    if (!listed.ok()) return listed;
    entries.reserve(webapps.size());
    for (const Webapp& webapp : webapps) {
      entries.push_back(ToRecord(*snapshot.config, webapp));
    }
    return Status::Ok();
  });
  if (!status.ok()) return FromStatus(status);

  const std::lock_guard<std::mutex> lock(mu_);
  if (!pw_enum_.loaded) {  // another thread may have loaded it meanwhile: keep its cursor
    pw_enum_.entries = std::move(entries);
    pw_enum_.next = 0;
    pw_enum_.loaded = true;
  }
  if (pw_enum_.next >= pw_enum_.entries.size()) return Result::NotFound();
  *out = pw_enum_.entries[pw_enum_.next];
  *at = Position{pw_enum_.epoch, pw_enum_.next};
  return Result::Found();
}

void Module::AdvancePasswd(const Position& at) {
  const std::lock_guard<std::mutex> lock(mu_);
  if (pw_enum_.loaded && pw_enum_.epoch == at.epoch && pw_enum_.next == at.index) {
    ++pw_enum_.next;
  }
}

GroupRecord Module::TheGroup(const Config& config) {
  GroupRecord record;
  record.name = config.nss.group_name;
  record.passwd = "*";
  record.gid = config.nss.gid;
  return record;
}

Result Module::GroupByGid(gid_t gid, GroupRecord* out) {
  Snapshot snapshot;
  if (const Result r = CurrentConfig(&snapshot); !r.found()) return r;
  if (gid != snapshot.config->nss.gid || OtherServiceHasGid(gid)) return Result::NotFound();
  *out = TheGroup(*snapshot.config);
  return Result::Found();
}

Result Module::GroupByName(const char* name, GroupRecord* out) {
  if (name == nullptr) return Result::NotFound();
  Snapshot snapshot;
  if (const Result r = CurrentConfig(&snapshot); !r.found()) return r;
  const NssConfig& nss = snapshot.config->nss;
  if (nss.group_name != name || OtherServiceHasGid(nss.gid)) return Result::NotFound();
  *out = TheGroup(*snapshot.config);
  return Result::Found();
}

void Module::RestartGroupEnumeration() {
  const std::lock_guard<std::mutex> lock(mu_);
  ++gr_enum_.epoch;
  gr_enum_.done = false;
}

Result Module::PeekGroup(GroupRecord* out, Position* at) {
  {
    const std::lock_guard<std::mutex> lock(mu_);
    if (gr_enum_.done) return Result::NotFound();
    *at = Position{gr_enum_.epoch, 0};
  }
  Snapshot snapshot;
  if (const Result r = CurrentConfig(&snapshot); !r.found()) return r;
  if (OtherServiceHasGid(snapshot.config->nss.gid)) return Result::NotFound();
  *out = TheGroup(*snapshot.config);
  return Result::Found();
}

void Module::AdvanceGroup(const Position& at) {
  const std::lock_guard<std::mutex> lock(mu_);
  if (gr_enum_.epoch == at.epoch) gr_enum_.done = true;
}

}  // namespace allgo::nss
