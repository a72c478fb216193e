#include "train/schedule.h"

#include <algorithm>

#include "nn/optim.h"

namespace dg::train {

double Schedule::lr_at(int64_t step, double train_flops) const {
  if (flop_budget <= 0)
    return nn::warmup_cosine_lr(step, std::min(warmup, steps), std::max<int64_t>(steps, 1), lr, min_lr);
  // On the share of the budget spent, at a resolution of 1/1000 of a step.
  constexpr int64_t kScale = 1000;
  const double share = std::min(1.0, train_flops / flop_budget);
  const auto at = static_cast<int64_t>(share * static_cast<double>(steps * kScale));
  return nn::warmup_cosine_lr(at, std::min(warmup, steps) * kScale, std::max<int64_t>(steps, 1) * kScale, lr, min_lr);
}

}  // namespace dg::train
