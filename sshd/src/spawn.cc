#include "spawn.h"

#include <fcntl.h>
#include <grp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <algorithm>
#include <cstring>
#include <vector>

#include "child_process.h"
#include "privsep.h"

namespace allgo::sshd {
namespace {

constexpr int kPipeSize = 1 << 20;
constexpr const char* kDefaultPath = "/usr/local/bin:/usr/bin:/bin:/usr/games";

std::string Basename(const std::string& path) {
  auto slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// Writes a message to fd 2 of the session child and exits; used only after fork.
[[noreturn]] void ChildFail(const std::string& what) {
  std::string line = "allgo-sshd: " + what + "\n";
  ssize_t ignored = write(STDERR_FILENO, line.data(), line.size());
  (void)ignored;
  _exit(254);
}

std::vector<std::string> BuildEnv(const Account& a, const ConnectionInfo& c, const SpawnSettings& s,
                                  const SpawnRequest& r, const std::string& tty,
                                  const std::string* original_command) {
  std::vector<std::string> env;
  std::string term;
  for (const auto& [name, value] : r.env) {
    if (name == "TERM") {
      term = value;
    } else {
      env.push_back(name + "=" + value);
    }
  }
  if (r.has_pty && !r.pty.term.empty()) term = r.pty.term;
  env.push_back("USER=" + a.name);
  env.push_back("LOGNAME=" + a.name);
  env.push_back("HOME=" + a.home);
  env.push_back("SHELL=" + a.shell);
  env.push_back(std::string("PATH=") + kDefaultPath);
  env.push_back("SSH_CLIENT=" + c.client_ip + " " + std::to_string(c.client_port) + " " +
                std::to_string(c.server_port));
  env.push_back("SSH_CONNECTION=" + c.client_ip + " " + std::to_string(c.client_port) + " " +
                c.server_ip + " " + std::to_string(c.server_port));
  if (!tty.empty()) env.push_back("SSH_TTY=" + tty);
  if (!term.empty()) env.push_back("TERM=" + term);
  env.push_back("ALLGO_SSH_CONFIG=" + s.config_path);
  env.push_back("ALLGO_USER=" + a.allgo_account);
  // The webapp's name from its row: allgo-shell cannot resolve its own uid when NSS cannot
  // read the database (a root-only [mysql] password_file), yet still names the sandbox in its
  // "not running" line. Clients cannot set ALLGO_* (IsAcceptedEnvName).
  env.push_back(std::string(kWebappNameVariable) + "=" + a.name);
  if (original_command != nullptr) env.push_back("SSH_ORIGINAL_COMMAND=" + *original_command);
  return env;
}

Status MakePipe(UniqueFd* read_end, UniqueFd* write_end) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) return Status::FromErrno("pipe2", errno);
  read_end->reset(p[0]);
  write_end->reset(p[1]);
  // Bulk transfers move fewer, larger chunks through a bigger pipe (pages are only used
  // while data is queued, so idle sessions pay nothing). Best effort.
  fcntl(p[0], F_SETPIPE_SZ, kPipeSize);
  return Status::Ok();
}

// In the child: become the webapp and exec. Never returns.
[[noreturn]] void ExecAsUser(const Account& a, const std::vector<std::string>& argv,
                             const std::vector<std::string>& env) {
  ResetSignalsInChild();

  // Only the [nss] gid: never getgrouplist(name). A webapp's name is chosen by whoever
  // creates it, so a member line in /etc/group or LDAP that equals it (a stale account in
  // `docker`, say) must not hand that group to the session (DESIGN.md: a webapp is only ever
  // its own uid).
  Status st = DropPrivileges(a.uid, a.gid, {a.gid});
  if (!st.ok()) ChildFail("cannot switch to user " + a.name + ": " + st.ToString());
  if (chdir(a.home.c_str()) != 0 && chdir("/") != 0) ChildFail("cannot chdir to " + a.home);
  // Nothing of the monitor (database socket, other sessions) may leak into the session.
  close_range(3, ~0U, 0);

  std::vector<char*> cargv;
  for (const auto& s : argv) cargv.push_back(const_cast<char*>(s.c_str()));
  cargv.push_back(nullptr);
  std::vector<char*> cenv;
  for (const auto& s : env) cenv.push_back(const_cast<char*>(s.c_str()));
  cenv.push_back(nullptr);
  execve(a.shell.c_str(), cargv.data(), cenv.data());
  ChildFail("cannot run login shell " + a.shell + ": " + std::strerror(errno));
}

}  // namespace

