#include "train/evaluate.h"

#include "autograd/ops.h"

namespace dg::train {

EvalResult evaluate(models::LanguageModel& model, const data::Corpus& corpus, int64_t B, int64_t T, int64_t max_batches,
                    data::Split split) {
  const bool was_training = model.is_training();
  model.eval();
  NoGradGuard no_grad;
  const int64_t n = std::min(max_batches, corpus.num_eval_batches(B, T, split));
  DG_CHECK(n > 0, "evaluate: the {} split of {} ({} bytes) has no full window of {} x {} bytes", data::split_name(split),
           corpus.source(), corpus.size(split), B, T + 1);
  const Device device = models::device_of(model);
  EvalResult r;
  double loss_sum = 0, flops = 0;
  std::array<int64_t, 5> correct{};
  for (int64_t i = 0; i < n; ++i) {
    data::Batch b = corpus.eval_batch(i, B, T, split);  // on the host; b.y and the levels stay there
    Tensor logits = model.forward(to_device(b.x, device));
    flops += model.last_forward_flops_per_token();
    loss_sum += cross_entropy(logits, to_device(b.y, device), -100, 0.0, Reduction::sum).item<double>();
    std::vector<int64_t> level = b.answer_level.to_vector<int64_t>();
    bool any = false;
    for (int64_t l : level) any |= l > 0;
    if (any) {
      std::vector<int64_t> pred = argmax(logits, -1).to_vector<int64_t>(), y = b.y.to_vector<int64_t>();
      for (size_t j = 0; j < level.size(); ++j)
        if (level[j] >= 1 && level[j] <= 4) {
          ++r.answers_by_level[level[j]];
          correct[level[j]] += pred[j] == y[j];
        }
    }
    r.tokens += B * T;
  }
  r.loss = loss_sum / static_cast<double>(r.tokens);
  r.flops_per_token = flops / static_cast<double>(n);
  int64_t all = 0, ok = 0;
  for (int l = 1; l <= 4; ++l) {
    r.accuracy_by_level[l] = r.answers_by_level[l] ? static_cast<double>(correct[l]) / r.answers_by_level[l] : 0.0;
    all += r.answers_by_level[l];
    ok += correct[l];
  }
  r.answer_accuracy = all ? static_cast<double>(ok) / static_cast<double>(all) : 0.0;
  model.train(was_training);
  return r;
}

}  // namespace dg::train
