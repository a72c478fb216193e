#pragma once
// Errors. A user mistake (bad shape, dtype, index, file) throws dg::Error with a
// message that names the op and prints the shapes; the library never aborts.
//
//   DG_CHECK(a.dim() == 2, "matmul: expected a 2-D tensor, got shape {}", a.shape());
//
// DG_ASSERT is for internal invariants: it also throws (so a bug in dyngrad
// surfaces as an exception with file and line, never as a crash).
#include <fmt/format.h>

#include <stdexcept>
#include <string>
#include <string_view>

namespace dg {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

[[noreturn]] void throw_internal_error(const char* cond, const char* file, int line, const std::string& msg);

// Text read from a file or other input, made safe to quote in an error: at
// most max_bytes of it (cut at a UTF-8 character boundary, with the full
// length said after "..."), backslash and control characters escaped, so a
// hostile input can neither make a message huge nor put escape codes in it.
//   DG_CHECK(ok, "{}: unknown dtype '{}'", path, dg::excerpt(name));
std::string excerpt(std::string_view text, size_t max_bytes = 96);

}  // namespace dg

#define DG_CHECK(cond, ...)                                  \
  do {                                                       \
    if (!(cond)) [[unlikely]]                                \
      throw ::dg::Error(::fmt::format(__VA_ARGS__));         \
  } while (0)

#define DG_ASSERT(cond, ...)                                                              \
  do {                                                                                    \
    if (!(cond)) [[unlikely]]                                                             \
      ::dg::throw_internal_error(#cond, __FILE__, __LINE__, ::fmt::format("" __VA_ARGS__)); \
  } while (0)
