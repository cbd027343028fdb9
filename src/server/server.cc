#include "server/server.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fmt/format.h>
#include <boost/asio.hpp>
#include <boost/beast/core/flat_buffer.hpp>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <functional>
#include <mutex>
#include <thread>
#include <unordered_set>
#include <vector>

#include "server/file_response.h"
#include "server/open_file_cache.h"

namespace ota32::server {

namespace asio = boost::asio;
using asio::awaitable;
using asio::use_awaitable;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using Clock = std::chrono::steady_clock;

namespace {

// "Date:" changes once a second: format it once per second per thread.
const std::string& http_date_now() {
  thread_local std::time_t cached_t = 0;
  thread_local std::string cached;
  std::time_t t = std::time(nullptr);
  if (t != cached_t) {
    struct tm tm {};
    gmtime_r(&t, &tm);
    char buf[64];
    std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    cached = buf;
    cached_t = t;
  }
  return cached;
}

// The response header as bytes: status line, fields, Date, Server, blank line.
void serialize_header(const HttpResponse& res, std::string& out) {
  unsigned version = res.version() == 10 ? 10 : 11;
  std::string_view reason = res.reason();
  if (reason.empty()) reason = http::obsolete_reason(res.result());
  fmt::format_to(std::back_inserter(out), "HTTP/1.{} {} {}\r\n", version % 10, res.result_int(), reason);
  for (const auto& f : res) {
    out.append(f.name_string());
    out.append(": ");
    out.append(f.value());
    out.append("\r\n");
  }
  out.append("Date: ");
  out.append(http_date_now());
  out.append("\r\nServer: ota32\r\n\r\n");
}

struct SslFree {
  void operator()(SSL* s) const { SSL_free(s); }
};

// The session's request body: in memory (text) or, for routes with RouteOptions::body_dir, appended to a
// file as it arrives (file), so that an upload costs the read buffer only, whatever its size. The session
// chooses between the header and the body (Session::before_body); a handler sees a plain HttpRequest.
struct SpoolBody {
  struct value_type {
    std::string text;
    std::shared_ptr<BodyFile> file;
  };
  class reader {
   public:
    template <bool isRequest, class Fields>
    reader(http::header<isRequest, Fields>&, value_type& v) : v_(v) {}
    void init(const boost::optional<std::uint64_t>& length, error_code& ec) {
      if (!v_.file && length) v_.text.reserve(static_cast<std::size_t>(*length));
      ec = {};
    }
    template <class ConstBufferSequence>
    std::size_t put(const ConstBufferSequence& buffers, error_code& ec) {
      std::size_t n = 0;
      for (auto b : boost::beast::buffers_range_ref(buffers)) {
        if (v_.file) {
          if (!v_.file->append(b.data(), b.size())) {
            // No space, an I/O error: 500, and the file goes with the request.
            ec = boost::system::errc::make_error_code(boost::system::errc::io_error);
            return n;
          }
        } else {
          v_.text.append(static_cast<const char*>(b.data()), b.size());
        }
        n += b.size();
      }
      ec = {};
      return n;
    }
    void finish(error_code& ec) { ec = {}; }

   private:
    value_type& v_;
  };
};
using RequestParser = http::request_parser<SpoolBody>;

// Bytes of request bodies held in memory, reserved against the server's budget for as long as the request
// lives (ServerOptions::body_memory).
class BodyMemory {
 public:
  ~BodyMemory() { release(); }
  bool reserve(std::atomic<std::size_t>& pool, std::size_t n, std::size_t cap) {
    release();
    std::size_t held = pool.load(std::memory_order_relaxed);
    do {
      if (n > cap || held > cap - n) return false;
    } while (!pool.compare_exchange_weak(held, held + n, std::memory_order_relaxed));
    pool_ = &pool;
    n_ = n;
    return true;
  }
  void release() {
    if (pool_) pool_->fetch_sub(n_, std::memory_order_relaxed);
    pool_ = nullptr;
    n_ = 0;
  }

 private:
  std::atomic<std::size_t>* pool_ = nullptr;
  std::size_t n_ = 0;
};

// The 400's reason for what Beast's parser refused.
std::string parse_error_message(error_code ec) {
  if (ec == http::error::bad_transfer_encoding)
    return "Transfer-Encoding: only one 'chunked' is accepted (RFC 9112 6.1)";
  if (ec == http::error::bad_content_length || ec == http::error::multiple_content_length)
    return "bad Content-Length (RFC 9112 6.3)";
  return fmt::format("malformed HTTP request: {}", ec.message());
}

}  // namespace

class Session;

// Member order matters: sessions still alive when the loop is destroyed (drain timeout) unregister
// themselves from `sessions`, so it must outlive `ioc`.
struct Worker {
  std::unordered_set<Session*> sessions;
  bool draining = false;
  // Plaintext of the records being written (send_file's round). Shared by the thread's sessions: it is filled
  // and handed to SSL_write with no suspension in between, so a session waiting for its client holds no copy
  // of the file.
  std::vector<char> file_buf;
  OpenFileCache files;
  asio::io_context ioc{1};
  tcp::acceptor acceptor{ioc};
};

struct Server::Impl {
  ServerOptions opt;
  std::mutex tls_mu;
  SSL_CTX* tls;  // one reference held (SSL_CTX_up_ref); replaced by set_tls
  const Router& router;
  Metrics& metrics;
  AccessLog* log;
  std::atomic<bool> stopping{false};
  std::atomic<std::size_t> connections{0};
  std::atomic<std::size_t> body_memory{0};  // request bodies held in memory now (ServerOptions::body_memory)
  std::vector<std::unique_ptr<Worker>> workers;  // last: destroyed first, while the counters above live

