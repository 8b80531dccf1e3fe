// conf/nginx/docker-api-allowlist.conf, the shipped file itself, in front of a real private
// dockerd (tests/support/test_docker.h): the gateway's calls pass through it (EngineClient over
// TLS with a client certificate, the hijacked exec stream included) and everything else is
// refused (curl, and the docker CLI's `docker run`), as is a client without a certificate of
// the node's CA.
//
// nginx runs as our own child: its own prefix, pid file, error log and temp folders in a temp
// folder, `daemon off`, listening only on 127.0.0.1:PORT, stopped by its pid (NginxFront's
// destructor, and SIGTERM to the master when this process dies). The shipped file is included
// with only its paths and its listen address replaced (Render fails if any of them moved), so
// the test exercises the shipped rules, not a copy of them.
#include <grp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "allgo/engine_client.h"
#include "allgo/stdcopy.h"
#include "exec_test_helpers.h"
#include "test_docker.h"
#include "test_support.h"

namespace allgo::engine {
namespace {

using namespace std::chrono_literals;
using test::TestDocker;

constexpr const char* kRefused = "refused by the node's nginx allow-list";
constexpr const char* kNoCertificate = "a client certificate signed by its CA";
constexpr const char* kNotAGateway = "is not an allgo-sandbox-gateway certificate";

std::string NginxBinary() {
  for (const char* p : {"/usr/sbin/nginx", "/usr/bin/nginx"}) {
    if (access(p, X_OK) == 0) return p;
  }
  return "";
}

// Replaces `from` (which must occur exactly once) by `to`; false when it does not.
bool ReplaceOnce(std::string* text, const std::string& from, const std::string& to) {
  size_t at = text->find(from);
  if (at == std::string::npos || text->find(from, at + 1) != std::string::npos) return false;
  text->replace(at, from.size(), to);
  return true;
}

// The shipped file with its operator settings (the lines marked CHANGE) pointed at the test's
// files and port; "" and *why when one of them is not where this test expects it.
std::string Render(const std::string& shipped, int port, const test::TestCertificates& certs,
                   const std::string& socket, std::string* why) {
  std::string text = shipped;
  const std::vector<std::pair<std::string, std::string>> replacements = {
      {"listen 2376 ssl;", "listen 127.0.0.1:" + std::to_string(port) + " ssl;"},
      {"/etc/nginx/allgo-docker/node.pem;", certs.server_cert + ";"},
      {"/etc/nginx/allgo-docker/node-key.pem;", certs.server_key + ";"},
      {"/etc/nginx/allgo-docker/client-ca.pem;", certs.ca + ";"},
      {"server unix:/var/run/docker.sock;", "server unix:" + socket + ";"},
  };
  for (const auto& [from, to] : replacements) {
    if (!ReplaceOnce(&text, from, to)) {
      *why = "the shipped file does not hold `" + from + "` exactly once; update the test with it";
      return "";
    }
  }
  // Loopback only: the one listen directive is ours.
  size_t listens = 0;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    size_t start = line.find_first_not_of(" \t");
    if (start != std::string::npos && line.compare(start, 7, "listen ") == 0) ++listens;
  }
  if (listens != 1) {
    *why = "the shipped file has more than one listen directive";
    return "";
  }
  return text;
}

// nginx in front of `socket`, on 127.0.0.1:port, with the shipped allow-list. Stopped (by its
// pid) by the destructor.
class NginxFront {
 public:
  // "" once it accepts connections, else why not.
  std::string Start(const std::string& dir, const test::TestCertificates& certs, const std::string& socket) {
    dir_ = dir;
    port_ = test::FreeLoopbackPort();
    std::string why;
    std::string shipped = test::ReadFile(test::SourceDir() + "/conf/nginx/docker-api-allowlist.conf");
    std::string rendered = Render(shipped, port_, certs, socket, &why);
    if (rendered.empty()) return why;
    // Workers as nobody in the socket's group: what docs/gateway.md tells operators to do
    // (the worker user in the docker group), not root.
    struct stat st {};
    if (stat(socket.c_str(), &st) != 0) return "no engine socket " + socket;
    group* g = getgrgid(st.st_gid);
    if (!g) return "the engine socket's group has no name";
    std::ofstream(dir + "/docker-api-allowlist.conf") << rendered;
    std::ofstream(dir + "/nginx.conf")
        << "daemon off;\n"
        << "worker_processes 1;\n"
        << "user nobody " << g->gr_name << ";\n"
        << "pid " << dir << "/nginx.pid;\n"
        << "error_log " << dir << "/error.log info;\n"
        << "events { worker_connections 64; }\n"
        << "http {\n"
        << "  access_log " << dir << "/access.log;\n"
        << "  client_body_temp_path " << dir << "/body;\n"
        << "  proxy_temp_path " << dir << "/proxy;\n"
        << "  fastcgi_temp_path " << dir << "/fastcgi;\n"
        << "  uwsgi_temp_path " << dir << "/uwsgi;\n"
        << "  scgi_temp_path " << dir << "/scgi;\n"
        << "  include " << dir << "/docker-api-allowlist.conf;\n"
        << "}\n";
    std::vector<std::string> argv = {NginxBinary(), "-p", dir + "/", "-e", dir + "/error.log", "-c", dir + "/nginx.conf"};
    test::RunResult check = test::Run({argv[0], "-t", "-p", dir + "/", "-e", dir + "/error.log", "-c", dir + "/nginx.conf"});
    if (check.exit_code != 0) return "nginx -t refuses the shipped file: " + check.err;
    // SIGTERM, not SIGKILL, when we die: the master then stops its worker.
    nginx_ = std::make_unique<test::Daemon>(argv, dir + "/nginx.out", std::map<std::string, std::string>{}, SIGTERM);
    if (!test::WaitForTcpPort(port_, 10000) || !nginx_->Running()) {
      return "nginx did not start: " + test::ReadFile(dir + "/error.log") + nginx_->Log();
    }
    return "";
  }
  ~NginxFront() {
    if (nginx_) nginx_->Stop(SIGTERM, 10000);
  }
  int port() const { return port_; }
  pid_t pid() const { return nginx_ ? nginx_->pid() : -1; }
  std::string ErrorLog() const { return test::ReadFile(dir_ + "/error.log"); }

