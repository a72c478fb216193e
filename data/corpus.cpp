#include "data/corpus.h"

#include <cmath>

#include "tensor/creation.h"

namespace dg::data {

std::string_view split_name(Split s) { return s == Split::train ? "train" : "val"; }

void Corpus::check_window(Split split, int64_t B, int64_t T) const {
  DG_CHECK(B > 0 && T > 0, "{}: batch size B and sequence length T must be positive, got B={} T={}", source_, B, T);
  // A window is T inputs plus the one byte after them (the last target).
  DG_CHECK(size(split) > T,
           "{}: the {} split is too small for a window of T={}: it has {} bytes, a window needs {} "
           "(train split {} bytes, val split {} bytes)",
           source_, split_name(split), T, size(split), static_cast<uint64_t>(T) + 1, size(Split::train),
           size(Split::val));
  DG_CHECK(B <= kMaxBatchTokens / T, "{}: a batch of B={} T={} exceeds the limit of {} tokens", source_, B, T,
           kMaxBatchTokens);
}

// x[b] = bytes[start_b .. start_b+T), y[b] = bytes[start_b+1 .. start_b+T],
// answer_level[b][t] = level of the byte y[b][t].
Batch Corpus::make_batch(Split split, const std::vector<int64_t>& starts, int64_t T) const {
  const std::string& text = bytes(split);
  const std::vector<int8_t>& lv = levels(split);
  int64_t B = static_cast<int64_t>(starts.size());
  std::vector<int64_t> x(B * T), y(B * T), level(B * T, -1);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t t = 0; t < T; ++t) {
      int64_t p = starts[b] + t;
      x[b * T + t] = static_cast<unsigned char>(text[p]);
      y[b * T + t] = static_cast<unsigned char>(text[p + 1]);
      if (!lv.empty()) level[b * T + t] = lv[p + 1];
    }
  }
  return {from_vector<int64_t>(x, {B, T}), from_vector<int64_t>(y, {B, T}), from_vector<int64_t>(level, {B, T})};
}

Batch Corpus::sample(Split split, int64_t B, int64_t T, Generator& gen) const {
  check_window(split, B, T);
  // Row b uses counter base+b; its first two words give the start.
  uint64_t base = gen.take(static_cast<uint64_t>(B));
  uint64_t n_starts = static_cast<uint64_t>(size(split) - T);  // starts 0 .. size-T-1
  std::vector<int64_t> starts(B);
  for (int64_t b = 0; b < B; ++b) {
    std::array<uint32_t, 4> w = philox4x32(gen.seed(), base + static_cast<uint64_t>(b));
    uint64_t bits = (static_cast<uint64_t>(w[0]) << 32) | w[1];
    starts[b] = static_cast<int64_t>(bits % n_starts);
  }
  return make_batch(split, starts, T);
}

int64_t Corpus::num_eval_batches(int64_t B, int64_t T, Split split) const {
  check_window(split, B, T);
  // Rows start at multiples of T and need T+1 bytes: row r fits while r*T + T + 1 <= size.
  int64_t rows = (size(split) - 1) / T;
  return rows / B;
}

Batch Corpus::eval_batch(int64_t i, int64_t B, int64_t T, Split split) const {
  int64_t n = num_eval_batches(B, T, split);
  DG_CHECK(i >= 0 && i < n, "{}: eval batch {} is out of range: the {} split ({} bytes) holds {} batches of B={} T={}",
           source_, i, split_name(split), size(split), n, B, T);
  std::vector<int64_t> starts(B);
  for (int64_t b = 0; b < B; ++b) starts[b] = (i * B + b) * T;
  return make_batch(split, starts, T);
}

double Corpus::unigram_entropy(Split split) const {
  const std::string& text = bytes(split);
  DG_CHECK(!text.empty(), "{}: unigram_entropy of the empty {} split", source_, split_name(split));
  std::array<int64_t, 256> count{};
  for (char c : text) ++count[static_cast<unsigned char>(c)];
  double n = static_cast<double>(text.size()), h = 0;
  for (int64_t c : count)
    if (c > 0) h -= (static_cast<double>(c) / n) * std::log(static_cast<double>(c) / n);
  return h;
}

double Corpus::bigram_entropy(Split split) const {
  const std::string& text = bytes(split);
  DG_CHECK(text.size() >= 2, "{}: bigram_entropy needs 2 bytes in the {} split, got {}", source_, split_name(split),
           text.size());
  std::vector<int64_t> pair(256 * 256, 0);
  std::array<int64_t, 256> first{};
  for (size_t i = 0; i + 1 < text.size(); ++i) {
    const auto a = static_cast<unsigned char>(text[i]), b = static_cast<unsigned char>(text[i + 1]);
    ++pair[a * 256 + b], ++first[a];
  }
  const double n = static_cast<double>(text.size() - 1);
  double h = 0;
  for (size_t a = 0; a < 256; ++a)
    for (size_t b = 0; b < 256; ++b)
      if (const auto c = static_cast<double>(pair[a * 256 + b]); c > 0)
        h -= c / n * std::log(c / static_cast<double>(first[a]));
  return h;
}

std::string Corpus::text(Split split, int64_t max_bytes) const {
  DG_CHECK(max_bytes >= 0, "{}: text(): max_bytes must be >= 0, got {}", source_, max_bytes);
  return bytes(split).substr(0, static_cast<size_t>(max_bytes));
}

}  // namespace dg::data