  Impl(ServerOptions o, SSL_CTX* t, const Router& r, Metrics& m, AccessLog* l)
      : opt(std::move(o)), tls(t), router(r), metrics(m), log(l) {
    if (tls) SSL_CTX_up_ref(tls);
  }
  ~Impl() { SSL_CTX_free(tls); }
  // A new connection's SSL object, from the context current now (an SSL keeps its context alive itself).
  SSL* new_ssl() {
    std::lock_guard lock(tls_mu);
    return SSL_new(tls);
  }
  awaitable<void> accept_loop(Worker& w);
  void begin_drain(Worker& w);
};

// One connection. The coroutine run() owns the flow (handshake, then request/response until close); the
// timer is a watchdog that closes the socket when the current phase's deadline passes.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(Server::Impl& srv, Worker& w, tcp::socket sock)
      : srv_(srv), w_(w), sock_(std::move(sock)), timer_(w.ioc), buf_(srv.opt.header_limit + 4096) {
    w_.sessions.insert(this);
    srv_.metrics.connection_opened();
  }
  ~Session() {
    w_.sessions.erase(this);
    srv_.metrics.connection_closed();
    srv_.connections.fetch_sub(1, std::memory_order_relaxed);
  }

  awaitable<void> run();
  // Graceful stop: an idle keep-alive connection is closed now, a busy one after its response.
  void drain() {
    if (idle_) sock_.cancel();
  }

 private:
  enum class ReadResult {
    ok,
    closed,
    bad_request,
    header_too_large,
    body_too_large,
    timeout,
    refused,       // the route's HeaderCheck answered (refusal_)
    busy,          // the body does not fit in the server's memory budget now
    server_error,  // the body file could not be created or written
  };

  // The watchdog: the timer runs to the earliest deadline set; a later deadline only moves deadline_ (checked
  // when the timer fires), an earlier one re-aims the timer.
  void arm(std::chrono::milliseconds d) {
    deadline_ = Clock::now() + d;
    if (timer_armed_ && deadline_ >= timer_at_) return;
    timer_armed_ = true;
    timer_at_ = deadline_;
    timer_.expires_at(deadline_);  // cancels a pending wait; its handler sees a stale generation
    timer_.async_wait(
        [self = shared_from_this(), gen = ++timer_gen_](error_code ec) { self->on_timer(ec, gen); });
  }
  void on_timer(error_code ec, uint64_t gen) {
    if (gen != timer_gen_) return;
    timer_armed_ = false;
    if (ec || done_) return;
    if (Clock::now() >= deadline_) {
      timed_out_ = true;
      error_code ignored;
      sock_.cancel(ignored);
      return;
    }
    arm(std::chrono::duration_cast<std::chrono::milliseconds>(deadline_ - Clock::now()) +
        std::chrono::milliseconds(1));
  }

  // Drives one OpenSSL call until it completes, waiting for the socket as OpenSSL asks. 1 = done,
  // 0 = clean close (close_notify), -1 = error or timeout.
  template <class Op>
  awaitable<int> ssl_io(Op op) {
    for (;;) {
      int r = op();
      if (r > 0) co_return 1;
      int e = SSL_get_error(ssl_.get(), r);
      error_code ec;
      if (e == SSL_ERROR_WANT_READ) {
        co_await sock_.async_wait(tcp::socket::wait_read, asio::redirect_error(use_awaitable, ec));
      } else if (e == SSL_ERROR_WANT_WRITE) {
        co_await sock_.async_wait(tcp::socket::wait_write, asio::redirect_error(use_awaitable, ec));
      } else {
        ERR_clear_error();
        co_return e == SSL_ERROR_ZERO_RETURN ? 0 : -1;
      }
      if (ec) co_return -1;
    }
  }

