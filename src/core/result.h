// Result<T> and Error: how every fallible function in ota32 reports failure (no exceptions cross modules).
#pragma once

#include <boost/system/result.hpp>

#include <string>
#include <string_view>
#include <utility>

namespace ota32 {

// Codes say what the caller does next (retry, abort, roll back); messages are for people.
enum class ErrorCode {
  invalid_argument,       // the input (file, option, field) is wrong: fix it and run again
  corrupt,                // data failed a structural or integrity check (magic, length, checksum, hash, MD5)
  not_found,              // a file, partition, firmware or record does not exist
  already_exists,         // refusing to overwrite
  bad_signature,          // a signature (Secure Boot v2, an image's) does not verify
  certificate_untrusted,  // a TLS peer's certificate does not verify against the CA (or is expired)
  certificate_name_mismatch,  // a TLS peer's certificate verifies but is for other names than the host
  rollback_refused,           // anti-rollback / downgrade protection refused the image
  unsupported,                // valid but not handled (chip, format version, feature)
  out_of_range,               // an address or size lies outside the region / flash / slot
  timeout,                    // the peer or operation took too long: retrying may help
  unavailable,                // the peer or resource cannot be reached now: retrying may help
  power_lost,                 // a (simulated) power cut happened during a flash operation
  io_error,                   // the host OS refused a read or write
  permission_denied,          // authentication / authorisation failed
  internal,                   // a bug in ota32
};

std::string_view to_string(ErrorCode code);

class Error {
 public:
  // Needed by boost::system::result::error() on a success value; never produced by ota32 code.
  Error() : code_(ErrorCode::internal), message_("no error") {}
  Error(ErrorCode code, std::string message) : code_(code), message_(std::move(message)) {}

  ErrorCode code() const { return code_; }
  const std::string& message() const { return message_; }

  // Returns a copy whose message is "<context>: <message>" (e.g. the file name in front).
  Error with_context(std::string_view context) const;

 private:
  ErrorCode code_;
  std::string message_;
};

template <class T>
using Result = boost::system::result<T, Error>;

// Called by result<T, Error>::value() on an error: a programming error (check first), so it aborts
// with the message instead of throwing.
[[noreturn]] void throw_exception_from_error(const Error& e, const boost::source_location& loc);

inline Error make_error(ErrorCode code, std::string message) { return Error(code, std::move(message)); }

}  // namespace ota32

// Propagates the error of a Result-returning expression; usable only in functions returning Result.
#define OTA32_TRY_CONCAT_(a, b) a##b
#define OTA32_TRY_NAME_(line) OTA32_TRY_CONCAT_(ota32_try_, line)
#define OTA32_TRY(expr)                                                       \
  do {                                                                        \
    auto&& OTA32_TRY_NAME_(__LINE__) = (expr);                                \
    if (!OTA32_TRY_NAME_(__LINE__)) return OTA32_TRY_NAME_(__LINE__).error(); \
  } while (0)
// OTA32_ASSIGN(auto x, expr): declares x from a Result's value or returns its error.
#define OTA32_ASSIGN(decl, expr)                                            \
  auto&& OTA32_TRY_NAME_(__LINE__) = (expr);                                \
  if (!OTA32_TRY_NAME_(__LINE__)) return OTA32_TRY_NAME_(__LINE__).error(); \
  decl = std::move(*OTA32_TRY_NAME_(__LINE__))