 private:
  std::string dir_;
  int port_ = 0;
  std::unique_ptr<test::Daemon> nginx_;
};

struct HttpAnswer {
  int status = 0;  // 0: no HTTP answer (curl failed)
  std::string body;
  std::string error;  // curl's stderr
};

class NginxAllowlistTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::string why;
    docker_ = TestDocker::Get(&why);
    if (!docker_) {
      skip_ = "Docker cannot run here: " + why;
      return;
    }
    if (NginxBinary().empty()) {
      skip_ = "nginx is not installed (Debian package nginx; scripts/install-deps)";
      return;
    }
    image_ = docker_->BusyboxImage(&why);
    if (image_.empty()) {
      skip_ = "no busybox image: " + why;
      return;
    }
    dir_ = new test::TempDir("allgo-nginx");
    chmod(dir_->path().c_str(), 0755);  // nginx's workers (nobody) use the temp folders inside
    std::string error = test::MakeTestCertificates(dir_->path(), "node", &certs_);
    if (error.empty()) error = test::MakeTestCertificates(dir_->path(), "other", &other_);
    if (error.empty()) error = StartContainers();
    if (!error.empty()) {
      skip_ = error;
      return;
    }
    nginx_ = new NginxFront();
    error = nginx_->Start(dir_->path(), certs_, docker_->socket());
    // Installed but not starting with the shipped file is a failure, not a skip.
    if (!error.empty()) failure_ = error;
  }
  static void TearDownTestSuite() {
    delete nginx_;  // stops nginx
    nginx_ = nullptr;
    if (docker_) {
      for (const char* name : {kInside, kOutside}) docker_->Docker({"rm", "-f", name});
    }
    delete dir_;
    dir_ = nullptr;
  }
  void SetUp() override {
    if (!skip_.empty()) GTEST_SKIP() << skip_;
    ASSERT_EQ(failure_, "");
  }

  // kInside: a sandbox whose name the pattern allows. kOutside: one it does not (a name that is
  // not docker_name's), with an id that starts with a letter, so that its id prefix would pass
  // the name rule [a-z_]... if the pattern did not refuse all-hex names.
  static constexpr const char* kInside = "nginx-web";
  static constexpr const char* kOutside = "Outside.Web";
  static std::string StartContainers() {
    for (const char* name : {kInside, kOutside}) docker_->Docker({"rm", "-f", name});
    test::RunResult r = docker_->Docker({"run", "-d", "--network", "none", "--name", kInside, image_, "sleep", "100000"});
    if (r.exit_code != 0) return "docker run " + std::string(kInside) + ": " + r.err;
    for (int attempt = 0; attempt < 40; ++attempt) {
      r = docker_->Docker({"run", "-d", "--network", "none", "--name", kOutside, image_, "sleep", "100000"});
      if (r.exit_code != 0) return "docker run " + std::string(kOutside) + ": " + r.err;
      outside_id_ = TrimNewlines(r.out);
      if (outside_id_[0] >= 'a' && outside_id_[0] <= 'f') return "";
      docker_->Docker({"rm", "-f", kOutside});
    }
    return "no container id starting with a letter in 40 tries";
  }

  static std::string Url() { return "https://127.0.0.1:" + std::to_string(nginx_->port()); }
  static NodeOptions Options() {
    return {.url = "tcp://127.0.0.1:" + std::to_string(nginx_->port()), .tls_ca = certs_.ca,
            .tls_cert = certs_.client_cert, .tls_key = certs_.client_key, .api_timeout = 10s};
  }
  static std::unique_ptr<EngineClient> Client(const NodeOptions& options) {
    std::unique_ptr<EngineClient> client;
    Status s = EngineClient::Create(options, &client);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return client;
  }

  // `curl -X method URL+target` (the target sent as is, no `..` resolution), with our client
  // certificate unless `cert` is null; a JSON body when not empty.
  static HttpAnswer Curl(const std::string& method, const std::string& target, const std::string& body = "",
                         const test::TestCertificates* cert = &certs_) {
    std::vector<std::string> argv = {"curl", "-sS", "--max-time", "10", "--path-as-is", "--cacert", certs_.ca,
                                     "-o", "-", "-w", "\n%{http_code}"};
    if (cert) argv.insert(argv.end(), {"--cert", cert->client_cert, "--key", cert->client_key});
    if (method == "HEAD") {
      argv.push_back("--head");
    } else {
      argv.insert(argv.end(), {"-X", method});
    }
    if (!body.empty()) argv.insert(argv.end(), {"-H", "Content-Type: application/json", "--data-binary", body});
    argv.push_back(Url() + target);
    test::RunResult r = test::Run(argv, {.timeout_seconds = 20});
    HttpAnswer answer;
    answer.error = r.err;
    size_t nl = r.out.rfind('\n');
    if (nl == std::string::npos) return answer;
    answer.status = std::atoi(r.out.c_str() + nl + 1);
    answer.body = r.out.substr(0, nl);
    return answer;
  }

  // Every container of the engine, by full id.
  static std::vector<std::string> AllContainers() {
    std::istringstream lines(docker_->Docker({"ps", "-aq", "--no-trunc"}).out);
    std::vector<std::string> ids;
    for (std::string id; std::getline(lines, id);) {
      if (!id.empty()) ids.push_back(id);
    }
    std::sort(ids.begin(), ids.end());
    return ids;
  }

  static inline std::string skip_, failure_;
  static inline TestDocker* docker_ = nullptr;
  static inline std::string image_, outside_id_;
  static inline test::TempDir* dir_ = nullptr;
  static inline test::TestCertificates certs_, other_;
  static inline NginxFront* nginx_ = nullptr;
};

