#include "data/tokenizer.h"

#include "tensor/error.h"

namespace dg::data {

std::vector<int64_t> encode(std::string_view text) {
  std::vector<int64_t> ids(text.size());
  // Through unsigned char: a plain char may be signed, and byte 0xE2 must be 226.
  for (size_t i = 0; i < text.size(); ++i) ids[i] = static_cast<unsigned char>(text[i]);
  return ids;
}

std::string decode(const std::vector<int64_t>& tokens) {
  std::string text(tokens.size(), '\0');
  for (size_t i = 0; i < tokens.size(); ++i) {
    int64_t t = tokens[i];
    DG_CHECK(t >= 0 && t < kVocabSize, "decode: token {} at position {} is outside the byte vocabulary [0, {})", t, i,
             kVocabSize);
    text[i] = static_cast<char>(static_cast<unsigned char>(t));
  }
  return text;
}

}  // namespace dg::data
