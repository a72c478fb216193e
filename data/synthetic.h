#pragma once
// SyntheticCorpus: integer arithmetic of graded difficulty, generated from a
// seed (no file needed), so adaptive-depth models have easy and hard tokens to
// tell apart and evaluation can report accuracy per difficulty level.
//
// Format: one problem per line, "<expression>=<result>\n", ASCII only.
//   level 1:   7*8=56          3-9=-6
//   level 2:   47+58=105       12*90=1080
//   level 3:   347-958=-611    (120+107)*305=69235
//   level 4:   4821*3307=15943047    9120-(4410*2313)=-10191210
// - Level L in 1..4 is the number of digits of every operand (level 1: 0..9;
//   level L > 1: 10^(L-1) .. 10^L - 1). Each line's level is uniform over 1..4,
//   so the four levels have the same number of lines.
// - Ops: '+', '-', '*' (uniform). Operands are never negative; a result may be
//   (written with a leading '-').
// - At levels 3 and 4, one line in four has three operands with one pair in
//   parentheses: "(a op b) op c" or "a op (b op c)"; the pair is computed first.
// - Answer bytes: the bytes after '=' up to and including the '\n'. levels()
//   holds, for every byte, the line's level if it is an answer byte, else -1.
//   Batch::answer_level gives it for each target y[b][t].
// - Train and val come from different seeds (seed and seed ^ kValSeedMix).
//   Level 3 and 4 val lines that also occur in train are dropped, so those
//   levels measure generalisation. Levels 1 and 2 have only 300 and 24300
//   possible lines, so train covers (nearly) all of them: at those levels val
//   lines do repeat train lines by construction.
//
//   dg::data::SyntheticCorpus corpus(/*seed=*/1);            // ~2 MB train, ~200 KB val
//   dg::Generator gen(0);
//   dg::data::Batch b = corpus.sample(dg::data::Split::train, 32, 64, gen);
//   // loss on targets where b.answer_level == 3 -> accuracy at level 3
#include <cstdint>
#include <string>

#include "data/corpus.h"

namespace dg::data {

constexpr int kMinLevel = 1, kMaxLevel = 4;

struct ArithmeticLine {
  std::string text;  // e.g. "47+58=105\n"
  int level = 1;
  int64_t answer = 0;
};

// One random line at the given level (1..4), drawn from `rng`.
ArithmeticLine random_arithmetic_line(PhiloxStream& rng, int level);
// One random line at a uniformly random level.
ArithmeticLine random_arithmetic_line(PhiloxStream& rng);

class SyntheticCorpus : public Corpus {
 public:
  static constexpr uint64_t kValSeedMix = 0x9E3779B97F4A7C15ull;

  // Whole lines are generated until each split holds at least its byte count.
  explicit SyntheticCorpus(uint64_t seed = 0, int64_t train_bytes = 2'000'000, int64_t val_bytes = 200'000);

  uint64_t seed() const { return seed_; }

 private:
  uint64_t seed_;
};

}  // namespace dg::data