TEST_F(NginxAllowlistTest, ListensOnlyOnItsLoopbackPort) {
  test::RunResult ss = test::Run({"ss", "-ltnpH"});
  ASSERT_EQ(ss.exit_code, 0) << ss.err;
  std::istringstream lines(ss.out);
  int ours = 0;
  for (std::string line; std::getline(lines, line);) {
    if (line.find("pid=" + std::to_string(nginx_->pid()) + ",") == std::string::npos) continue;
    ++ours;
    EXPECT_NE(line.find(" 127.0.0.1:" + std::to_string(nginx_->port()) + " "), std::string::npos) << line;
  }
  EXPECT_EQ(ours, 1) << ss.out;
}

TEST_F(NginxAllowlistTest, TheGatewayCallsPassIncludingTheHijackedStream) {
  auto client = Client(Options());
  ASSERT_TRUE(client);
  ContainerInfo info;
  Status s = client->InspectContainer(kInside, &info);
  ASSERT_TRUE(s.ok()) << s.ToString() << "\n" << nginx_->ErrorLog();
  EXPECT_TRUE(info.running);
  EXPECT_EQ(info.id, TrimNewlines(docker_->Docker({"inspect", "-f", "{{.Id}}", kInside}).out));
  s = client->InspectContainer("nginx-missing", &info);
  EXPECT_TRUE(s.IsNotFound()) << "the engine's 404 passes through: " << s.ToString();

  // A TTY exec: resize while it waits for our line, then its output and exit code.
  std::string id;
  s = client->CreateExec(kInside, {.cmd = {"sh", "-c", "read line; echo got:$line; stty size; exit 5"}, .tty = true}, &id);
  ASSERT_TRUE(s.ok()) << s.ToString();
  std::unique_ptr<ExecStream> stream;
  s = client->StartExec(id, true, &stream);
  ASSERT_TRUE(s.ok()) << s.ToString() << "\n" << nginx_->ErrorLog();
  ExecInfo exec;
  ASSERT_TRUE(test::WaitFor([&] { return client->InspectExec(id, &exec).ok() && exec.running && exec.pid > 0; }, 10000));
  s = client->ResizeExec(id, 33, 101);
  ASSERT_TRUE(s.ok()) << s.ToString();
  ASSERT_TRUE(stream->Write("through-nginx\n", 5s).ok());
  std::string out = ReadToEof(*stream);
  EXPECT_NE(out.find("got:through-nginx"), std::string::npos) << out;
  EXPECT_NE(out.find("33 101"), std::string::npos) << out;
  EXPECT_EQ(ExitCode(*client, id), 5);

  // A multiplexed exec: 100 kB in through stdin, the same out on stdout, stderr apart. nginx
  // must relay both directions unbuffered for `head` to see its bytes and end.
  s = client->CreateExec(kInside, {.cmd = {"sh", "-c", "head -c 100004; echo to-stderr >&2; exit 7"}, .tty = false}, &id);
  ASSERT_TRUE(s.ok()) << s.ToString();
  s = client->StartExec(id, false, &stream);
  ASSERT_TRUE(s.ok()) << s.ToString();
  std::string input = "abc\n" + std::string(100000, 'x');
  ASSERT_TRUE(stream->Write(input, 10s).ok());
  std::string raw = ReadToEof(*stream), o, e;
  StdcopyDemuxer demux;
  s = demux.Feed(raw, [&](StdStream w, std::string_view b) { (w == StdStream::kStdout ? o : e) += b; });
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_TRUE(o == input) << "stdout: " << o.size() << " bytes of " << input.size();
  EXPECT_EQ(e, "to-stderr\n");
  EXPECT_EQ(ExitCode(*client, id), 7);
}

