#include "allgo/engine_client.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/un.h>

#include <cstring>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/stream_traits.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

#include <charconv>
#include <exception>
#include <utility>

#include "allgo/engine_response.h"
#include "allgo/names.h"

namespace allgo::engine {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using local = asio::local::stream_protocol;
using boost::system::error_code;
using Clock = std::chrono::steady_clock;
using Json = nlohmann::json;

// Docker 20.10 (Debian 12) speaks API 1.41; newer engines still accept it.
constexpr const char* kApiPrefix = "/v1.41";
constexpr ResponseLimits kResponseLimits{};  // engine_response.h: the bounds of one answer
constexpr size_t kResponseRead = 16 * 1024;  // bytes of the answer read at once
constexpr size_t kReadBuffer = 64 * 1024;  // ExecStream::Read hands out at most this much at once

// The completion of one asynchronous step: error, and bytes for reads and writes.
struct StepResult {
  error_code ec;
  size_t bytes = 0;
  bool done = false;
};
struct StepHandler {
  StepResult* r;
  void operator()(const error_code& ec) const { r->ec = ec; r->done = true; }
  void operator()(const error_code& ec, size_t n) const { r->ec = ec; r->bytes = n; r->done = true; }
};

// Runs one asynchronous operation started by `start(StepHandler)` until it completes or the
// deadline passes. On time-out the socket is closed (which ends the operation) and the result
// is asio::error::timed_out: the connection is then unusable.
template <class Socket, class Start>
StepResult RunStep(asio::io_context& ioc, Socket& socket, Clock::time_point deadline, Start&& start) {
  StepResult r;
  start(StepHandler{&r});
  ioc.restart();
  auto now = Clock::now();
  if (deadline > now) ioc.run_for(deadline - now);
  if (!r.done) {
    error_code ignored;
    socket.close(ignored);
    ioc.restart();
    ioc.run();  // the aborted operation's handler
    r.ec = asio::error::timed_out;
  }
  return r;
}

bool IsEof(const error_code& ec) {
  return ec == asio::error::eof || ec == ssl::error::stream_truncated;
}

// The hijacked stream, generic over the transport (local socket or TLS over TCP).
template <class Stream>
class BasicExecStream final : public ExecStream {
 public:
  BasicExecStream(std::shared_ptr<ssl::context> tls, std::unique_ptr<asio::io_context> ioc,
                  std::unique_ptr<Stream> stream, std::string leftover, std::string node)
      : tls_(std::move(tls)), ioc_(std::move(ioc)), stream_(std::move(stream)),
        leftover_(std::move(leftover)), node_(std::move(node)) {}
  ~BasicExecStream() override {
    error_code ignored;
    beast::get_lowest_layer(*stream_).close(ignored);
  }

  Status Read(std::string* out, size_t max, std::chrono::milliseconds timeout) override {
    out->clear();
    if (max == 0) return Status::Invalid("ExecStream::Read: max must be > 0");
    if (!leftover_.empty()) {
      out->resize(std::min(max, leftover_.size()));
      TakeLeftover(out->data(), out->size());
      return Status::Ok();
    }
    // At most one read buffer's worth: resize zero-fills, and a caller's large `max` must not
    // cost a large memset for each TLS record (16 KiB) a read returns.
    out->resize(std::min(max, kReadBuffer));
    StepResult r = RunStep(*ioc_, beast::get_lowest_layer(*stream_), Clock::now() + timeout, [&](StepHandler h) {
      stream_->async_read_some(asio::buffer(out->data(), out->size()), h);
    });
    out->resize(r.bytes);
    if (r.ec && IsEof(r.ec)) return Status::Ok();
    if (r.ec) return Status::Unavailable(node_ + ": reading the exec stream: " + r.ec.message());
    return Status::Ok();
  }

  Status ReadAvailable(char* buf, size_t max, size_t* got, bool* eof) override {
    *got = 0;
    *eof = false;
    if (max == 0) return Status::Invalid("ExecStream::ReadAvailable: max must be > 0");
    if ((*got = TakeLeftover(buf, max)) > 0) return Status::Ok();
    // A synchronous read on a non-blocking socket: Asio's TLS stream then hands out what its
    // buffers hold and reports would_block instead of waiting for the socket. The socket
    // stays non-blocking (one ioctl per stream, not two per read): the stream's other
    // operations are asynchronous, which Asio runs the same either way.
    auto& socket = beast::get_lowest_layer(*stream_);
    error_code ec;
    if (!socket.non_blocking()) socket.non_blocking(true, ec);
    if (ec) return Status::Unavailable(node_ + ": reading the exec stream: " + ec.message());
    *got = stream_->read_some(asio::buffer(buf, max), ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) return Status::Ok();
    if (ec && IsEof(ec)) {
      *eof = *got == 0;
      return Status::Ok();
    }
    if (ec) return Status::Unavailable(node_ + ": reading the exec stream: " + ec.message());
    return Status::Ok();
  }

