// Test fixtures for the agent: certificates made with `openssl req` and a real `openssl s_server -WWW`
// (the seed's server) on 127.0.0.1, started and stopped by the test.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <string>
#include <vector>

namespace ota32::testing {

// Runs a command line through /bin/sh; returns its exit status (stdout/stderr go to `log`).
int run_shell(const std::string& command, const std::filesystem::path& log);

// A CA plus leaf certificates signed by it, and a second, unrelated CA.
struct TestPki {
  std::filesystem::path dir;
  std::filesystem::path ca_cert, ca_key;        // the trusted CA
  std::filesystem::path other_ca_cert;          // a CA that signed nothing the server shows
  std::filesystem::path ip_cert, ip_key;        // SAN IP:127.0.0.1, DNS:localhost
  std::filesystem::path wrong_cert, wrong_key;  // SAN DNS:example.com only
  std::filesystem::path seed_cert, seed_key;    // the seed's: self-signed, CN=127.0.0.1, no SAN
  // Creates everything under `dir` with openssl; false (and a message in dir/openssl.log) on failure.
  bool create(const std::filesystem::path& dir);
};

// `openssl s_server -WWW` serving `docroot` on 127.0.0.1:port.
class OpensslServer {
 public:
  OpensslServer() = default;
  ~OpensslServer();
  OpensslServer(const OpensslServer&) = delete;
  OpensslServer& operator=(const OpensslServer&) = delete;

  // Starts the server and waits (bounded) until it accepts connections.
  bool start(const std::filesystem::path& docroot, const std::filesystem::path& cert,
             const std::filesystem::path& key, std::vector<std::string> extra = {});
  void stop();
  int port() const { return port_; }

 private:
  pid_t pid_ = -1;
  int port_ = 0;
};

}  // namespace ota32::testing
