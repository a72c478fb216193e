#pragma once
// Corpus: the byte stream of a train split and a validation split, shared by
// every language-model data source (TextCorpus from a file or string,
// SyntheticCorpus of arithmetic), so training code takes a `const Corpus&`.
//
//   dg::data::TextCorpus corpus = dg::data::TextCorpus::from_file("input.txt");
//   dg::Generator gen(1);
//   dg::data::Batch b = corpus.sample(dg::data::Split::train, 8, 64, gen);  // b.x, b.y (8,64) i64
//   for (int64_t i = 0; i < corpus.num_eval_batches(8, 64); ++i)
//     dg::data::Batch v = corpus.eval_batch(i, 8, 64);                    // same windows every run
//
// B = batch size (rows), T = sequence length (tokens per row).
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tensor/rng.h"
#include "tensor/tensor.h"

namespace dg::data {

enum class Split { train, val };
std::string_view split_name(Split s);

// One batch of next-byte prediction: y[b][t] is the byte after x[b][t].
// answer_level[b][t] is the difficulty level (1..4) of the target byte
// y[b][t] when it is part of an arithmetic answer (SyntheticCorpus), else -1
// (always -1 for plain text).
struct Batch {
  Tensor x;             // (B,T) i64
  Tensor y;             // (B,T) i64
  Tensor answer_level;  // (B,T) i64
};

// The most tokens (B*T) one batch may hold: three (B,T) i64 tensors of 8 GiB.
inline constexpr int64_t kMaxBatchTokens = int64_t{1} << 30;

class Corpus {
 public:
  virtual ~Corpus() = default;

  // A name for messages: the file path, "<string>", or "synthetic corpus (seed 3)".
  const std::string& source() const { return source_; }
  int64_t size(Split s) const { return static_cast<int64_t>(bytes(s).size()); }
  const std::string& bytes(Split s) const { return bytes_[index(s)]; }
  // Per-byte answer levels (1..4, or -1); empty when the corpus has none.
  const std::vector<int8_t>& levels(Split s) const { return levels_[index(s)]; }

  // B windows of T+1 bytes at uniformly random starts inside the split, drawn
  // from `gen` (B counters of Philox): the same batch for the same generator
  // state on any machine and thread count. The split must hold T+1 bytes.
  Batch sample(Split split, int64_t B, int64_t T, Generator& gen) const;

  // Fixed evaluation windows: batch i, row b starts at byte (i*B + b)*T, so
  // batches 0..num_eval_batches()-1 tile the split in order (the last partial
  // batch is dropped) and validation loss is comparable across runs.
  int64_t num_eval_batches(int64_t B, int64_t T, Split split = Split::val) const;
  Batch eval_batch(int64_t i, int64_t B, int64_t T, Split split = Split::val) const;

  // Entropy of the byte distribution of a split in nats/byte: the loss of the
  // best model that ignores context (a baseline for the validation loss).
  double unigram_entropy(Split split = Split::train) const;
  // Conditional entropy H(next byte | byte) of a split in nats/byte: the loss
  // of the best model that sees only the previous byte (what a Mixture-of-Blocks
  // whose tokens all return at step 0 can reach).
  double bigram_entropy(Split split = Split::train) const;

  // The first max_bytes bytes of a split (e.g. for prompts).
  std::string text(Split split, int64_t max_bytes) const;

 protected:
  // Protected so a Corpus is never sliced out of a TextCorpus/SyntheticCorpus;
  // moves are declared because the virtual destructor would suppress them.
  Corpus() = default;
  Corpus(const Corpus&) = default;
  Corpus(Corpus&&) noexcept = default;
  Corpus& operator=(const Corpus&) = default;
  Corpus& operator=(Corpus&&) noexcept = default;
  static size_t index(Split s) { return s == Split::train ? 0 : 1; }

  std::string source_;
  std::array<std::string, 2> bytes_;
  std::array<std::vector<int8_t>, 2> levels_;

 private:
  void check_window(Split split, int64_t B, int64_t T) const;
  Batch make_batch(Split split, const std::vector<int64_t>& starts, int64_t T) const;
};

// A stream of random 32-bit words from Philox 4x32-10 with a fixed key: word k
// is word k%4 of philox4x32(seed, k/4), so the stream depends only on the seed.
class PhiloxStream {
 public:
  explicit PhiloxStream(uint64_t seed, uint64_t counter = 0) : seed_(seed), counter_(counter) {}
  uint32_t next() {
    if (used_ == 4) block_ = philox4x32(seed_, counter_++), used_ = 0;
    return block_[used_++];
  }
  // Uniform integer in [lo, hi] (inclusive), from 64 random bits; the modulo
  // bias is below range/2^64, far beneath anything measurable here.
  int64_t uniform_int(int64_t lo, int64_t hi) {
    uint64_t bits = (static_cast<uint64_t>(next()) << 32) | next();
    return lo + static_cast<int64_t>(bits % static_cast<uint64_t>(hi - lo + 1));
  }

 private:
  uint64_t seed_, counter_;
  std::array<uint32_t, 4> block_{};
  int used_ = 4;
};

}  // namespace dg::data
