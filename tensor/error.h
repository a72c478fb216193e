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

namespace dg {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

[[noreturn]] void throw_internal_error(const char* cond, const char* file, int line, const std::string& msg);

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
