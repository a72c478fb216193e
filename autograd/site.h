#pragma once
// Site: where an op was called from (file, line, function), for anomaly mode
// and the DOT export. Every differentiable op takes it as a defaulted last
// argument, `Site site = Site::current()`, so each node remembers the user's
// line that created it:
//
//   Tensor y = dg::log(x);          // y.grad_fn()->site().line() is this line
//
// It does what std::source_location does, built on the compiler builtins that
// std::source_location itself is made of (__builtin_FILE, __builtin_LINE,
// __builtin_FUNCTION): as default arguments they take the values of the call
// site, also through a defaulted argument of the caller. One definition for
// GCC and Clang: Clang 14 cannot compile libstdc++ 12's <source_location>
// (it needs __builtin_source_location, which Clang has from version 15).
#include <cstdint>

namespace dg {

class Site {
 public:
  static constexpr Site current(const char* file = __builtin_FILE(), uint_least32_t line = __builtin_LINE(),
                                const char* function = __builtin_FUNCTION()) noexcept {
    Site s;
    s.file_ = file, s.line_ = line, s.function_ = function;
    return s;
  }
  constexpr Site() noexcept = default;

  constexpr const char* file_name() const noexcept { return file_; }
  constexpr uint_least32_t line() const noexcept { return line_; }
  constexpr const char* function_name() const noexcept { return function_; }

 private:
  const char* file_ = "";
  uint_least32_t line_ = 0;
  const char* function_ = "";
};

}  // namespace dg
