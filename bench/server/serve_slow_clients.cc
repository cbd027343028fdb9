// serve_slow_clients: many concurrent HTTPS downloads, each throttled like an ESP32 (~64 KB/s), against one
// URL on loopback. It measures what a fleet costs the server: every connection stays open for the whole
// download (1 MiB at 64 KB/s = 16 s), so N clients mean N concurrent sessions. Each client reads at most
// rate/10 bytes per 100 ms tick, so the server's socket buffer fills and its writes wait (backpressure).
// Prints one line per second (connected, active, completed, errors) and a summary; exit 1 on any error.
//
// Each socket's receive buffer is set small (--rcvbuf, default 16 KiB): an ESP32's lwIP advertises a TCP
// window of a few KiB, so a real device never lets the server queue megabytes in flight. Without it, 10 000
// loopback clients each autotune a 128 KiB+ receive queue and the kernel's tcp_mem limit resets connections
// ("TCP: out of memory", TcpExtTCPAbortOnMemory) -- a limit of the one-machine setup, not of the server.
// --threads spreads the clients over that many event loops (TLS decryption is the client's main cost).
//
//   serve_slow_clients --host 127.0.0.1 --port 8070 --path /fw.bin --clients 10000 --rate 65536
//       --ramp 10 --duration 40 [--threads 2] [--rcvbuf 16384]
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <fmt/format.h>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>

#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace asio = boost::asio;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using Clock = std::chrono::steady_clock;

struct Options {
  std::string host = "127.0.0.1", path = "/";
  unsigned short port = 8070;
  int clients = 100, ramp_s = 5, duration_s = 30, threads = 1;
  std::size_t rate = 65536;  // bytes per second per client
  int rcvbuf = 16384;        // SO_RCVBUF per socket (0 = the kernel's default, autotuned)
};

// Shared by every event-loop thread.
struct Stats {
  std::atomic<long> connected{0}, active{0}, completed{0}, errors{0};
  std::atomic<uint64_t> body_bytes{0};
  std::mutex m;
  std::string first_error;
  void error(std::string what) {
    ++errors;
    std::lock_guard lk(m);
    if (first_error.empty()) first_error = std::move(what);
  }
};

class Client : public std::enable_shared_from_this<Client> {
 public:
  Client(asio::io_context& ioc, ssl::context& ctx, const Options& o, Stats& st, Clock::time_point end)
      : o_(o), st_(st), end_(end), stream_(ioc, ctx), timer_(ioc) {}

  void start(const tcp::endpoint& ep) {
    SSL_set_tlsext_host_name(stream_.native_handle(), o_.host.c_str());
    error_code ec;
    stream_.lowest_layer().open(ep.protocol(), ec);
    if (ec) return fail("socket", ec);
    // Before connect, so that the window scale offered in the SYN matches the small buffer.
    if (o_.rcvbuf > 0)
      stream_.lowest_layer().set_option(asio::socket_base::receive_buffer_size(o_.rcvbuf), ec);
    stream_.lowest_layer().async_connect(ep, [self = shared_from_this()](error_code ec) {
      if (ec) return self->fail("connect", ec);
      self->stream_.async_handshake(ssl::stream_base::client, [self](error_code ec) {
        if (ec) return self->fail("handshake", ec);
        ++self->st_.connected;
        ++self->st_.active;
        self->request_ =
            fmt::format("GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: ESP32 HTTP Client/1.0\r\n\r\n",
                        self->o_.path, self->o_.host);
        asio::async_write(self->stream_, asio::buffer(self->request_), [self](error_code ec, std::size_t) {
          if (ec) return self->fail("write", ec);
          self->last_tick_ = Clock::now();
          self->read_some();
        });
      });
    });
  }

 private:
  void fail(const char* what, error_code ec) {
    if (active_counted()) --st_.active;
    st_.error(fmt::format("{}: {}", what, ec.message()));
  }
  bool active_counted() const { return !request_.empty() && !finished_; }

  // One read of at most the bytes this tick allows, then wait for the next tick.
  void read_some() {
    std::size_t budget = o_.rate / 10;
    std::size_t want = std::min(budget, buf_.size());
    stream_.async_read_some(asio::buffer(buf_.data(), want),
                            [self = shared_from_this()](error_code ec, std::size_t n) {
                              if (ec) return self->fail("read", ec);
                              self->consume(n);
                              if (self->finished_) return;
                              self->timer_.expires_at(self->last_tick_ += std::chrono::milliseconds(100));
                              self->timer_.async_wait([self](error_code) { self->read_some(); });
                            });
  }

  void consume(std::size_t n) {
    std::string_view data(buf_.data(), n);
    if (!header_done_) {
      header_.append(data);
      auto end = header_.find("\r\n\r\n");
      if (end == std::string::npos) return;
      header_done_ = true;
      if (header_.compare(0, 12, "HTTP/1.1 200") != 0) {
        finished_ = true;
        --st_.active;
        st_.error("status: " + header_.substr(0, header_.find('\r')));
        return;
      }
      auto cl = header_.find("Content-Length: ");
      if (cl != std::string::npos) std::from_chars(header_.data() + cl + 16, header_.data() + end, length_);
      received_ = header_.size() - end - 4;
    } else {
      received_ += n;
    }
    if (header_done_) st_.body_bytes += n;
    if (header_done_ && received_ >= length_) {
      finished_ = true;
      --st_.active;
      ++st_.completed;
      stream_.lowest_layer().close();
    }
  }