Status SpawnSession(const Account& account, const ConnectionInfo& conn, const SpawnSettings& settings,
                    const SpawnRequest& request, SpawnedSession* out) {
  std::string shell_base = Basename(account.shell);
  std::vector<std::string> argv;
  std::string requested;  // what the session would run without a forced command
  switch (request.kind) {
    case SessionKind::kShell:
      argv = {"-" + shell_base};
      break;
    case SessionKind::kExec:
      requested = request.command;
      break;
    case SessionKind::kSubsystem:
      if (request.command != "sftp") return Status::NotFound("unknown subsystem '" + request.command + "'");
      requested = settings.sftp_server;
      break;
  }
  const std::string* original_command = nullptr;
  if (settings.has_forced_command) {
    argv = {shell_base, "-c", settings.forced_command};
    if (request.kind != SessionKind::kShell) original_command = &requested;
  } else if (request.kind != SessionKind::kShell) {
    argv = {shell_base, "-c", requested};
  }

  if (request.has_pty) {
    UniqueFd master(posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC));
    if (!master) return Status::FromErrno("posix_openpt", errno);
    if (grantpt(master.get()) != 0 || unlockpt(master.get()) != 0) {
      return Status::FromErrno("grantpt/unlockpt", errno);
    }
    char name[128];
    if (ptsname_r(master.get(), name, sizeof(name)) != 0) return Status::FromErrno("ptsname", errno);
    std::string tty = name;
    UniqueFd slave(open(name, O_RDWR | O_NOCTTY | O_CLOEXEC));
    if (!slave) return Status::FromErrno("open " + tty, errno);
    // Like OpenSSH: the terminal belongs to the user, group tty, mode 0620.
    gid_t tty_gid = account.gid;
    if (struct group* g = getgrnam("tty")) tty_gid = g->gr_gid;
    if (fchown(slave.get(), account.uid, tty_gid) != 0 || fchmod(slave.get(), 0620) != 0) {
      return Status::FromErrno("chown " + tty, errno);
    }
    winsize ws{};
    ws.ws_col = static_cast<unsigned short>(std::min<uint32_t>(request.pty.cols, 10000));
    ws.ws_row = static_cast<unsigned short>(std::min<uint32_t>(request.pty.rows, 10000));
    ws.ws_xpixel = static_cast<unsigned short>(std::min<uint32_t>(request.pty.width_px, 65535));
    ws.ws_ypixel = static_cast<unsigned short>(std::min<uint32_t>(request.pty.height_px, 65535));
    ioctl(master.get(), TIOCSWINSZ, &ws);
    std::vector<std::string> env = BuildEnv(account, conn, settings, request, tty, original_command);

    pid_t pid = fork();
    if (pid < 0) return Status::FromErrno("fork", errno);
    if (pid == 0) {
      setsid();
      if (ioctl(slave.get(), TIOCSCTTY, 0) != 0) ChildFail("TIOCSCTTY failed");
      if (dup2(slave.get(), 0) < 0 || dup2(slave.get(), 1) < 0 || dup2(slave.get(), 2) < 0) _exit(254);
      ExecAsUser(account, argv, env);
    }
    out->pid = pid;
    out->pty = true;
    out->master = std::move(master);
    return Status::Ok();
  }

  UniqueFd in_r, in_w, out_r, out_w, err_r, err_w;
  Status st = MakePipe(&in_r, &in_w);
  if (st.ok()) st = MakePipe(&out_r, &out_w);
  if (st.ok()) st = MakePipe(&err_r, &err_w);
  if (!st.ok()) return st;
  std::vector<std::string> env = BuildEnv(account, conn, settings, request, "", original_command);
  pid_t pid = fork();
  if (pid < 0) return Status::FromErrno("fork", errno);
  if (pid == 0) {
    setsid();
    if (dup2(in_r.get(), 0) < 0 || dup2(out_w.get(), 1) < 0 || dup2(err_w.get(), 2) < 0) _exit(254);
    ExecAsUser(account, argv, env);
  }
  out->pid = pid;
  out->pty = false;
  out->in = std::move(in_w);
  out->out = std::move(out_r);
  out->err = std::move(err_r);
  return Status::Ok();
}

Status SpawnCarrier(const Account& account, const ConnectionInfo& conn, const SpawnSettings& settings, pid_t* pid,
                    UniqueFd* sock) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) return Status::FromErrno("socketpair", errno);
  UniqueFd ours(sv[0]), theirs(sv[1]);
  UniqueFd null(open("/dev/null", O_RDWR | O_CLOEXEC));
  if (!null) return Status::FromErrno("open /dev/null", errno);
  SpawnRequest as_exec;  // a session without a PTY: no client variables, no forced command
  as_exec.kind = SessionKind::kExec;
  std::vector<std::string> env = BuildEnv(account, conn, settings, as_exec, "", nullptr);
  std::vector<std::string> argv = {Basename(account.shell), "--streams"};
  pid_t child = fork();
  if (child < 0) return Status::FromErrno("fork", errno);
  if (child == 0) {
    setsid();
    // stderr is /dev/null, not the server's log: the webapp could take over a process of
    // its own uid and write there; the carrier's one record says what went wrong.
    if (dup2(null.get(), 0) < 0 || dup2(theirs.get(), 1) < 0 || dup2(null.get(), 2) < 0) _exit(254);
    ExecAsUser(account, argv, env);
  }
  *pid = child;
  *sock = std::move(ours);
  return Status::Ok();
}

}  // namespace allgo::sshd
