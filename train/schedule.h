#pragma once
// The learning-rate schedule of a training run: linear warmup, then cosine
// decay to min_lr (nn::warmup_cosine_lr), either over the step count or over
// the share of a FLOP budget spent. The second keeps a model whose cost per
// step changes during training (MoB's depth) on a schedule that ends exactly
// at the budget.
//
//   train::Schedule s{.lr = 3e-3, .min_lr = 3e-4, .warmup = 50, .steps = 500};
//   double lr = s.lr_at(step, train_flops);              // by steps
//   s.flop_budget = 1e12;                                 // by the share of 1e12 FLOPs spent,
//   lr = s.lr_at(step, train_flops);                      // scaled to 500 "steps"
#include <cstdint>

namespace dg::train {

struct Schedule {
  double lr = 3e-3;       // peak, reached after warmup
  double min_lr = 3e-4;   // at the end
  int64_t warmup = 50;    // steps (or budget share times steps)
  int64_t steps = 500;
  double flop_budget = 0; // > 0: schedule on the share of this budget spent
  double lr_at(int64_t step, double train_flops) const;
};

}  // namespace dg::train
