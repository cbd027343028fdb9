#include "e2e/fault_proxy.h"

#include <boost/asio.hpp>
#include <boost/asio/experimental/as_tuple.hpp>

#include <algorithm>
#include <future>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>
#include <vector>

namespace ota32::testing {

namespace asio = boost::asio;
using asio::ip::tcp;
using Clock = std::chrono::steady_clock;
constexpr auto kTuple = asio::experimental::as_tuple(asio::use_awaitable);

namespace {

// Both sockets of one proxied connection; closed once, by whichever side ends first.
struct Conn {
  tcp::socket client, server;
  bool closed = false;
  Conn(tcp::socket c, asio::io_context& ioc) : client(std::move(c)), server(ioc) {}
  void close_all(bool reset) {
    if (closed) return;
    closed = true;
    for (tcp::socket* s : {&client, &server}) {
      boost::system::error_code ec;
      if (reset) {
        s->set_option(asio::socket_base::linger(true, 0), ec);  // close() then sends RST
      } else {
        s->shutdown(tcp::socket::shutdown_send, ec);
      }
      s->close(ec);
    }
  }
};

// Finds where a direction's first TLS application-data record (content type 23) starts, from the record
// headers (type, version, 16-bit length) as they go by.
class TlsRecordScan {
 public:
  // Scans `data` (stream offset `pos`); the record's stream offset once found.
  std::optional<uint64_t> scan(const uint8_t* data, size_t n, uint64_t pos) {
    for (size_t i = 0; i < n;) {
      if (body_left_ > 0) {
        size_t skip = static_cast<size_t>(std::min<uint64_t>(body_left_, n - i));
        body_left_ -= skip;
        i += skip;
        continue;
      }
      if (got_ == 0) start_ = pos + i;
      hdr_[got_++] = data[i++];
      if (got_ < 5) continue;
      got_ = 0;
      if (hdr_[0] == 23) return start_;
      body_left_ = static_cast<uint64_t>(hdr_[3]) << 8 | hdr_[4];
    }
    return std::nullopt;
  }

 private:
  uint64_t start_ = 0, body_left_ = 0;
  uint8_t hdr_[5] = {};
  int got_ = 0;
};

}  // namespace

struct FaultProxy::Impl {
  asio::io_context ioc{1};
  tcp::acceptor acceptor{ioc};
  tcp::endpoint upstream;
  std::mutex mu;
  std::function<Fault(int)> plan;
  std::atomic<int> accepted{0};
  std::atomic<int> applied{0};
  std::vector<std::weak_ptr<Conn>> conns;  // touched on the loop's thread only
  std::thread thread;
  uint16_t port = 0;