TEST_F(NginxAllowlistTest, DockerRunIsRefusedAndCreatesNothing) {
  std::vector<std::string> before = AllContainers();
  HttpAnswer a = Curl("POST", "/v1.41/containers/create?name=nginx-created",
                      R"({"Image":")" + image_ + R"(","Cmd":["true"],"HostConfig":{"NetworkMode":"none"}})");
  EXPECT_EQ(a.status, 403) << a.body << a.error;
  EXPECT_NE(a.body.find(kRefused), std::string::npos) << a.body;

  // What the issue says: the docker CLI's `docker run` through the node's nginx.
  test::RunResult run = test::Run(
      {"docker", "-H", "tcp://127.0.0.1:" + std::to_string(nginx_->port()), "--tlsverify", "--tlscacert", certs_.ca,
       "--tlscert", certs_.client_cert, "--tlskey", certs_.client_key, "run", "--rm", "--network", "none", "--name",
       "nginx-cli-run", image_, "true"},
      {.env = {{"DOCKER_CONFIG", dir_->path() + "/cli"}, {"DOCKER_HOST", ""}, {"DOCKER_CONTEXT", ""}},
       .timeout_seconds = 60});
  EXPECT_NE(run.exit_code, 0) << run.out;
  EXPECT_NE(run.err.find(kRefused), std::string::npos) << "a clear error from the CLI: " << run.err;

  EXPECT_EQ(AllContainers(), before) << "no container was created";
  EXPECT_EQ(TrimNewlines(docker_->Docker({"ps", "-aq", "--filter", "name=nginx-c"}).out), "");
}

