#pragma once
// Byte-level tokenizer: every byte of the text is one token, so the vocabulary
// is the 256 byte values and any text (ASCII, UTF-8, or arbitrary bytes)
// round-trips exactly. Multi-byte UTF-8 characters become several tokens.
//
//   std::vector<int64_t> ids = dg::data::encode("12+7=");  // {49, 50, 43, 55, 61}
//   std::string s = dg::data::decode(ids);                // "12+7="
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace dg::data {

constexpr int64_t kVocabSize = 256;

// Token i is the unsigned value of byte i (0..255).
std::vector<int64_t> encode(std::string_view text);

// Inverse of encode(). A token outside [0, kVocabSize) is a dg::Error naming
// its position and value.
std::string decode(const std::vector<int64_t>& tokens);

}  // namespace dg::data
