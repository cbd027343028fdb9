// An HTTP server in memory for the agent's HttpClient (HttpOptions::connect): every GET is answered with
// one image, honouring "Range: bytes=N-" with 206 and Content-Range as ota32 serve does. A power-cut sweep
// of a resumed download needs every replay to read the same bytes in the same pieces, which a socket does
// not promise; here a read returns as much as asked for.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>

#include "agent/http_client.h"
#include "core/bytes.h"

namespace ota32::sim {

class ImageServer {
 public:
  explicit ImageServer(Bytes image) : state_(std::make_shared<State>(State{std::move(image), 0})) {}

  // For HttpOptions::connect.
  std::function<Result<std::unique_ptr<agent::Connection>>(const agent::Url&)> connector() const;
  // GET requests answered so far (a resumed download makes one with a Range header).
  int requests() const { return state_->requests; }
  int range_requests() const { return state_->range_requests; }

  struct State {
    Bytes image;
    int requests = 0;
    int range_requests = 0;
  };

 private:
  std::shared_ptr<State> state_;
};

}  // namespace ota32::sim