  // Plain HTTP sent to this TLS port (an http:// URL; Arduino's HTTPUpdate without TLS): a TLS connection's
  // first byte is a record type (0x16, a handshake) or an SSLv2-style hello (bit 7 set), a request line's is
  // a method's capital letter. Such a client gets nginx's answer, a 400 saying the port speaks HTTPS, in
  // plain text it can read, instead of a handshake failure it cannot. True when it was that.
  awaitable<bool> answered_plain_http() {
    error_code ec;
    co_await sock_.async_wait(tcp::socket::wait_read, asio::redirect_error(use_awaitable, ec));
    unsigned char first = 0;
    if (ec || ::recv(sock_.native_handle(), &first, 1, MSG_PEEK) != 1 || first < 'A' || first > 'Z')
      co_return false;
    // Read the request head (bounded) first: closing with unread bytes would reset the connection and the
    // client could lose the answer.
    std::string head;
    char chunk[4096];
    while (head.size() < 16384 && head.find("\r\n\r\n") == std::string::npos) {
      ssize_t n = ::recv(sock_.native_handle(), chunk, sizeof chunk, 0);
      if (n > 0) {
        head.append(chunk, static_cast<std::size_t>(n));
        continue;
      }
      if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) break;
      co_await sock_.async_wait(tcp::socket::wait_read, asio::redirect_error(use_awaitable, ec));
      if (ec) break;
    }
    std::string body = R"({"error":"plain_http","message":"this port speaks HTTPS: use an https:// URL"})";
    std::string reply = fmt::format(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: {}\r\n"
        "Connection: close\r\n\r\n{}",
        body.size(), body);
    for (std::size_t off = 0; off < reply.size() && !ec;) {
      ssize_t n = ::send(sock_.native_handle(), reply.data() + off, reply.size() - off, MSG_NOSIGNAL);
      if (n > 0) {
        off += static_cast<std::size_t>(n);
      } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        co_await sock_.async_wait(tcp::socket::wait_write, asio::redirect_error(use_awaitable, ec));
      } else {
        break;
      }
    }
    ::shutdown(sock_.native_handle(), SHUT_WR);
    // The request line's method and target, for the access log ("-" when it is not one).
    std::string_view line(head);
    line = line.substr(0, std::min(line.find("\r\n"), std::size_t{2048}));
    auto sp1 = line.find(' '), sp2 = line.find(' ', sp1 == line.npos ? line.npos : sp1 + 1);
    std::string_view method = sp1 == line.npos ? "-" : line.substr(0, sp1);
    std::string_view target = sp2 == line.npos ? "-" : line.substr(sp1 + 1, sp2 - sp1 - 1);
    srv_.metrics.request(http::string_to_verb(method), 400);
    if (srv_.log) srv_.log->write({remote_, method, target, "plain HTTP", 400, reply.size(), 0.0, false});
    co_return true;
  }

  // Re-aims TCP_NOTSENT_LOWAT at this connection's share of the budget (ServerOptions::unsent_budget).
  void apply_notsent_lowat() {
    std::size_t want = notsent_lowat_for(srv_.opt, srv_.connections.load(std::memory_order_relaxed));
    if (want == lowat_) return;
    int v = static_cast<int>(std::min<std::size_t>(want, 1u << 30));
    if (::setsockopt(sock_.native_handle(), IPPROTO_TCP, TCP_NOTSENT_LOWAT, &v, sizeof v) == 0) lowat_ = want;
  }

  // The watchdog during a transfer (a request body, or a response) of `bytes` so far since `start`: cut it
  // after io_timeout without progress, when it falls below min_rate once its first io_timeout has passed
  // (like Apache's mod_reqtimeout MinRate: the credit grows by one second per min_rate bytes, so a drip
  // of a byte every few seconds cannot hold the connection), and, for a request, at its request_timeout.
  void arm_transfer(Clock::time_point start, uint64_t bytes, bool request = true) {
    const auto& o = srv_.opt;
    auto now = Clock::now();
    auto at = now + o.io_timeout;
    deadline_reason_ = "no progress";
    if (o.min_rate > 0) {
      auto credit = std::chrono::duration_cast<Clock::duration>(
          std::chrono::duration<double>(static_cast<double>(bytes) / static_cast<double>(o.min_rate)));
      if (start + o.io_timeout + credit < at) {
        at = start + o.io_timeout + credit;
        deadline_reason_ = "slower than the minimum rate";
      }
    }
    if (request && request_deadline_ < at) {
      at = request_deadline_;
      deadline_reason_ = "the request took longer than allowed";
    }
    arm(std::chrono::duration_cast<std::chrono::milliseconds>(at - now) + std::chrono::milliseconds(1));
  }

  void count_sent(std::size_t n) {
    sent_ += n;
    srv_.metrics.bytes_sent(n);
    arm_transfer(send_start_, sent_, false);
  }
  void start_response() {
    sent_ = 0;
    send_start_ = Clock::now();
    arm(srv_.opt.io_timeout);
  }

  awaitable<bool> write_all(const char* p, std::size_t n) {
    while (n > 0) {
      std::size_t wrote = 0;
      int r = co_await ssl_io([&] { return SSL_write_ex(ssl_.get(), p, n, &wrote); });
      if (r != 1) co_return false;
      p += wrote;
      n -= wrote;
      count_sent(wrote);
    }
    co_return true;
  }

  // True when the socket takes more data now (with TCP_NOTSENT_LOWAT: the unsent queue is below the mark),
  // or has an error that SSL_write will report.
  bool writable_now() {
    pollfd p{sock_.native_handle(), POLLOUT, 0};
    return ::poll(&p, 1, 0) == 1;
  }
  // Waits, holding no buffer, until the socket takes more data.
  awaitable<bool> wait_writable() {
    error_code ec;
    co_await sock_.async_wait(tcp::socket::wait_write, asio::redirect_error(use_awaitable, ec));
    co_return !ec;
  }

  // The send pace shared by send_file and send_file_kernel: once a client's socket was full (fell_behind),
  // each piece first checks that the socket takes data and otherwise waits, holding no buffer; after
  // kCatchUp pieces in a row that found it writable, back to full speed. Call when behind_; false = the wait
  // failed (timeout, close).
  static constexpr int kCatchUp = 8;
  void fell_behind() {
    behind_ = true;
    writable_streak_ = 0;
  }
  awaitable<bool> keep_pace() {
    if (writable_now()) {
      if (++writable_streak_ >= kCatchUp) behind_ = false;
      co_return true;
    }
    writable_streak_ = 0;
    apply_notsent_lowat();  // connections came or went while this one was sending
    co_return co_await wait_writable();
  }

  // Reads more bytes into buf_: >0 bytes read, 0 = peer closed, -1 = error/timeout/buffer full.
  awaitable<long> read_more() {
    if (buf_.size() >= buf_.max_size()) co_return -1;
    if (buf_.size() == 0 && SSL_pending(ssl_.get()) == 0 && SSL_has_pending(ssl_.get()) == 0) {
      // Nothing buffered anywhere: wait for the client holding no read buffer (an idle keep-alive
      // connection then costs its SSL object and coroutine frames only).
      buf_.shrink_to_fit();
      error_code ec;
      co_await sock_.async_wait(tcp::socket::wait_read, asio::redirect_error(use_awaitable, ec));
      if (ec) co_return -1;
    }
    std::size_t want = std::min<std::size_t>(4096, buf_.max_size() - buf_.size());
    auto mb = buf_.prepare(want);
    std::size_t got = 0;
    int r = co_await ssl_io([&] { return SSL_read_ex(ssl_.get(), mb.data(), mb.size(), &got); });
    if (r != 1) co_return r == 0 ? 0 : -1;
    buf_.commit(got);
    srv_.metrics.bytes_received(got);
    co_return static_cast<long>(got);
  }

  awaitable<ReadResult> read_request(RequestParser& parser);
  awaitable<ReadResult> before_body(RequestParser& parser);
  awaitable<bool> send_response(HttpResponse& res);
  awaitable<bool> send_file(const HttpRequest& req, FileReply& reply, unsigned& status);
  awaitable<bool> send_file_kernel(int fd, const std::string& head, uint64_t off, uint64_t left);
  awaitable<void> send_reply_and_close(HttpResponse& res);
  HttpResponse read_error_reply(ReadResult rr, const RequestParser& parser) const;
  awaitable<void> lingering_close();
  void log(const HttpRequest& req, unsigned status, Clock::time_point start);

  Server::Impl& srv_;
  Worker& w_;
  tcp::socket sock_;
  std::unique_ptr<SSL, SslFree> ssl_;
  asio::steady_timer timer_;
  Clock::time_point deadline_, timer_at_;
  uint64_t timer_gen_ = 0;
  bool timer_armed_ = false, timed_out_ = false, done_ = false, idle_ = false;
  bool behind_ = false;    // the client's socket was full lately (send_file's pace)
  std::size_t lowat_ = 0;  // TCP_NOTSENT_LOWAT set on the socket (0 = none)
  int writable_streak_ = 0;
  bool shut_down_ = false;         // close_notify and FIN already sent (lingering_close)
  bool auth_trailing_ws_ = false;  // the raw Authorization value of the current request ends in whitespace
  bool reset_ = false;             // close with a reset (a reply cut by its deadline)
  bool kernel_tls_ = false;  // the kernel encrypts this connection's records (kTLS): files go by SSL_sendfile
  boost::beast::flat_buffer buf_;
  std::string remote_;
  uint64_t sent_ = 0;  // bytes of the current response
  Clock::time_point send_start_, body_start_, request_deadline_ = Clock::time_point::max();
  uint64_t body_bytes_ = 0;           // of the current request's body, so far
  const char* deadline_reason_ = "";  // which limit the watchdog's deadline is (the 408's message)
  std::string error_message_;         // why a request is bad_request / server_error
  HttpResponse refusal_;              // ReadResult::refused: the route's HeaderCheck reply
  BodyMemory memory_;                 // the current request body's share of the memory budget
};

