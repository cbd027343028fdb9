// An HTTP server in memory for the agent's HttpClient (HttpOptions::connect): every GET is answered with
// one image, honouring "Range: bytes=N-" with 206 and Content-Range as ota32 serve does. A power-cut sweep
// of a resumed download needs every replay to read the same bytes in the same pieces, which a socket does
// not promise; here a read returns as much as asked for. With a version it is also `ota32 serve`'s update
// API for the agent's whole lifecycle: GET /api/v1/update offers the image (204 once the device runs its
// version), POST (a report) is answered 204.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "agent/http_client.h"
#include "core/bytes.h"

namespace ota32::sim {

class ImageServer {
 public:
  explicit ImageServer(Bytes image) : state_(std::make_shared<State>(State{std::move(image)})) {}
  // The update API too: the image is offered as `version` at `image_url`.
  ImageServer(Bytes image, std::string version, std::string image_url);

  // For HttpOptions::connect.
  std::function<Result<std::unique_ptr<agent::Connection>>(const agent::Url&)> connector() const;
  // GET requests answered so far (a resumed download makes one with a Range header).
  int requests() const { return state_->requests; }
  int range_requests() const { return state_->range_requests; }
  int reports() const { return state_->reports; }

  struct State {
    Bytes image;
    int requests = 0;
    int range_requests = 0;
    int reports = 0;
    std::string version, image_url, offer_json;  // the update API (empty version: none)
  };

 private:
  std::shared_ptr<State> state_;
};

}  // namespace ota32::sim
