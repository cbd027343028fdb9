// fmt's compiled functions (vformat, vprint, format_error, ...) built into ota32 from Debian's fmt headers,
// so that ota32 does not load libfmt.so at start (design.md: start-up cost; docs/performance.md). An object
// file of the executable, so its definitions come before the shared library on the link line and, with
// --as-needed, libfmt.so is then not loaded; a function not defined here still links, from libfmt.so.
#include <fmt/format-inl.h>

// The templates fmt's compiled library instantiates and the headers only declare: the locale hooks (used by
// integer formatting) and the shortest-float conversion.
FMT_BEGIN_NAMESPACE
namespace detail {
template FMT_API auto thousands_sep_impl(locale_ref) -> thousands_sep_result<char>;
template FMT_API auto decimal_point_impl(locale_ref) -> char;
template FMT_API auto dragonbox::to_decimal(float x) noexcept -> dragonbox::decimal_fp<float>;
template FMT_API auto dragonbox::to_decimal(double x) noexcept -> dragonbox::decimal_fp<double>;
}  // namespace detail
FMT_END_NAMESPACE