TEST_F(NginxAllowlistTest, EverythingElseIsRefused) {
  const std::string exec_id(64, 'a');
  const std::string inside = kInside;
  struct Call {
    std::string method, target, body;
  };
  const std::vector<Call> calls = {
      // The engine's other powers.
      {"POST", "/v1.41/containers/" + inside + "/start", ""},
      {"POST", "/v1.41/containers/" + inside + "/kill", ""},
      {"POST", "/v1.41/containers/" + inside + "/stop", ""},
      {"DELETE", "/v1.41/containers/" + inside + "?force=1", ""},
      {"PUT", "/v1.41/containers/" + inside + "/archive?path=/tmp", ""},
      {"GET", "/v1.41/containers/" + inside + "/archive?path=/etc", ""},
      {"POST", "/v1.41/containers/" + inside + "/attach?stream=1&stdin=1", ""},
      {"GET", "/v1.41/containers/json", ""},
      {"GET", "/v1.41/images/json", ""},
      {"POST", "/v1.41/images/create?fromImage=busybox", ""},
      {"DELETE", "/v1.41/images/" + image_, ""},
      {"POST", "/v1.41/build", ""},
      {"GET", "/v1.41/info", ""},
      {"GET", "/v1.41/version", ""},
      {"GET", "/_ping", ""},
      {"HEAD", "/_ping", ""},
      {"GET", "/v1.41/_ping", ""},
      {"POST", "/v1.41/volumes/create", R"({"Name":"x"})"},
      // The allowed calls under another version, unversioned, or another method.
      {"GET", "/v1.40/containers/" + inside + "/json", ""},
      {"GET", "/v1.42/containers/" + inside + "/json", ""},
      {"GET", "/containers/" + inside + "/json", ""},
      {"POST", "/containers/" + inside + "/exec", R"({"Cmd":["true"]})"},
      {"DELETE", "/v1.41/containers/" + inside + "/json", ""},
      {"PUT", "/v1.41/containers/" + inside + "/exec", R"({"Cmd":["true"]})"},
      {"HEAD", "/v1.41/containers/" + inside + "/json", ""},
      {"GET", "/v1.41/exec/" + exec_id + "/start", ""},
      {"DELETE", "/v1.41/exec/" + exec_id + "/json", ""},
      // Allowed calls bent: path tricks the engine would resolve to something else, odd ids
      // and queries.
      {"GET", "/v1.41/containers/" + inside + "/json/../../../info", ""},
      {"GET", "/v1.41/containers/" + inside + "/../json", ""},
      {"GET", "//v1.41/containers/" + inside + "/json", ""},
      {"GET", "/v1.41//containers/" + inside + "/json", ""},
      {"GET", "/v1.41/containers/%6eginx-web/json", ""},
      {"GET", "/v1.41/containers/" + inside + "/json?size=1", ""},
      {"POST", "/v1.41/containers/" + inside + "/exec?x=1", R"({"Cmd":["true"]})"},
      {"POST", "/v1.41/exec/" + std::string(64, 'A') + "/start", ""},
      {"POST", "/v1.41/exec/" + std::string(63, 'a') + "/start", ""},
      {"POST", "/v1.41/exec/" + inside + "/start", ""},
      {"POST", "/v1.41/exec/" + exec_id + "/resize?h=1&w=2&x=3", ""},
      {"POST", "/v1.41/exec/" + exec_id + "/resize", ""},
  };
  for (const Call& c : calls) {
    HttpAnswer a = Curl(c.method, c.target, c.body);
    EXPECT_EQ(a.status, 403) << c.method << " " << c.target << ": " << a.body << a.error;
    if (c.method != "HEAD") {  // a HEAD answer has no body
      EXPECT_NE(a.body.find(kRefused), std::string::npos) << c.method << " " << c.target << ": " << a.body;
    }
  }
  // Nothing of that reached the engine: the sandbox still runs, the image is still there.
  EXPECT_EQ(TrimNewlines(docker_->Docker({"inspect", "-f", "{{.State.Status}}", kInside}).out), "running");
  EXPECT_EQ(docker_->Docker({"image", "inspect", image_}).exit_code, 0);
}

TEST_F(NginxAllowlistTest, ExecOnAContainerOutsideThePatternIsRefused) {
  const std::string exec = R"({"Cmd":["true"],"AttachStdout":true})";
  // The control: the same call on a sandbox inside the pattern reaches the engine (201).
  HttpAnswer a = Curl("POST", std::string("/v1.41/containers/") + kInside + "/exec", exec);
  EXPECT_EQ(a.status, 201) << a.body << a.error;
  // By name, by id prefix (it starts with a letter: a name-like string) and by full id.
  for (const std::string& ref : {std::string(kOutside), outside_id_.substr(0, 12), outside_id_.substr(0, 1), outside_id_}) {
    a = Curl("POST", "/v1.41/containers/" + ref + "/exec", exec);
    EXPECT_EQ(a.status, 403) << ref << ": " << a.body << a.error;
    EXPECT_NE(a.body.find(kRefused), std::string::npos) << a.body;
    a = Curl("GET", "/v1.41/containers/" + ref + "/json");
    EXPECT_EQ(a.status, 403) << ref << ": " << a.body << a.error;
  }
  // The gateway's own client refuses an id prefix before sending anything (a name made only of
  // hex digits is ambiguous with an id, engine_client.h): two layers say no.
  auto client = Client(Options());
  ASSERT_TRUE(client);
  std::string id;
  Status s = client->CreateExec(outside_id_.substr(0, 12), {.cmd = {"true"}}, &id);
  EXPECT_TRUE(s.IsInvalid()) << s.ToString();
  EXPECT_NE(s.message().find("made only of hex digits"), std::string::npos) << s.message();
  EXPECT_EQ(TrimNewlines(docker_->Docker({"inspect", "-f", "{{.State.Status}}", kOutside}).out), "running");
}