awaitable<Session::ReadResult> Session::read_request(RequestParser& parser) {
  parser.header_limit(static_cast<std::uint32_t>(srv_.opt.header_limit));
  // Beast checks Content-Length against its body limit (default 1 MB) as the header completes, before the
  // route's limit can be set below: lift it here, the route's limit is applied once the header is known.
  parser.body_limit(boost::none);
  parser.eager(false);
  bool started = buf_.size() > 0, body_phase = false;
  idle_ = !started;
  if (started) request_deadline_ = Clock::now() + srv_.opt.request_timeout;
  arm(started ? srv_.opt.header_timeout : srv_.opt.idle_timeout);
  for (;;) {
    if (buf_.size() > 0) {
      if (!started) {
        started = true;
        idle_ = false;
        request_deadline_ = Clock::now() + srv_.opt.request_timeout;
        arm(srv_.opt.header_timeout);
      }
      error_code ec;
      std::size_t used = parser.put(buf_.data(), ec);
      // The header is parsed whole, from one buffer: this put's bytes are all of it, as received.
      if (!ec && !body_phase && parser.is_header_done())
        auth_trailing_ws_ = authorization_has_trailing_whitespace(
            std::string_view(static_cast<const char*>(buf_.data().data()), used));
      buf_.consume(used);
      if (ec && ec != http::error::need_more) {
        if (ec == http::error::header_limit) co_return ReadResult::header_too_large;
        if (ec == http::error::body_limit) co_return ReadResult::body_too_large;
        if (ec == boost::system::errc::io_error) co_return ReadResult::server_error;
        error_message_ = parse_error_message(ec);
        co_return ReadResult::bad_request;
      }
      if (parser.is_header_done() && !body_phase) {
        body_phase = true;
        auto pre = co_await before_body(parser);
        if (pre != ReadResult::ok) co_return pre;
        body_start_ = Clock::now();
        body_bytes_ = 0;
        arm_transfer(body_start_, body_bytes_);
        if (parser.is_done()) co_return ReadResult::ok;
        continue;
      }
      if (parser.is_done()) co_return ReadResult::ok;
      if (used > 0 && buf_.size() > 0) continue;
    }
    long n = co_await read_more();
    if (n == 0) co_return ReadResult::closed;
    if (n < 0) {
      if (timed_out_) co_return started ? ReadResult::timeout : ReadResult::closed;
      if (buf_.size() >= buf_.max_size()) co_return ReadResult::header_too_large;
      co_return ReadResult::closed;
    }
    if (body_phase) {
      body_bytes_ += static_cast<uint64_t>(n);
      arm_transfer(body_start_, body_bytes_);
    }
  }
}

// Between the header and the body: framing (smuggling), the route's check on the header (authentication),
// the body limit, where the body goes (memory within the server's budget, or a file), 100 Continue.
awaitable<Session::ReadResult> Session::before_body(RequestParser& parser) {
  const auto& h = parser.get();
  if (auto why = framing_error(h)) {
    error_message_ = *why;
    co_return ReadResult::bad_request;
  }
  if (auth_trailing_ws_) {
    HttpRequest header_only{h};
    refusal_ = json_error(http::status::unauthorized, "unauthorized",
                          "Authorization: whitespace after the credentials (send 'Bearer <token>' exactly)",
                          header_only);
    refusal_.set(http::field::www_authenticate, "Bearer realm=\"ota32\"");
    co_return ReadResult::refused;
  }
  const bool has_body = parser.chunked() || (parser.content_length() && *parser.content_length() > 0);
  if (!has_body) co_return ReadResult::ok;
  const Router::RouteOptions& route = srv_.router.body_options(h.method(), h.target());
  if (route.before_body) {
    HttpRequest header_only{h};
    if (auto refused = route.before_body(header_only)) {
      refusal_ = std::move(*refused);
      co_return ReadResult::refused;
    }
  }
  const std::size_t limit = route.body_limit;
  if (parser.content_length() && *parser.content_length() > limit) co_return ReadResult::body_too_large;
  parser.body_limit(limit);
  if (!route.body_dir.empty()) {
    std::string why;
    parser.get().body().file = BodyFile::create(route.body_dir, &why);
    if (!parser.get().body().file) {
      error_message_ = why;
      co_return ReadResult::server_error;
    }
  } else {
    // Bodies held in memory share one budget (ServerOptions::body_memory): a request that does not fit now
    // is refused before its body is read (503 + Retry-After), instead of the process growing with every
    // connection that sends one.
    std::size_t want = parser.content_length() ? static_cast<std::size_t>(*parser.content_length()) : limit;
    if (!memory_.reserve(srv_.body_memory, want, srv_.opt.body_memory)) co_return ReadResult::busy;
  }
  parser.eager(true);
  auto expect = h.find(http::field::expect);
  if (expect != h.end() && boost::beast::iequals(expect->value(), "100-continue") && h.version() == 11) {
    static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
    if (!co_await write_all(kContinue.data(), kContinue.size())) co_return ReadResult::closed;
  }
  co_return ReadResult::ok;
}

