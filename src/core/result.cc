#include "core/result.h"

#include <cstdio>
#include <cstdlib>

namespace ota32 {

std::string_view to_string(ErrorCode code) {
  switch (code) {
    case ErrorCode::invalid_argument:
      return "invalid_argument";
    case ErrorCode::corrupt:
      return "corrupt";
    case ErrorCode::not_found:
      return "not_found";
    case ErrorCode::already_exists:
      return "already_exists";
    case ErrorCode::bad_signature:
      return "bad_signature";
    case ErrorCode::certificate_untrusted:
      return "certificate_untrusted";
    case ErrorCode::certificate_name_mismatch:
      return "certificate_name_mismatch";
    case ErrorCode::rollback_refused:
      return "rollback_refused";
    case ErrorCode::unsupported:
      return "unsupported";
    case ErrorCode::out_of_range:
      return "out_of_range";
    case ErrorCode::timeout:
      return "timeout";
    case ErrorCode::unavailable:
      return "unavailable";
    case ErrorCode::power_lost:
      return "power_lost";
    case ErrorCode::io_error:
      return "io_error";
    case ErrorCode::permission_denied:
      return "permission_denied";
    case ErrorCode::internal:
      return "internal";
  }
  return "unknown";
}

Error Error::with_context(std::string_view context) const {
  std::string m;
  m.reserve(context.size() + 2 + message_.size());
  m.append(context).append(": ").append(message_);
  return Error(code_, std::move(m));
}

void throw_exception_from_error(const Error& e, const boost::source_location& loc) {
  std::fprintf(stderr, "ota32: internal error: value() of a failed Result at %s:%u: %s\n", loc.file_name(),
               static_cast<unsigned>(loc.line()), e.message().c_str());
  std::abort();
}

}  // namespace ota32
