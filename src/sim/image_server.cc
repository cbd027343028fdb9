#include "sim/image_server.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <optional>
#include <string>

#include "core/hash.h"

namespace ota32::sim {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// "Range: bytes=N-" -> N; nullopt without a Range header. Other range forms are not sent by the agent.
std::optional<uint64_t> range_start(const std::string& head) {
  const std::string l = lower(head);
  auto at = l.find("\r\nrange:");
  if (at == std::string::npos) return std::nullopt;
  auto eq = l.find("bytes=", at);
  if (eq == std::string::npos) return std::nullopt;
  uint64_t n = 0;
  size_t i = eq + 6;
  for (; i < l.size() && std::isdigit(static_cast<unsigned char>(l[i])) && n < (uint64_t{1} << 40); ++i) {
    n = n * 10 + static_cast<uint64_t>(l[i] - '0');
  }
  return n;
}

class MemoryConnection final : public agent::Connection {
 public:
  explicit MemoryConnection(std::shared_ptr<ImageServer::State> s) : s_(std::move(s)) {}

  Result<void> write_all(ByteView data) override {
    request_.append(reinterpret_cast<const char*>(data.data()), data.size());
    return {};
  }

  Result<size_t> read(std::span<uint8_t> out) override {
    if (!answered_) {
      if (request_.find("\r\n\r\n") == std::string::npos) {
        return Error(ErrorCode::unavailable, "image server: no complete request head before the read");
      }
      answer();
    }
    size_t n = 0;
    if (head_pos_ < head_.size()) {
      n = std::min(out.size(), head_.size() - head_pos_);
      std::memcpy(out.data(), head_.data() + head_pos_, n);
      head_pos_ += n;
      return n;
    }
    if (body_pos_ < body_end_) {
      n = static_cast<size_t>(std::min<uint64_t>(out.size(), body_end_ - body_pos_));
      std::memcpy(out.data(), s_->image.data() + body_pos_, n);
      body_pos_ += n;
    }
    return n;  // 0 = closed (Connection: close)
  }

 private:
  void answer() {
    answered_ = true;
    ++s_->requests;
    const uint64_t size = s_->image.size();
    if (!s_->version.empty() && request_.rfind("POST ", 0) == 0) {
      ++s_->reports;
      head_ = "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
      return;
    }
    if (!s_->version.empty() && request_.rfind("GET /api/v1/update?", 0) == 0) {
      const std::string line = request_.substr(0, request_.find("\r\n"));
      const bool current = line.find("&version=" + s_->version + "&") != std::string::npos;
      if (current) {
        head_ = "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
      } else {
        head_ = fmt::format(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n"
            "Connection: close\r\n\r\n{}",
            s_->offer_json.size(), s_->offer_json);
      }
      return;
    }
    if (request_.rfind("GET ", 0) != 0) {
      head_ = "HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
      return;
    }
    auto from = range_start(request_.substr(0, request_.find("\r\n\r\n") + 2));
    if (from) ++s_->range_requests;
    if (from && *from >= size) {
      head_ = fmt::format(
          "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{}\r\nContent-Length: 0\r\n"
          "Connection: close\r\n\r\n",
          size);
      return;
    }
    body_pos_ = from.value_or(0);
    body_end_ = size;
    if (from) {
      head_ = fmt::format(
          "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {}-{}/{}\r\nContent-Length: {}\r\n"
          "Connection: close\r\n\r\n",
          *from, size - 1, size, size - *from);
    } else {
      head_ = fmt::format("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", size);
    }
  }

  std::shared_ptr<ImageServer::State> s_;
  std::string request_;
  bool answered_ = false;
  std::string head_;
  size_t head_pos_ = 0;
  uint64_t body_pos_ = 0, body_end_ = 0;
};

}  // namespace

ImageServer::ImageServer(Bytes image, std::string version, std::string image_url)
    : state_(std::make_shared<State>(State{std::move(image)})) {
  state_->version = std::move(version);
  state_->image_url = std::move(image_url);
  state_->offer_json =
      fmt::format(R"({{"url": "{}", "size": {}, "sha256": "{}", "version": "{}"}})", state_->image_url,
                  state_->image.size(), to_hex(sha256(state_->image)), state_->version);
}

std::function<Result<std::unique_ptr<agent::Connection>>(const agent::Url&)> ImageServer::connector() const {
  auto s = state_;
  return [s](const agent::Url&) -> Result<std::unique_ptr<agent::Connection>> {
    return std::unique_ptr<agent::Connection>(std::make_unique<MemoryConnection>(s));
  };
}

}  // namespace ota32::sim