awaitable<bool> Session::send_response(HttpResponse& res) {
  std::string out;
  out.reserve(256 + res.body().size());
  serialize_header(res, out);
  out.append(res.body());
  co_return co_await write_all(out.data(), out.size());
}

// The reply to a request that read_request refused (every ReadResult but ok and closed); the connection
// closes after it.
HttpResponse Session::read_error_reply(ReadResult rr, const RequestParser& parser) const {
  HttpRequest dummy{http::verb::get, "/", 11};
  switch (rr) {
    case ReadResult::timeout:
      return json_error(http::status::request_timeout, "timeout",
                        parser.is_header_done()
                            ? fmt::format("request body not received in time ({})", deadline_reason_)
                            : std::string("request not received in time"),
                        dummy);
    case ReadResult::refused:
      return refusal_;
    case ReadResult::busy: {
      auto res = json_error(http::status::service_unavailable, "busy",
                            "the server holds as many request bodies in memory as it may (--body-memory), "
                            "retry later",
                            dummy);
      res.set(http::field::retry_after, "1");
      return res;
    }
    case ReadResult::server_error:
      return json_error(http::status::internal_server_error, "io_error",
                        error_message_.empty() ? "cannot store the request body" : error_message_, dummy);
    case ReadResult::header_too_large:
      return json_error(http::status::request_header_fields_too_large, "header_too_large",
                        fmt::format("request header larger than {} bytes", srv_.opt.header_limit), dummy);
    case ReadResult::body_too_large:
      return json_error(http::status::payload_too_large, "body_too_large",
                        "request body larger than this endpoint accepts", dummy);
    default:
      return json_error(http::status::bad_request, "bad_request",
                        error_message_.empty() ? "malformed HTTP request" : error_message_, dummy);
  }
}

awaitable<void> Session::send_reply_and_close(HttpResponse& res) {
  res.keep_alive(false);
  start_response();
  bool sent = co_await send_response(res);
  srv_.metrics.request(http::verb::unknown, res.result_int());
  if (srv_.log)
    srv_.log->write(
        {remote_, "-", "-", SSL_get_version(ssl_.get()), res.result_int(), sent_, 0.0, kernel_tls_});
  if (sent) co_await lingering_close();
}

// The client may still be sending (a body over the limit, a pipelined request): closing a socket with
// unread data makes the kernel answer with a reset, which can reach the client before it has read the error
// reply. So, like nginx's lingering close: close_notify and FIN first, then read and discard until the
// client closes, bounded by linger_time, linger_idle per read and linger_bytes.
awaitable<void> Session::lingering_close() {
  ERR_clear_error();
  SSL_shutdown(ssl_.get());
  ERR_clear_error();
  error_code ec;
  sock_.shutdown(tcp::socket::shutdown_send, ec);
  shut_down_ = true;
  timed_out_ = false;  // a 408 arrives here after the watchdog fired; the linger has its own budget
  auto until = Clock::now() + srv_.opt.linger_time;
  std::size_t left = srv_.opt.linger_bytes;
  std::unique_ptr<char[]> sink(new char[16 * 1024]);
  while (!ec && left > 0 && !timed_out_) {
    auto now = Clock::now();
    if (now >= until) break;
    arm(std::min(srv_.opt.linger_idle, std::chrono::duration_cast<std::chrono::milliseconds>(until - now) +
                                           std::chrono::milliseconds(1)));
    std::size_t n =
        co_await sock_.async_read_some(asio::buffer(sink.get(), std::min<std::size_t>(left, 16 * 1024)),
                                       asio::redirect_error(use_awaitable, ec));
    left -= std::min(left, n);
  }
}