  const Options& o_;
  Stats& st_;
  Clock::time_point end_, last_tick_;
  ssl::stream<tcp::socket> stream_;
  asio::steady_timer timer_;
  std::string request_, header_;
  std::array<char, 16384> buf_{};
  bool header_done_ = false, finished_ = false;
  uint64_t length_ = 0, received_ = 0;
};

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string_view k = argv[i];
    std::string v = argv[i + 1];
    if (k == "--host")
      o.host = v;
    else if (k == "--port")
      o.port = static_cast<unsigned short>(std::stoi(v));
    else if (k == "--path")
      o.path = v;
    else if (k == "--clients")
      o.clients = std::stoi(v);
    else if (k == "--rate")
      o.rate = std::stoul(v);
    else if (k == "--ramp")
      o.ramp_s = std::stoi(v);
    else if (k == "--duration")
      o.duration_s = std::stoi(v);
    else if (k == "--threads")
      o.threads = std::stoi(v);
    else if (k == "--rcvbuf")
      o.rcvbuf = std::stoi(v);
    else {
      fmt::print(stderr, "serve_slow_clients: unknown option {}\n", k);
      return 2;
    }
  }
  if (o.clients < 1 || o.clients > 100000 || o.duration_s < 1 || o.duration_s > 600 || o.rate < 10 ||
      o.threads < 1 || o.threads > 64 || o.rcvbuf < 0) {
    fmt::print(stderr,
               "serve_slow_clients: --clients 1..100000, --duration 1..600, --rate >= 10, --threads 1..64, "
               "--rcvbuf >= 0\n");
    return 2;
  }
  // Loop 0 runs the ramp and the report; every loop runs its share of the clients.
  std::vector<std::unique_ptr<asio::io_context>> loops;
  for (int i = 0; i < o.threads; ++i) loops.push_back(std::make_unique<asio::io_context>(1));
  asio::io_context& ioc = *loops[0];
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards;
  for (auto& l : loops) guards.push_back(asio::make_work_guard(*l));
  ssl::context ctx(ssl::context::tls_client);
  ctx.set_verify_mode(
      ssl::verify_none);  // the load generator checks bytes, not the certificate (e2e tests do)
  SSL_CTX_set_cipher_list(ctx.native_handle(), "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256");
  SSL_CTX_set_max_proto_version(ctx.native_handle(), TLS1_2_VERSION);  // what ESP-IDF negotiates by default
  tcp::endpoint ep(asio::ip::make_address(o.host), o.port);
  Stats st;
  auto start = Clock::now();
  auto end = start + std::chrono::seconds(o.duration_s);
  // Ramp: start clients evenly over --ramp seconds, in 10 ms batches.
  int started = 0;
  asio::steady_timer ramp(ioc), report(ioc), stop(ioc);
  std::function<void()> ramp_step = [&] {
    auto elapsed = std::chrono::duration<double>(Clock::now() - start).count();
    int target = o.ramp_s > 0 ? std::min<int>(o.clients, static_cast<int>(o.clients * elapsed / o.ramp_s) + 1)
                              : o.clients;
    for (; started < target; ++started) {
      auto& loop = *loops[started % loops.size()];
      asio::post(loop, [&loop, &ctx, &o, &st, end, ep] {
        std::make_shared<Client>(loop, ctx, o, st, end)->start(ep);
      });
    }
    if (started < o.clients) {
      ramp.expires_after(std::chrono::milliseconds(10));
      ramp.async_wait([&](error_code) { ramp_step(); });
    }
  };
  ramp_step();
  long peak_active = 0;
  std::function<void()> tick = [&] {
    peak_active = std::max(peak_active, st.active.load());
    auto t = std::chrono::duration<double>(Clock::now() - start).count();
    fmt::print("t={:5.1f}s started={} connected={} active={} completed={} errors={} MB={:.1f}\n", t, started,
               st.connected.load(), st.active.load(), st.completed.load(), st.errors.load(),
               st.body_bytes.load() / 1e6);
    std::fflush(stdout);
    if (Clock::now() >= end ||
        (started == o.clients && st.active == 0 && st.connected + st.errors >= o.clients)) {
      for (auto& l : loops) l->stop();
      return;
    }
    report.expires_after(std::chrono::seconds(1));
    report.async_wait([&](error_code) { tick(); });
  };
  tick();
  std::vector<std::thread> threads;
  for (std::size_t i = 1; i < loops.size(); ++i) threads.emplace_back([&l = *loops[i]] { l.run(); });
  ioc.run();
  for (auto& t : threads) t.join();
  double secs = std::chrono::duration<double>(Clock::now() - start).count();
  fmt::print(
      "summary: clients={} connected={} peak_active={} completed={} errors={} body_MB={:.1f} seconds={:.1f} "
      "mean_rate_per_active_client_KBps={:.1f}{}\n",
      o.clients, st.connected.load(), peak_active, st.completed.load(), st.errors.load(),
      st.body_bytes.load() / 1e6, secs,
      st.connected ? st.body_bytes.load() / 1024.0 / secs / st.connected : 0.0,
      st.first_error.empty() ? "" : " first_error=\"" + st.first_error + "\"");
  return st.errors ? 1 : 0;
}