TEST_F(NginxAllowlistTest, AClientCertificateOfTheNodesCaIsRequired) {
  const std::string target = std::string("/v1.41/containers/") + kInside + "/json";  // allowed with one
  ASSERT_EQ(Curl("GET", target).status, 200);
  HttpAnswer a = Curl("GET", target, "", nullptr);
  EXPECT_EQ(a.status, 403) << a.body << a.error;
  EXPECT_NE(a.body.find(kNoCertificate), std::string::npos) << a.body;
  EXPECT_EQ(a.body.find("\"Id\""), std::string::npos) << "the engine answered: " << a.body;
  a = Curl("GET", target, "", &other_);
  EXPECT_EQ(a.status, 403) << a.body << a.error;
  EXPECT_NE(a.body.find(kNoCertificate), std::string::npos) << a.body;

  NodeOptions options = Options();
  options.tls_cert = other_.client_cert;
  options.tls_key = other_.client_key;
  auto client = Client(options);
  ASSERT_TRUE(client);
  ContainerInfo info;
  Status s = client->InspectContainer(kInside, &info);
  EXPECT_EQ(s.code(), Status::Code::kPermission) << s.ToString();
  EXPECT_NE(s.message().find(kNoCertificate), std::string::npos) << s.message();

}

// Certificates of the node's CA that are not the gateway's: the node's own (serverAuth only:
// OpenSSL's purpose check refuses it), and one with no extendedKeyUsage at all, valid for any
// purpose as far as OpenSSL goes, which the shipped subject check refuses.
TEST_F(NginxAllowlistTest, OnlyTheGatewaysCertificateOfThatCaPasses) {
  const std::string target = std::string("/v1.41/containers/") + kInside + "/json";
  const std::string d = dir_->path() + "/";
  test::RunResult r = test::Sh(
      "set -e\nopenssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=node1 "
      "-keyout " + d + "noeku-key.pem -out " + d + "noeku.csr 2>/dev/null\n"
      "openssl x509 -req -days 2 -CA " + certs_.ca + " -CAkey " + certs_.ca_key + " -CAcreateserial -in " + d +
      "noeku.csr -out " + d + "noeku.pem 2>/dev/null\n"
      "openssl x509 -in " + d + "noeku.pem -noout -text\n");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_EQ(r.out.find("Extended Key Usage"), std::string::npos) << r.out;
  test::TestCertificates no_eku = certs_;
  no_eku.client_cert = d + "noeku.pem";
  no_eku.client_key = d + "noeku-key.pem";
  HttpAnswer a = Curl("GET", target, "", &no_eku);
  EXPECT_EQ(a.status, 403) << a.body << a.error;
  EXPECT_NE(a.body.find(kNotAGateway), std::string::npos) << a.body;
  EXPECT_EQ(a.body.find("\"Id\""), std::string::npos) << "the engine answered: " << a.body;

  test::TestCertificates server_auth = certs_;
  server_auth.client_cert = certs_.server_cert;
  server_auth.client_key = certs_.server_key;
  a = Curl("GET", target, "", &server_auth);
  EXPECT_EQ(a.status, 403) << a.body << a.error;
  EXPECT_NE(a.body.find(kNoCertificate), std::string::npos) << a.body;

  a = Curl("GET", target, "", &other_);  // the gateway's certificate, but of another CA
  EXPECT_EQ(a.status, 403) << a.body << a.error;
  EXPECT_NE(a.body.find(kNoCertificate), std::string::npos) << a.body;
  EXPECT_EQ(Curl("GET", target).status, 200) << "the gateway's own certificate passes";
}

}  // namespace
}  // namespace allgo::engine