awaitable<bool> Session::send_file(const HttpRequest& req, FileReply& reply, unsigned& status) {
  int err = 0;
  std::shared_ptr<OpenFile> file = w_.files.open(reply.path, err);
  if (!file) {
    // Out of descriptors is the server's state, not the file's: 503 and the client retries (ESP-IDF's
    // esp_https_ota gives up on a 404 for good).
    bool busy = err == EMFILE || err == ENFILE || err == ENOMEM;
    auto res = busy ? json_error(http::status::service_unavailable, "busy",
                                 "too many open files on the server, retry later", req)
                    : json_error(http::status::not_found, "not_found", "file is gone", req);
    if (busy) res.set(http::field::retry_after, "5");
    status = res.result_int();
    co_return co_await send_response(res);
  }
  apply_notsent_lowat();
  const int fd = file->fd;
  FileStat fs{file->size,
              std::chrono::system_clock::time_point(std::chrono::seconds(file->mtime.tv_sec) +
                                                    std::chrono::nanoseconds(file->mtime.tv_nsec))};
  FilePlan plan = plan_file_response(req, reply, fs);
  if (w_.draining) plan.header.keep_alive(false);
  status = plan.header.result_int();
  std::string head;
  serialize_header(plan.header, head);
  if (kernel_tls_) {
    bool ok = co_await send_file_kernel(fd, head, plan.offset, plan.length);
    file.reset();
    if (ok && plan.reaches_end && reply.on_complete) reply.on_complete();
    co_return ok;
  }
  bool ok = true;
  constexpr std::size_t kMaxRecord = 16 * 1024, kFastRecords = 4;
  const std::size_t record = std::clamp<std::size_t>(srv_.opt.file_chunk, 1024, kMaxRecord);
  if (head.size() + 512 > record) {  // an unusually large header goes out on its own
    ok = co_await write_all(head.data(), head.size());
    head.clear();
  }
  auto& buf = w_.file_buf;
  if (buf.size() < record * kFastRecords) buf.resize(record * kFastRecords);
  uint64_t off = plan.offset, left = plan.length;
  // Rounds: fill the thread's buffer (the header and the first piece of the file share the first record),
  // then encrypt and send it record by record. Two paces (design.md "Server shape": memory per slow client):
  // - keeping up (the default): several records per round, no check before writing;
  // - behind (the socket was full): before each record, check that the socket takes data and otherwise
  //   wait holding no buffer, so a slow client's session owns no copy of the file while it waits; after
  //   kCatchUp rounds in a row that found the socket writable, back to the first pace (keep_pace).
  while (ok) {
    if (behind_ && !co_await keep_pace()) {
      ok = false;
      break;
    }
    // Keeping up, OpenSSL keeps its write buffer from record to record (SSL_MODE_RELEASE_BUFFERS would free
    // and allocate 17 KiB per record: ~1 % of the server's instructions per MiB); behind, it frees it after
    // each record, so a waiting session holds none.
    if (behind_)
      SSL_set_mode(ssl_.get(), SSL_MODE_RELEASE_BUFFERS);
    else
      SSL_clear_mode(ssl_.get(), SSL_MODE_RELEASE_BUFFERS);
    const std::size_t chunk = behind_ ? record : record * kFastRecords;
    std::size_t fill = head.size();
    std::memcpy(buf.data(), head.data(), fill);
    head.clear();
    while (left > 0 && fill < chunk) {
      std::size_t want = static_cast<std::size_t>(std::min<uint64_t>(left, chunk - fill));
      ssize_t n = ::pread(fd, buf.data() + fill, want, static_cast<off_t>(off));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {  // the file shrank under us: the response cannot be completed, close the connection
        ok = false;
        break;
      }
      fill += static_cast<std::size_t>(n);
      off += static_cast<uint64_t>(n);
      left -= static_cast<uint64_t>(n);
    }
    if (!ok || fill == 0) break;
    for (std::size_t at = 0; ok && at < fill;) {
      std::size_t n = std::min(record, fill - at), wrote = 0;
      if (SSL_write_ex(ssl_.get(), buf.data() + at, n, &wrote) == 1) {
        count_sent(wrote);
        at += wrote;
        continue;
      }
      int e = SSL_get_error(ssl_.get(), 0);
      ERR_clear_error();
      if (e != SSL_ERROR_WANT_WRITE && e != SSL_ERROR_WANT_READ) {
        ok = false;
        break;
      }
      // The socket is full. OpenSSL holds the record it could not finish and must be called again with the
      // same plaintext: that record moves into the session (the thread's buffer is shared). The records
      // after it are not kept: they hold file bytes only (the header went out in the first record), which
      // the next rounds read again. So a waiting session holds at most one record.
      fell_behind();
      SSL_set_mode(ssl_.get(), SSL_MODE_RELEASE_BUFFERS);  // the buffer goes once this record is out
      const std::size_t later = fill - at - n;
      off -= later;
      left += later;
      std::vector<char> pending(buf.begin() + static_cast<std::ptrdiff_t>(at),
                                buf.begin() + static_cast<std::ptrdiff_t>(at + n));
      ok = co_await write_all(pending.data(), pending.size());
      break;
    }
    if (left == 0) break;
  }
  SSL_set_mode(ssl_.get(), SSL_MODE_RELEASE_BUFFERS);
  SSL_free_buffers(ssl_.get());  // refused (harmlessly) while a record is still pending
  file.reset();
  if (ok && plan.reaches_end && reply.on_complete) reply.on_complete();
  co_return ok;
}

// kTLS: the header is one record written by SSL_write (the kernel encrypts it), then the kernel reads the
// file from the page cache, cuts it into records and encrypts them itself (sendfile): no file byte passes
// through user space, and a session waiting for its client holds no buffer. A non-blocking sendfile stops
// where the socket is full (TCP_NOTSENT_LOWAT counts here as for SSL_write), so a slow client's kernel queue
// stays as bounded as without kTLS.
awaitable<bool> Session::send_file_kernel(int fd, const std::string& head, uint64_t off, uint64_t left) {
  if (!head.empty() && !co_await write_all(head.data(), head.size())) co_return false;
  constexpr uint64_t kMaxCall = 1u << 30;  // sendfile moves at most ~2 GiB per call
  constexpr uint64_t kRecord = 16 * 1024;
  while (left > 0) {
    // Behind (the socket was full): one record per call, and only once the socket takes data, so the kernel
    // is not left holding a half-filled record (and its encrypted copy) while the client is slow.
    if (behind_ && !co_await keep_pace()) co_return false;
    ossl_ssize_t n = SSL_sendfile(ssl_.get(), fd, static_cast<off_t>(off),
                                  static_cast<std::size_t>(std::min(left, behind_ ? kRecord : kMaxCall)), 0);
    if (n > 0) {
      count_sent(static_cast<std::size_t>(n));
      off += static_cast<uint64_t>(n);
      left -= static_cast<uint64_t>(n);
      continue;
    }
    // 0: the file ended early (it shrank under us), the response cannot be completed: close the connection.
    int e = n < 0 ? SSL_get_error(ssl_.get(), -1) : SSL_ERROR_SYSCALL;
    ERR_clear_error();
    if (e != SSL_ERROR_WANT_WRITE) co_return false;
    fell_behind();
    apply_notsent_lowat();  // connections came or went while this one was sending
    if (!co_await wait_writable()) co_return false;
  }
  co_return true;
}

void Session::log(const HttpRequest& req, unsigned status, Clock::time_point start) {
  srv_.metrics.request(req.method(), status);
  if (!srv_.log) return;
  double ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  srv_.log->write({remote_, req.method_string(), req.target(), SSL_get_version(ssl_.get()), status, sent_, ms,
                   kernel_tls_});
}

