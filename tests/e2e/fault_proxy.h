// A fault-injecting TCP proxy for end-to-end tests: it listens on 127.0.0.1 (a port the kernel picks),
// forwards every connection to 127.0.0.1:<upstream> and, on the connection and at the byte chosen by the
// test, breaks the stream the way networks and middleboxes do: FIN or RST after N bytes, a stall, a flipped
// bit, throttling, added latency. It runs its own Boost.Asio loop on one thread; the destructor stops it and
// closes every connection. Offsets can be counted from the start of a direction's bytes, from its first TLS
// application-data record (so that "byte 0" is where the HTTP response begins, whatever the handshake's
// size) or from the first occurrence of a byte pattern (e.g. the server certificate's DER).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace ota32::testing {

struct Fault {
  enum class Kind {
    pass,      // forward untouched
    fin,       // forward `at` bytes, then close both sides cleanly (FIN): a dropped or truncated stream
    rst,       // forward `at` bytes, then reset both sides (RST)
    stall,     // forward `at` bytes, then forward nothing more in this direction; the connection stays open
    flip,      // XOR the byte at `at` with `mask`, forward everything
    throttle,  // forward at most `bytes_per_second`
    delay,     // hold every chunk `latency` before forwarding it
  };
  enum class Direction { to_client, to_server };
  enum class Anchor {
    stream,          // offset 0 = the direction's first byte (the TLS handshake)
    first_app_data,  // offset 0 = the first byte of the direction's first TLS application-data record header
    pattern,         // offset 0 = the first byte of the first occurrence of `pattern`
  };

  Kind kind = Kind::pass;
  Direction direction = Direction::to_client;
  Anchor anchor = Anchor::first_app_data;
  uint64_t at = 0;
  uint8_t mask = 0x01;
  std::string pattern;  // Anchor::pattern (searched in the direction's first 64 KiB)
  uint64_t bytes_per_second = 0;
  std::chrono::milliseconds latency{0};

  static Fault none() { return {}; }
};

class FaultProxy {
 public:
  // Connection i (0, 1, ... in accept order) gets plan(i). Throws when it cannot listen.
  FaultProxy(uint16_t upstream_port, std::function<Fault(int connection)> plan);
  ~FaultProxy();
  FaultProxy(const FaultProxy&) = delete;
  FaultProxy& operator=(const FaultProxy&) = delete;

  uint16_t port() const;
  // Connections accepted so far.
  int connections() const;
  // How many times a fault other than pass acted (a flip was made, a stream cut or stalled).
  int faults_applied() const;
  // Replaces the plan for connections accepted from now on.
  void set_plan(std::function<Fault(int connection)> plan);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ota32::testing