  Status Write(std::string_view data, std::chrono::milliseconds timeout) override {
    StepResult r = RunStep(*ioc_, beast::get_lowest_layer(*stream_), Clock::now() + timeout, [&](StepHandler h) {
      asio::async_write(*stream_, asio::buffer(data.data(), data.size()), h);
    });
    if (r.ec) return Status::Unavailable(node_ + ": writing the exec stream: " + r.ec.message());
    return Status::Ok();
  }

  Status CloseWrite() override {
    if constexpr (std::is_same_v<Stream, local::socket>) {
      error_code ec;
      stream_->shutdown(local::socket::shutdown_send, ec);
      if (ec) return Status::Unavailable(node_ + ": closing the exec stream's stdin: " + ec.message());
      return Status::Ok();
    } else {
      return Status::Invalid(node_ + ": half-closing a TLS exec stream is not supported; "
                             "send EOF inside the stream's own protocol");
    }
  }

  size_t Buffered() const override {
    size_t n = leftover_.size();
    if constexpr (!std::is_same_v<Stream, local::socket>) {
      SSL* ssl = const_cast<Stream&>(*stream_).native_handle();
      if (SSL_has_pending(ssl)) n += std::max(1, SSL_pending(ssl));
    }
    return n;
  }

  int fd() const override { return const_cast<Stream&>(*stream_).lowest_layer().native_handle(); }

 private:
  // Hands out up to `max` of the bytes that came with the 101 response, if any are left: they
  // are the stream's first bytes, before anything the socket holds.
  size_t TakeLeftover(char* buf, size_t max) {
    size_t n = std::min(max, leftover_.size());
    std::memcpy(buf, leftover_.data(), n);
    leftover_.erase(0, n);
    return n;
  }

  std::shared_ptr<ssl::context> tls_;  // outlives the TLS session that uses it
  std::unique_ptr<asio::io_context> ioc_;
  std::unique_ptr<Stream> stream_;  // destroyed before ioc_ (declared after it)
  std::string leftover_;  // stream bytes that arrived with the 101 response
  std::string node_;
};

struct Response {
  int status = 0;
  std::string body;
};

// The message of the engine's {"message": "..."} error body, made safe for one log line.
std::string EngineMessage(const std::string& body) {
  Json j = Json::parse(body, nullptr, false);
  if (!j.is_discarded() && j.is_object()) {
    auto it = j.find("message");
    if (it != j.end() && it->is_string()) return SanitizeForLog(it->get<std::string>(), 300);
  }
  return SanitizeForLog(body, 300);
}

}  // namespace

// One node's transport: opens a connection per call and speaks one request over it.
struct EngineClient::Impl {
  std::string node;          // the URL, for messages
  std::string socket_path;   // unix
  std::string host, port;    // tcp
  std::shared_ptr<ssl::context> tls;
  std::chrono::milliseconds timeout{};

  bool is_unix() const { return !socket_path.empty(); }
  std::string HostHeader() const { return is_unix() ? "docker" : host + ":" + port; }

