#include "tensor/error.h"

namespace dg {

void throw_internal_error(const char* cond, const char* file, int line, const std::string& msg) {
  throw Error(fmt::format("internal error in dyngrad: `{}` failed at {}:{}{}{}", cond, file, line,
                          msg.empty() ? "" : ": ", msg));
}

}  // namespace dg