awaitable<void> Session::run() {
  auto self = shared_from_this();
  error_code ec;
  auto ep = sock_.remote_endpoint(ec);
  remote_ = ec ? "?" : ep.address().to_string();
  sock_.non_blocking(true, ec);
  sock_.set_option(tcp::no_delay(true), ec);
  apply_notsent_lowat();
  ssl_.reset(srv_.new_ssl());
  if (!ssl_ || SSL_set_fd(ssl_.get(), sock_.native_handle()) != 1) {
    ERR_clear_error();
    done_ = true;
    co_return;
  }
  SSL_set_accept_state(ssl_.get());
  arm(srv_.opt.handshake_timeout);
  if (co_await answered_plain_http()) {
    done_ = true;
    timer_.cancel();
    co_return;
  }
  int hs = co_await ssl_io([&] { return SSL_do_handshake(ssl_.get()); });
  srv_.metrics.handshake(hs == 1);
  if (hs != 1) {
    if (timed_out_) srv_.metrics.timeout();
    done_ = true;
    timer_.cancel();
    co_return;
  }
  // Set when the context asks for kTLS (serve --ktls) and the kernel took this connection's keys.
  kernel_tls_ = BIO_get_ktls_send(SSL_get_wbio(ssl_.get()));
  if (kernel_tls_) srv_.metrics.kernel_tls();

  bool keep_going = true;
  while (keep_going && !w_.draining) {
    RequestParser parser;
    error_message_.clear();
    auth_trailing_ws_ = false;
    request_deadline_ = Clock::time_point::max();
    auto rr = co_await read_request(parser);
    idle_ = false;
    if (rr == ReadResult::closed) break;
    if (rr != ReadResult::ok) {
      if (rr == ReadResult::timeout) srv_.metrics.timeout();
      // A named local, not a temporary in the co_await expression: GCC 12 destroys temporaries of a
      // conditional expression inside co_await twice (a double free after 400 to `Transfer-Encoding: gzip`).
      HttpResponse res = read_error_reply(rr, parser);
      co_await send_reply_and_close(res);
      break;
    }
    auto start = Clock::now();
    auto msg = parser.release();
    HttpRequest req(std::move(msg.base()));
    req.body() = std::move(msg.body().text);
    RequestContext ctx;
    ctx.remote_address = remote_;
    ctx.received = std::chrono::system_clock::now();
    ctx.body_file = std::move(msg.body().file);
    Reply reply = srv_.router.route(req, ctx);
    // The body is no longer needed (the handler has run): its memory and file go now, not after a long
    // download of the reply.
    req.body().clear();
    req.body().shrink_to_fit();
    ctx.body_file.reset();
    memory_.release();
    // A long download holds no read buffer (memory per slow client, design.md "Server shape").
    if (buf_.size() == 0) buf_.shrink_to_fit();
    start_response();
    unsigned status = 0;
    bool ok;
    if (auto* res = std::get_if<HttpResponse>(&reply)) {
      if (w_.draining) res->keep_alive(false);
      if (req.method() == http::verb::head) {
        // HEAD: the same header (Content-Length of the GET body) without the body.
        std::string out;
        serialize_header(*res, out);
        ok = co_await write_all(out.data(), out.size());
      } else {
        ok = co_await send_response(*res);
      }
      status = res->result_int();
      keep_going = ok && res->keep_alive();
    } else {
      auto& file = std::get<FileReply>(reply);
      ok = co_await send_file(req, file, status);
      keep_going = ok && req.keep_alive();
    }
    if (timed_out_) srv_.metrics.timeout();
    // A reply cut by its deadline (a reader slower than --min-rate, or stalled): reset the connection, so
    // the kernel drops what is still queued for it instead of delivering it at the client's pace (a plain
    // close keeps up to the socket's send buffer alive; nginx's reset_timedout_connection).
    if (!ok && timed_out_) reset_ = true;
    log(req, status, start);
  }
  done_ = true;
  timer_.cancel();
  if (reset_) {
    linger lg{1, 0};
    ::setsockopt(sock_.native_handle(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    sock_.close(ec);
    co_return;
  }
  if (!timed_out_ && !shut_down_) {
    // close_notify, without waiting for the peer's: a clean close for close-delimited clients.
    ERR_clear_error();
    SSL_shutdown(ssl_.get());
    ERR_clear_error();
  }
  sock_.shutdown(tcp::socket::shutdown_send, ec);
  sock_.close(ec);
}

awaitable<void> Server::Impl::accept_loop(Worker& w) {
  for (;;) {
    tcp::socket sock(w.ioc);
    error_code ec;
    co_await w.acceptor.async_accept(sock, asio::redirect_error(use_awaitable, ec));
    if (ec == asio::error::operation_aborted || !w.acceptor.is_open()) co_return;
    if (ec) {  // EMFILE and friends: back off a little instead of spinning
      asio::steady_timer t(w.ioc, std::chrono::milliseconds(50));
      co_await t.async_wait(asio::redirect_error(use_awaitable, ec));
      continue;
    }
    if (connections.fetch_add(1, std::memory_order_relaxed) >= opt.max_connections) {
      connections.fetch_sub(1, std::memory_order_relaxed);
      metrics.connection_refused();
      sock.close(ec);
      continue;
    }
    auto s = std::make_shared<Session>(*this, w, std::move(sock));
    asio::co_spawn(w.ioc, s->run(), asio::detached);
  }
}

void Server::Impl::begin_drain(Worker& w) {
  w.draining = true;
  error_code ec;
  w.acceptor.close(ec);
  std::vector<Session*> idle(w.sessions.begin(), w.sessions.end());
  for (Session* s : idle) s->drain();
}

std::size_t notsent_lowat_for(const ServerOptions& opt, std::size_t connections) {
  if (opt.unsent_budget == 0) return 0;
  std::size_t share = opt.unsent_budget / std::max<std::size_t>(1, connections);
  return std::clamp(share, opt.notsent_lowat_min, std::max(opt.notsent_lowat_min, opt.notsent_lowat_max));
}

std::size_t unsent_budget_for_tcp_mem(std::string_view tcp_mem, std::size_t page_size,
                                      std::size_t preferred) {
  unsigned long long min = 0, pressure = 0, max = 0;
  std::string text(tcp_mem);
  if (std::sscanf(text.c_str(), "%llu %llu %llu", &min, &pressure, &max) != 3 || pressure == 0)
    return preferred;
  unsigned long long cap = pressure / 8 * page_size;
  return static_cast<std::size_t>(std::min<unsigned long long>(preferred, cap));
}

Server::Server(ServerOptions options, SSL_CTX* tls, const Router& router, Metrics& metrics, AccessLog* log)
    : impl_(std::make_unique<Impl>(std::move(options), tls, router, metrics, log)) {}

Server::~Server() = default;

void Server::set_access_log(AccessLog* log) { impl_->log = log; }

void Server::set_tls(SSL_CTX* tls) {
  SSL_CTX_up_ref(tls);
  SSL_CTX* old = nullptr;
  {
    std::lock_guard lock(impl_->tls_mu);
    old = impl_->tls;
    impl_->tls = tls;
  }
  SSL_CTX_free(old);
}

Result<void> Server::listen() {
  unsigned n = impl_->opt.threads ? impl_->opt.threads : std::max(1u, std::thread::hardware_concurrency());
  error_code ec;
  auto addr = asio::ip::make_address(impl_->opt.bind, ec);
  if (ec)
    return Error(ErrorCode::invalid_argument, fmt::format("--bind {}: not an IP address", impl_->opt.bind));
  uint16_t port = impl_->opt.port;
  // One listening socket, shared by every thread's acceptor through dup(): the thread that is free first
  // takes the next connection. (A socket per thread with SO_REUSEPORT lets the kernel hash connections to
  // threads whatever their load: a few busy clients could land on one thread while the other idles, and a
  // second server started on the same port would silently share it instead of failing.)
  tcp::endpoint ep(addr, port);
  for (unsigned i = 0; i < n; ++i) {
    auto w = std::make_unique<Worker>();
    auto& a = w->acceptor;
    if (i == 0) {
      a.open(ep.protocol(), ec);
      if (!ec) a.set_option(tcp::acceptor::reuse_address(true), ec);
      if (!ec) a.bind(ep, ec);
      if (!ec) a.listen(4096, ec);
      if (ec)
        return Error(ec == asio::error::address_in_use ? ErrorCode::unavailable : ErrorCode::io_error,
                     fmt::format("cannot listen on {}:{}: {}", impl_->opt.bind, port, ec.message()));
      port = a.local_endpoint().port();
    } else {
      int fd = ::dup(impl_->workers.front()->acceptor.native_handle());
      if (fd < 0)
        return Error(ErrorCode::io_error, fmt::format("cannot share the listening socket with thread {}: {}",
                                                      i, std::strerror(errno)));
      a.assign(ep.protocol(), fd, ec);
      if (ec) {
        ::close(fd);
        return Error(ErrorCode::io_error,
                     fmt::format("cannot share the listening socket with thread {}: {}", i, ec.message()));
      }
    }
    impl_->workers.push_back(std::move(w));
  }
  port_ = port;
  return {};
}

void Server::stop() {
  if (impl_->stopping.exchange(true)) return;
  for (auto& w : impl_->workers)
    asio::post(w->ioc, [impl = impl_.get(), wp = w.get()] { impl->begin_drain(*wp); });
}

void Server::run(bool handle_signals, std::function<void()> on_hangup) {
  ::signal(SIGPIPE, SIG_IGN);  // OpenSSL writes to the socket fd directly
  auto& w0 = *impl_->workers.front();
  // SIGHUP runs on_hangup (on worker 0's thread) and waits for the next signal; SIGINT/SIGTERM stop.
  std::function<void(error_code, int)> on_signal;  // outlives `signals`, whose waits refer to it
  std::unique_ptr<asio::signal_set> signals;
  if (handle_signals) {
    signals = std::make_unique<asio::signal_set>(w0.ioc, SIGINT, SIGTERM);
    if (on_hangup) signals->add(SIGHUP);
    on_signal = [this, &signals, &on_signal, &on_hangup](error_code ec, int sig) {
      if (ec) return;
      if (sig == SIGHUP) {
        on_hangup();
        if (!impl_->stopping.load()) {
          signals->async_wait(on_signal);
          return;
        }
      }
      stop();
    };
    signals->async_wait(on_signal);
  }
  for (auto& w : impl_->workers) asio::co_spawn(w->ioc, impl_->accept_loop(*w), asio::detached);
  // Worker 0 also watches the drain: after stop(), wait for open connections (bounded), then end every loop.
  asio::co_spawn(
      w0.ioc,
      [this, &w0, &signals]() -> awaitable<void> {
        asio::steady_timer t(w0.ioc);
        error_code ec;
        while (!impl_->stopping.load()) {
          t.expires_after(std::chrono::milliseconds(100));
          co_await t.async_wait(asio::redirect_error(use_awaitable, ec));
        }
        if (signals) signals->cancel(ec);
        auto until = Clock::now() + impl_->opt.drain_timeout;
        while (impl_->connections.load() > 0 && Clock::now() < until) {
          t.expires_after(std::chrono::milliseconds(50));
          co_await t.async_wait(asio::redirect_error(use_awaitable, ec));
        }
        for (auto& w : impl_->workers) w->ioc.stop();
      },
      asio::detached);
  std::vector<std::thread> threads;
  for (std::size_t i = 1; i < impl_->workers.size(); ++i)
    threads.emplace_back([w = impl_->workers[i].get()] { w->ioc.run(); });
  w0.ioc.run();
  for (auto& t : threads) t.join();
}

}  // namespace ota32::server