  // Does `method target` with `body` (JSON or empty), fills *response. For StartExec,
  // `hijack` is set: a 101 answer hands the connection over to *stream.
  Status Call(http::verb method, const std::string& target, const std::string& body, Response* response,
              std::unique_ptr<ExecStream>* hijack = nullptr) {
    auto deadline = Clock::now() + timeout;
    auto ioc = std::make_unique<asio::io_context>(1);
    if (is_unix()) {
      auto stream = std::make_unique<local::socket>(*ioc);
      StepResult r = RunStep(*ioc, *stream, deadline, [&](StepHandler h) {
        stream->async_connect(local::endpoint(socket_path), h);
      });
      if (r.ec) return Failed("connecting", r.ec);
      return Exchange(ioc, stream, deadline, method, target, body, response, hijack);
    }
    auto stream = std::make_unique<ssl::stream<tcp::socket>>(*ioc, *tls);
    tcp::resolver resolver(*ioc);
    tcp::resolver::results_type endpoints;
    {
      StepResult r;
      resolver.async_resolve(host, port, [&](const error_code& ec, tcp::resolver::results_type results) {
        r.ec = ec;
        r.done = true;
        endpoints = std::move(results);
      });
      ioc->restart();
      ioc->run_for(std::max(Clock::duration::zero(), deadline - Clock::now()));
      if (!r.done) {
        resolver.cancel();
        ioc->restart();
        ioc->run();
        r.ec = asio::error::timed_out;
      }
      if (r.ec) return Failed("resolving " + host, r.ec);
    }
    auto& socket = stream->next_layer();
    StepResult r = RunStep(*ioc, socket, deadline, [&](StepHandler h) {
      asio::async_connect(socket, endpoints, [h](const error_code& ec, const tcp::endpoint&) { h(ec); });
    });
    if (r.ec) return Failed("connecting", r.ec);
    // The hijacked exec stream carries small writes both ways (a channel open, a keystroke):
    // Nagle + delayed ACK held them ~40 ms (bench/sshd/forward.md: opens p90 46 -> 5 ms).
    error_code nodelay_ec;
    socket.set_option(tcp::no_delay(true), nodelay_ec);  // best effort: only latency depends on it
    // The node's certificate must be for HOST (an IP address matches an IP subjectAltName).
    stream->set_verify_mode(ssl::verify_peer);
    stream->set_verify_callback(ssl::host_name_verification(host));
    error_code ip_ec;
    asio::ip::make_address(host, ip_ec);
    if (ip_ec) SSL_set_tlsext_host_name(stream->native_handle(), host.c_str());  // SNI for names only
    r = RunStep(*ioc, socket, deadline, [&](StepHandler h) { stream->async_handshake(ssl::stream_base::client, h); });
    if (r.ec) return Failed("TLS handshake", r.ec);
    return Exchange(ioc, stream, deadline, method, target, body, response, hijack);
  }

  // ioc and stream stay owned by the caller (declared in that order, so the stream goes
  // first), unless a hijack takes both.
  template <class Stream>
  Status Exchange(std::unique_ptr<asio::io_context>& ioc, std::unique_ptr<Stream>& stream, Clock::time_point deadline,
                  http::verb method, const std::string& target, const std::string& body, Response* response,
                  std::unique_ptr<ExecStream>* hijack) {
    auto& socket = beast::get_lowest_layer(*stream);
    http::request<http::string_body> req{method, std::string(kApiPrefix) + target, 11};
    req.set(http::field::host, HostHeader());
    req.set(http::field::user_agent, "allgo-sandbox-gateway");
    if (hijack) {
      req.set(http::field::connection, "Upgrade");
      req.set(http::field::upgrade, "tcp");
    } else {
      req.keep_alive(false);
    }
    if (!body.empty()) {
      req.set(http::field::content_type, "application/json");
      req.body() = body;
    }
    req.prepare_payload();
    StepResult r = RunStep(*ioc, socket, deadline, [&](StepHandler h) { http::async_write(*stream, req, h); });
    if (r.ec) return Failed("sending " + std::string(http::to_string(method)) + " " + target, r.ec, true);

    // The answer, read by us and parsed by ResponseReader within its bounds: every read is
    // bounded by the same deadline, so an engine that trickles bytes is cut at api_timeout.
    ResponseReader reader(kResponseLimits);
    std::string chunk(kResponseRead, '\0');
    while (!reader.done()) {
      r = RunStep(*ioc, socket, deadline, [&](StepHandler h) {
        stream->async_read_some(asio::buffer(chunk.data(), chunk.size()), h);
      });
      Status s = reader.Feed(std::string_view(chunk.data(), r.bytes));
      if (s.ok() && r.ec && IsEof(r.ec)) s = reader.FeedEof();
      if (!s.ok()) return ReadFailed(target, reader, s.message());
      if (r.ec && !IsEof(r.ec)) return ReadFailed(target, reader, r.ec);
      // A 2xx to an upgrade request is an engine or proxy that did not upgrade: its body is
      // the exec's output, not worth reading (StartExec says what went wrong).
      if (hijack && reader.header_done() && reader.status() / 100 == 2) break;
    }
    response->status = reader.status();
    if (hijack && response->status == 101) {
      *hijack = std::make_unique<BasicExecStream<Stream>>(tls, std::move(ioc), std::move(stream),
                                                          reader.TakeLeftover(), node);
      return Status::Ok();
    }
    response->body = reader.TakeBody();
    error_code ignored;
    socket.close(ignored);
    return Status::Ok();
  }