  asio::awaitable<void> accept_loop();
  asio::awaitable<void> pump(std::shared_ptr<Conn> c, tcp::socket& from, tcp::socket& to, Fault f);
};

asio::awaitable<void> FaultProxy::Impl::accept_loop() {
  for (;;) {
    auto [ec, sock] = co_await acceptor.async_accept(kTuple);
    if (ec) co_return;
    const int index = accepted++;
    Fault f;
    {
      std::lock_guard lock(mu);
      f = plan ? plan(index) : Fault::none();
    }
    auto c = std::make_shared<Conn>(std::move(sock), ioc);
    auto [cec] = co_await c->server.async_connect(upstream, kTuple);
    if (cec) {
      c->close_all(true);
      continue;
    }
    conns.push_back(c);
    const bool to_client = f.direction == Fault::Direction::to_client;
    asio::co_spawn(ioc, pump(c, c->server, c->client, to_client ? f : Fault::none()), asio::detached);
    asio::co_spawn(ioc, pump(c, c->client, c->server, to_client ? Fault::none() : f), asio::detached);
  }
}

asio::awaitable<void> FaultProxy::Impl::pump(std::shared_ptr<Conn> c, tcp::socket& from, tcp::socket& to,
                                             Fault f) {
  std::vector<uint8_t> buf(16 * 1024);
  asio::steady_timer timer(ioc);
  uint64_t pos = 0;  // bytes of this direction read so far
  std::optional<uint64_t> anchor;
  if (f.anchor == Fault::Anchor::stream) anchor = 0;
  TlsRecordScan tls;
  std::string seen;  // Anchor::pattern: the direction's first bytes
  bool pending = f.kind == Fault::Kind::fin || f.kind == Fault::Kind::rst || f.kind == Fault::Kind::stall ||
                 f.kind == Fault::Kind::flip;
  const auto start = Clock::now();
  uint64_t sent = 0;
  for (;;) {
    auto [ec, n] = co_await from.async_read_some(asio::buffer(buf), kTuple);
    if (ec || c->closed) break;
    if (pending && !anchor) {
      if (f.anchor == Fault::Anchor::first_app_data) {
        anchor = tls.scan(buf.data(), n, pos);
      } else if (seen.size() < 64 * 1024) {
        seen.append(reinterpret_cast<const char*>(buf.data()), n);
        auto at = seen.find(f.pattern);
        if (at != std::string::npos) anchor = at;
      }
    }
    size_t len = n;
    std::optional<Fault::Kind> cut;
    if (pending && anchor && *anchor + f.at < pos + n) {
      const uint64_t trigger = *anchor + f.at;
      const size_t k = trigger > pos ? static_cast<size_t>(trigger - pos) : 0;
      pending = false;
      ++applied;
      if (f.kind == Fault::Kind::flip) {
        buf[k] ^= f.mask;
      } else {
        len = k;
        cut = f.kind;
      }
    }
    pos += n;
    if (f.kind == Fault::Kind::delay && f.latency.count() > 0) {
      timer.expires_after(f.latency);
      co_await timer.async_wait(kTuple);
    }
    // Throttle: 1 KiB pieces, each sent no earlier than the rate allows.
    const size_t piece = f.kind == Fault::Kind::throttle && f.bytes_per_second > 0 ? 1024 : len;
    bool write_failed = false;
    for (size_t off = 0; off < len && !write_failed; off += piece) {
      const size_t m = std::min(piece, len - off);
      if (f.kind == Fault::Kind::throttle && f.bytes_per_second > 0) {
        timer.expires_at(start + std::chrono::microseconds((sent + m) * 1000000 / f.bytes_per_second));
        co_await timer.async_wait(kTuple);
      }
      if (c->closed) co_return;
      auto [wec, w] = co_await asio::async_write(to, asio::buffer(buf.data() + off, m), kTuple);
      write_failed = static_cast<bool>(wec);
      sent += w;
    }
    if (write_failed) break;
    if (cut == Fault::Kind::stall) co_return;  // the other direction (or the destructor) closes it
    if (cut) {
      c->close_all(cut == Fault::Kind::rst);
      co_return;
    }
  }
  c->close_all(false);
}

FaultProxy::FaultProxy(uint16_t upstream_port, std::function<Fault(int)> plan) : impl_(new Impl) {
  impl_->plan = std::move(plan);
  impl_->upstream = tcp::endpoint(asio::ip::address_v4::loopback(), upstream_port);
  tcp::endpoint listen(asio::ip::address_v4::loopback(), 0);
  impl_->acceptor.open(listen.protocol());
  impl_->acceptor.set_option(asio::socket_base::reuse_address(true));
  impl_->acceptor.bind(listen);
  impl_->acceptor.listen();
  impl_->port = impl_->acceptor.local_endpoint().port();
  asio::co_spawn(impl_->ioc, impl_->accept_loop(), asio::detached);
  impl_->thread = std::thread([impl = impl_.get()] { impl->ioc.run(); });
}

FaultProxy::~FaultProxy() {
  // Close the listener and every connection on the loop's thread; the coroutines then end by themselves.
  // A loop still busy after 5 s (a throttled write) is stopped.
  std::promise<void> closed;
  asio::post(impl_->ioc, [impl = impl_.get(), &closed] {
    boost::system::error_code ec;
    impl->acceptor.close(ec);
    for (auto& w : impl->conns)
      if (auto c = w.lock()) c->close_all(false);
    closed.set_value();
  });
  closed.get_future().wait_for(std::chrono::seconds(5));
  auto done = std::async(std::launch::async, [impl = impl_.get()] { impl->thread.join(); });
  if (done.wait_for(std::chrono::seconds(5)) != std::future_status::ready) {
    impl_->ioc.stop();
    done.wait();
  }
}

uint16_t FaultProxy::port() const { return impl_->port; }
int FaultProxy::connections() const { return impl_->accepted.load(); }
int FaultProxy::faults_applied() const { return impl_->applied.load(); }

void FaultProxy::set_plan(std::function<Fault(int)> plan) {
  std::lock_guard lock(impl_->mu);
  impl_->plan = std::move(plan);
}

}  // namespace ota32::testing
