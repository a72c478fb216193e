#pragma once
// The tour's examples check what they demonstrate: each claim is printed with
// "ok" or "FAILED", and the program exits non-zero if any claim failed, so
// ctest catches a tour that no longer tells the truth.
#include <fmt/core.h>

#include <string>

#include "tensor/error.h"

namespace tour {

class Checks {
 public:
  void expect(bool ok, const std::string& claim) {
    fmt::print("  [{}] {}\n", ok ? "ok" : "FAILED", claim);
    failed_ += ok ? 0 : 1;
  }
  int exit_code() const {
    if (failed_) fmt::print("{} claim(s) failed\n", failed_);
    return failed_ ? 1 : 0;
  }

 private:
  int failed_ = 0;
};

// The message of the dg::Error that f() throws, or "" when it throws none.
template <class F>
std::string error_message(F&& f) {
  try {
    f();
  } catch (const dg::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace tour