  // A step before the answer (resolving, connecting, the TLS handshake, sending) failed.
  // `sending` is set for the request, after the TLS handshake.
  Status Failed(const std::string& step, const error_code& ec, bool sending = false) const {
    std::string msg = "Docker node " + node + ": " + step + ": ";
    if (ec == asio::error::timed_out) {
      return Status::Unavailable(msg + "no answer within api_timeout (" + std::to_string(timeout.count()) +
                                 " ms); is the engine up and not overloaded?");
    }
    if (!is_unix()) {
      std::string refusal = TlsRefusal(ec);
      if (!refusal.empty()) return Status::Unavailable("Docker node " + node + ": TLS handshake: " + refusal);
    }
    const bool tls_drop = !is_unix() && (ec == asio::error::connection_reset || IsEof(ec) ||
                                         ec == asio::error::broken_pipe);
    if (tls_drop && sending) {
      // TLS 1.3: the node judges our certificate after our side of the handshake is done,
      // and its alert is lost when the reset of its close overtakes it.
      return Status::Unavailable(msg + "the node dropped the connection right after the TLS handshake (" +
                                 ec.message() + "), " + kDropCause + TlsHint());
    }
    msg += ec.message();
    if (tls_drop || ec.category() == asio::error::get_ssl_category() ||
        ec.category() == ssl::error::get_stream_category()) {
      msg += TlsHint();
    }
    return Status::Unavailable(msg);
  }

  // Reading the answer failed: the reader's verdict (a bound, not HTTP, closed mid-answer).
  Status ReadFailed(const std::string& target, const ResponseReader& reader, const std::string& why) const {
    std::string msg = "Docker node " + node + ": reading the answer to " + target + ": " + why;
    // Nothing at all after our request, over TLS: a node that refuses our certificate drops
    // the connection right after the handshake (its alert may not reach us, see Failed).
    if (reader.received() == 0 && !is_unix()) msg += std::string(", right after the TLS handshake, ") + kDropCause + TlsHint();
    return Status::Unavailable(msg);
  }

  // Reading the answer failed on the socket or TLS session.
  Status ReadFailed(const std::string& target, const ResponseReader& reader, const error_code& ec) const {
    if (ec == asio::error::timed_out) {
      std::string msg = "Docker node " + node + ": reading the answer to " + target + ": ";
      if (reader.received() == 0) {
        return Status::Unavailable(msg + "no answer within api_timeout (" + std::to_string(timeout.count()) +
                                   " ms); is the engine up and not overloaded?");
      }
      return Status::Unavailable(msg + "the answer did not end within api_timeout (" +
                                 std::to_string(timeout.count()) + " ms): " + std::to_string(reader.received()) +
                                 " bytes came; the engine sends too slowly or without end");
    }
    if (!is_unix() && reader.received() == 0) {
      // TLS 1.3: the node checks our certificate after our side of the handshake is done,
      // so its refusal (an alert) comes with the first read. It is still the handshake.
      std::string refusal = TlsRefusal(ec);
      if (!refusal.empty()) return Status::Unavailable("Docker node " + node + ": TLS handshake: " + refusal);
    }
    if (ec == asio::error::connection_reset || ec == asio::error::broken_pipe) {
      return ReadFailed(target, reader,
                        reader.received() == 0
                            ? std::string("the engine reset the connection without answering")
                            : "the engine reset the connection mid-answer, after " +
                                  std::to_string(reader.received()) + " bytes");
    }
    return ReadFailed(target, reader, ec.message());
  }

