#include "monitor_client.h"

#include "wire.h"

namespace allgo::sshd {

bool MonitorClient::Queue(const std::string& payload) {
  ExitedNotice notice;
  if (!Decode(payload, &notice).ok()) return false;
  notices_.push_back(notice);
  return true;
}

Status MonitorClient::Send(const std::string& request) { return SendRecord(sock_.get(), request); }

Status MonitorClient::Call(const std::string& request, MsgType want, std::string* answer,
                           std::vector<UniqueFd>* fds, int timeout_ms) {
  Status st = SendRecord(sock_.get(), request);
  if (!st.ok()) return st;
  while (true) {
    WireMessage msg;
    bool closed = false;
    st = ReceiveRecord(sock_.get(), timeout_ms, &msg, &closed);
    if (!st.ok()) return st;
    if (closed) return Status::Unavailable("monitor closed the connection");
    MsgType type;
    st = PeekType(msg.payload, &type);
    if (!st.ok()) return st;
    if (type == want) {
      *answer = std::move(msg.payload);
      if (fds != nullptr) *fds = std::move(msg.fds);
      return Status::Ok();
    }
    if (!msg.fds.empty() || !Queue(msg.payload)) return Status::Invalid("unexpected monitor message");
  }
}

Status MonitorClient::OpenStreams(UniqueFd* out) {
  std::string payload;
  std::vector<UniqueFd> fds;
  // The monitor bounds its wait for the carrier: no second deadline here.
  Status st = Call(Encode(sshd::OpenStreams{}), MsgType::kStreamsResult, &payload, &fds, -1);
  StreamsResult result;
  if (st.ok()) st = Decode(payload, &result);
  if (!st.ok()) return st;
  if (!result.ok) {
    if (!fds.empty()) return Status::Invalid("monitor: a refused OpenStreams carried descriptors");
    return Status::Permission(result.error);
  }
  if (fds.size() != 1) return Status::Invalid("monitor: OpenStreams answered without exactly one socket");
  *out = std::move(fds[0]);
  return Status::Ok();
}

bool MonitorClient::Poll() {
  while (true) {
    WireMessage msg;
    bool closed = false;
    Status st = ReceiveRecord(sock_.get(), 0, &msg, &closed);
    if (st.IsUnavailable()) return true;
    if (!st.ok() || closed) return false;
    if (!msg.fds.empty() || !Queue(msg.payload)) return false;
  }
}

}  // namespace allgo::sshd
