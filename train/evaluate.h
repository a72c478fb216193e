#pragma once
// Validation of any LanguageModel on a corpus: mean next-byte cross-entropy
// over the fixed evaluation windows (the same every run), and, on the
// synthetic arithmetic corpus, greedy answer accuracy per difficulty level.
//
//   train::EvalResult r = train::evaluate(model, corpus, /*B=*/16, /*T=*/128, /*max_batches=*/8);
//   fmt::print("val {:.3f} nats, answers {:.1%}\n", r.loss, r.answer_accuracy);
#include <array>
#include <cstdint>

#include "data/corpus.h"
#include "models/lm.h"

namespace dg::train {

struct EvalResult {
  double loss = 0;                // nats per byte
  double answer_accuracy = 0;     // over all answer bytes (0 when the corpus has none)
  std::array<double, 5> accuracy_by_level{};  // index 1..4
  std::array<int64_t, 5> answers_by_level{};  // answer bytes seen per level
  int64_t tokens = 0;
  double flops_per_token = 0;     // forward FLOPs the model reported
};

// Runs in eval mode without grad; restores the model's training flag.
EvalResult evaluate(models::LanguageModel& model, const data::Corpus& corpus, int64_t B, int64_t T, int64_t max_batches,
                    data::Split split = data::Split::val);

}  // namespace dg::train