  // A TLS alert from the node (it refused the session): what it refused, and what to check.
  // Empty for anything else.
  std::string TlsRefusal(const error_code& ec) const {
    if (ec.category() != asio::error::get_ssl_category()) return "";
    const unsigned long code = static_cast<unsigned int>(ec.value());
    const int reason = ERR_GET_REASON(code);
    if (ERR_GET_LIB(code) != ERR_LIB_SSL || reason < SSL_AD_REASON_OFFSET) return "";
    const std::string what = ec.message();
    switch (reason - SSL_AD_REASON_OFFSET) {
      case SSL_AD_BAD_CERTIFICATE:
      case SSL_AD_UNSUPPORTED_CERTIFICATE:
      case SSL_AD_CERTIFICATE_REVOKED:
      case SSL_AD_CERTIFICATE_EXPIRED:
      case SSL_AD_CERTIFICATE_UNKNOWN:
      case SSL_AD_UNKNOWN_CA:
      case SSL_AD_ACCESS_DENIED:
      case SSL_AD_CERTIFICATE_REQUIRED:
        return "the node refused our client certificate (" + what + "): check tls_cert and tls_key (tls_cert "
               "must be signed by the CA the node trusts, dockerd --tlscacert, and be valid now; tls_key must be "
               "its key)";
      default:
        return "the node refused the TLS session (" + what + ")" + TlsHint();
    }
  }

  // Short: the locator quotes a cause up to 400 characters.
  static constexpr const char* kDropCause = "as a node that does not trust our client certificate does";

  std::string TlsHint() const {
    return " (check tls_cert and tls_key, which the node must trust, and tls_ca, which must have signed the "
           "node's certificate for " + host + ")";
  }

  // An HTTP error status as a Status naming the node, the action and the engine's message.
  Status FromHttp(const Response& response, const std::string& action) const {
    std::string msg = "Docker node " + node + ": " + action + ": HTTP " + std::to_string(response.status) + ": " +
                      EngineMessage(response.body);
    switch (response.status) {
      case 404: return Status::NotFound(msg);
      case 400: return Status::Invalid(msg);
      case 401:
      case 403: return Status::Permission(msg);
      default: return Status::Unavailable(msg);  // 409 (not running, paused), 500, ...
    }
  }
};

namespace {

Status ParseUrl(const NodeOptions& options, EngineClient::Impl* impl) {
  const std::string& url = options.url;
  impl->node = SanitizeForLog(url, 200);
  impl->timeout = options.api_timeout;
  if (options.api_timeout.count() <= 0) return Status::Invalid("Docker node " + impl->node + ": api_timeout must be > 0");
  if (url.starts_with("unix://")) {
    std::string path = url.substr(7);
    if (path.empty() || path[0] != '/') {
      return Status::Invalid("Docker node " + impl->node + ": unix:// needs an absolute path (unix:///run/docker.sock)");
    }
    if (path.size() >= sizeof(sockaddr_un{}.sun_path)) {
      return Status::Invalid("Docker node " + impl->node + ": socket path longer than " +
                             std::to_string(sizeof(sockaddr_un{}.sun_path) - 1) + " bytes");
    }
    impl->socket_path = path;
    return Status::Ok();
  }
  if (!url.starts_with("tcp://")) {
    return Status::Invalid("Docker node " + impl->node + ": the URL must be unix:///PATH or tcp://HOST:PORT");
  }
  std::string rest = url.substr(6);
  size_t colon = rest.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    return Status::Invalid("Docker node " + impl->node + ": tcp:// needs HOST:PORT (e.g. tcp://10.0.0.5:2376)");
  }
  std::string host = rest.substr(0, colon), port = rest.substr(colon + 1);
  if (host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  int port_number = 0;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), port_number);
  if (ec != std::errc() || end != port.data() + port.size() || port_number < 1 || port_number > 65535 ||
      host.empty() || host.find_first_of("/?#@[] ") != std::string::npos) {
    return Status::Invalid("Docker node " + impl->node + ": bad HOST:PORT in the URL");
  }
  impl->host = host;
  impl->port = port;
  if (options.tls_ca.empty() || options.tls_cert.empty() || options.tls_key.empty()) {
    return Status::Invalid("Docker node " + impl->node +
                           ": tcp:// needs [docker] tls_ca, tls_cert and tls_key (a client certificate)");
  }
  auto tls = std::make_shared<ssl::context>(ssl::context::tls_client);
  SSL_CTX_set_min_proto_version(tls->native_handle(), TLS1_2_VERSION);
  error_code ec2;
  tls->load_verify_file(options.tls_ca, ec2);
  if (ec2) return Status::Invalid("tls_ca " + options.tls_ca + ": cannot load the CA certificate: " + ec2.message());
  tls->use_certificate_chain_file(options.tls_cert, ec2);
  if (ec2) return Status::Invalid("tls_cert " + options.tls_cert + ": cannot load the client certificate: " + ec2.message());
  tls->use_private_key_file(options.tls_key, ssl::context::pem, ec2);
  if (ec2) {
    return Status::Invalid("tls_key " + options.tls_key + ": cannot load the private key (it must be the key of tls_cert " +
                           options.tls_cert + "): " + ec2.message());
  }
  if (SSL_CTX_check_private_key(tls->native_handle()) != 1) {
    return Status::Invalid("tls_key " + options.tls_key + " is not the key of tls_cert " + options.tls_cert);
  }
  impl->tls = std::move(tls);
  return Status::Ok();
}

