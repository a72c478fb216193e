#include "tensor/error.h"

#include <algorithm>

namespace dg {

void throw_internal_error(const char* cond, const char* file, int line, const std::string& msg) {
  throw Error(fmt::format("internal error in dyngrad: `{}` failed at {}:{}{}{}", cond, file, line,
                          msg.empty() ? "" : ": ", msg));
}

std::string excerpt(std::string_view text, size_t max_bytes) {
  size_t n = std::min(text.size(), max_bytes);
  while (n > 0 && n < text.size() && (static_cast<unsigned char>(text[n]) & 0xC0) == 0x80) --n;  // not mid-character
  std::string out;
  for (char c : text.substr(0, n)) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else if (c == '\t') out += "\\t";
    else if (u < 0x20 || u == 0x7f) out += fmt::format("\\x{:02x}", u);
    else out += c;
  }
  if (n < text.size()) out += fmt::format("... ({} bytes)", text.size());
  return out;
}

}  // namespace dg