// Boost and nlohmann report some failures (allocation, JSON types) by exception: none may
// leave this library.
template <class F>
Status Guard(const std::string& what, F&& f) {
  try {
    return f();
  } catch (const std::exception& e) {
    return Status::Unavailable(what + ": " + SanitizeForLog(e.what(), 300));
  }
}

}  // namespace

bool IsAmbiguousWithContainerId(std::string_view name) {
  return !name.empty() && name.find_first_not_of("0123456789abcdef") == std::string_view::npos;
}

bool IsValidContainerName(std::string_view name) {
  return IsValidUserName(name) && !IsAmbiguousWithContainerId(name);
}

bool IsValidExecId(std::string_view id) {
  if (id.size() != 64) return false;
  for (char c : id) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

std::string PercentEncode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
        c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

Status EngineClient::Create(const NodeOptions& options, std::unique_ptr<EngineClient>* out) {
  return Guard("Docker node " + SanitizeForLog(options.url, 200), [&] {
    auto impl = std::make_unique<Impl>();
    Status s = ParseUrl(options, impl.get());
    if (!s.ok()) return s;
    out->reset(new EngineClient(options, std::move(impl)));
    return Status::Ok();
  });
}

EngineClient::EngineClient(NodeOptions options, std::unique_ptr<Impl> impl)
    : options_(std::move(options)), impl_(std::move(impl)) {}
EngineClient::~EngineClient() = default;

namespace {
Status CheckName(const std::string& node, std::string_view name) {
  if (IsValidContainerName(name)) return Status::Ok();
  if (IsValidUserName(name)) {
    return Status::Invalid("Docker node " + node + ": refusing container name '" + std::string(name) +
                           "': made only of hex digits, an engine would take it for the id prefix of "
                           "another container when no container has this name; give [docker] container "
                           "a non-hex character, e.g. allgo-{docker_name}");
  }
  return Status::Invalid("Docker node " + node + ": refusing container name '" + SanitizeForLog(name, 64) +
                         "': it must match ^[a-z_][a-z0-9_-]{0,31}$");
}
Status CheckExecId(const std::string& node, std::string_view id) {
  if (IsValidExecId(id)) return Status::Ok();
  return Status::Invalid("Docker node " + node + ": refusing exec id '" + SanitizeForLog(id, 80) +
                         "': it must be 64 lowercase hex digits");
}
}  // namespace

Status EngineClient::InspectContainer(std::string_view name, ContainerInfo* info) {
  return Guard("Docker node " + impl_->node + ": inspecting container", [&] {
    Status s = CheckName(impl_->node, name);
    if (!s.ok()) return s;
    Response response;
    std::string action = "inspecting container " + std::string(name);
    s = impl_->Call(http::verb::get, "/containers/" + PercentEncode(name) + "/json", "", &response);
    if (!s.ok()) return s;
    if (response.status != 200) return impl_->FromHttp(response, action);
    Json j = Json::parse(response.body, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("State") || !j["State"].is_object()) {
      return Status::Invalid("Docker node " + impl_->node + ": " + action + ": the answer is not a container");
    }
    const Json& state = j["State"];
    info->id = j.value("Id", "");
    info->name = j.value("Name", "");
    if (info->name.starts_with('/')) info->name.erase(0, 1);
    if (info->name != name) {  // an engine answering for another container: never use it
      return Status::NotFound("Docker node " + impl_->node + ": " + action + ": the engine answered for container '" +
                              SanitizeForLog(info->name, 64) + "'");
    }
    info->status = state.value("Status", "");
    info->running = state.value("Running", false);
    info->exit_code = state.value("ExitCode", 0);
    if (auto config = j.find("Config"); config != j.end() && config->is_object()) {
      if (auto labels = config->find("Labels"); labels != config->end() && labels->is_object()) {
        for (const auto& [key, value] : labels->items()) {
          if (value.is_string()) info->labels[key] = value.get<std::string>();
        }
      }
    }
    return Status::Ok();
  });
}

Status EngineClient::CreateExec(std::string_view container, const ExecOptions& options, std::string* exec_id) {
  return Guard("Docker node " + impl_->node + ": creating an exec", [&] {
    Status s = CheckName(impl_->node, container);
    if (!s.ok()) return s;
    if (options.cmd.empty()) return Status::Invalid("Docker node " + impl_->node + ": exec needs a command");
    Json body = {{"AttachStdin", options.attach_stdin}, {"AttachStdout", options.attach_stdout},
                 {"AttachStderr", options.attach_stderr}, {"Tty", options.tty}, {"Cmd", options.cmd}};
    if (!options.user.empty()) body["User"] = options.user;
    if (!options.env.empty()) body["Env"] = options.env;
    if (!options.working_dir.empty()) body["WorkingDir"] = options.working_dir;
    Response response;
    std::string action = "creating an exec in container " + std::string(container);
    s = impl_->Call(http::verb::post, "/containers/" + PercentEncode(container) + "/exec", body.dump(), &response);
    if (!s.ok()) return s;
    if (response.status != 201) return impl_->FromHttp(response, action);
    Json j = Json::parse(response.body, nullptr, false);
    std::string id = (!j.is_discarded() && j.is_object()) ? j.value("Id", "") : "";
    if (!IsValidExecId(id)) {
      return Status::Invalid("Docker node " + impl_->node + ": " + action + ": the answer has no valid exec id");
    }
    *exec_id = id;
    return Status::Ok();
  });
}

Status EngineClient::StartExec(std::string_view exec_id, bool tty, std::unique_ptr<ExecStream>* stream) {
  return Guard("Docker node " + impl_->node + ": starting an exec", [&] {
    Status s = CheckExecId(impl_->node, exec_id);
    if (!s.ok()) return s;
    Json body = {{"Detach", false}, {"Tty", tty}};
    Response response;
    s = impl_->Call(http::verb::post, "/exec/" + std::string(exec_id) + "/start", body.dump(), &response, stream);
    if (!s.ok()) return s;
    if (response.status != 101) {
      stream->reset();
      if (response.status == 200) {
        return Status::Unavailable("Docker node " + impl_->node +
                                   ": starting an exec: the engine (or a proxy before it) did not upgrade the "
                                   "connection (HTTP 200 instead of 101); it must pass Upgrade: tcp through");
      }
      return impl_->FromHttp(response, "starting exec " + std::string(exec_id.substr(0, 12)));
    }
    return Status::Ok();
  });
}

Status EngineClient::ResizeExec(std::string_view exec_id, unsigned rows, unsigned cols) {
  return Guard("Docker node " + impl_->node + ": resizing an exec", [&] {
    Status s = CheckExecId(impl_->node, exec_id);
    if (!s.ok()) return s;
    Response response;
    s = impl_->Call(http::verb::post,
                    "/exec/" + std::string(exec_id) + "/resize?h=" + std::to_string(rows) + "&w=" + std::to_string(cols),
                    "", &response);
    if (!s.ok()) return s;
    if (response.status != 200 && response.status != 201) {
      return impl_->FromHttp(response, "resizing exec " + std::string(exec_id.substr(0, 12)));
    }
    return Status::Ok();
  });
}

Status EngineClient::InspectExec(std::string_view exec_id, ExecInfo* info) {
  return Guard("Docker node " + impl_->node + ": inspecting an exec", [&] {
    Status s = CheckExecId(impl_->node, exec_id);
    if (!s.ok()) return s;
    Response response;
    std::string action = "inspecting exec " + std::string(exec_id.substr(0, 12));
    s = impl_->Call(http::verb::get, "/exec/" + std::string(exec_id) + "/json", "", &response);
    if (!s.ok()) return s;
    if (response.status != 200) return impl_->FromHttp(response, action);
    Json j = Json::parse(response.body, nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
      return Status::Invalid("Docker node " + impl_->node + ": " + action + ": the answer is not JSON");
    }
    info->running = j.value("Running", false);
    info->pid = j.value("Pid", 0);
    auto it = j.find("ExitCode");
    if (it != j.end() && it->is_number_integer() && !info->running) {
      info->exit_code = it->get<int>();
    } else {
      info->exit_code.reset();
    }
    return Status::Ok();
  });
}

}  // namespace allgo::engine
