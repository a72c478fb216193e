#include "models/generate.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "autograd/ops.h"

namespace dg::models {

const config::Table<SampleOptions>& sample_options_table() {
  using S = SampleOptions;
  static const config::Table<S> t = {
      config::integer<S>("max_new_tokens", "--tokens", &S::max_new_tokens, 0, INT64_MAX,
                         "tokens to generate (past the context the window slides)"),
      config::real<S>("temperature", "--temperature", &S::temperature, {0, config::kInf}, "0 = greedy"),
      config::integer<S>("top_k", "--top-k", &S::top_k, 0, INT64_MAX, "keep the k most likely tokens (0 = all)"),
      config::seed<S>("seed", "--seed", &S::seed, "sampling seed"),
      config::integer<S>("stop_token", "", &S::stop_token, -1, INT64_MAX, "stop after this token (-1: never)"),
  };
  return t;
}

int64_t sample_token(const std::vector<double>& logits, double temperature, int64_t top_k, double u) {
  const int64_t V = static_cast<int64_t>(logits.size());
  DG_CHECK(V > 0, "sample: empty logits");
  if (temperature <= 0.0) return std::max_element(logits.begin(), logits.end()) - logits.begin();
  // Keep the top_k largest (ties broken by lower id), softmax over them at temperature.
  std::vector<int64_t> order(V);
  std::iota(order.begin(), order.end(), 0);
  const int64_t k = top_k > 0 ? std::min(top_k, V) : V;
  std::partial_sort(order.begin(), order.begin() + k, order.end(),
                    [&](int64_t a, int64_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); });
  const double m = logits[order[0]];
  std::vector<double> p(k);
  double total = 0;
  for (int64_t i = 0; i < k; ++i) total += p[i] = std::exp((logits[order[i]] - m) / temperature);
  double acc = 0, target = u * total;
  for (int64_t i = 0; i < k; ++i) {
    acc += p[i];
    if (target < acc) return order[i];
  }
  return order[k - 1];
}

std::vector<int64_t> generate(LanguageModel& model, const std::vector<int64_t>& prompt, const SampleOptions& opt) {
  DG_CHECK(!prompt.empty(), "generate: the prompt is empty (give at least one token)");
  config::check_ranges(sample_options_table(), opt, "generate");
  model.eval();
  NoGradGuard no_grad;
  Generator gen(opt.seed);
  const int64_t context = model.block_size();
  const Device device = device_of(model);       // token ids go there; one logits row per token comes back
  std::vector<int64_t> all = prompt;  // prompt and new tokens
  std::unique_ptr<DecodeState> state;
  // Decodes the last `context` tokens of `all` in a fresh state (the prompt,
  // and every step once the context is full: the window slides).
  auto restart = [&] {
    const int64_t n = std::min<int64_t>(context, static_cast<int64_t>(all.size()));
    state = model.start_decoding(1);
    return model.decode(*state, from_vector<int64_t>(std::vector<int64_t>(all.end() - n, all.end()), {1, n}, device));
  };
  Tensor logits = restart();
  std::vector<int64_t> out;
  while (static_cast<int64_t>(out.size()) < opt.max_new_tokens) {
    const std::vector<double> last = select(select(logits, 0, 0), 0, logits.size(1) - 1).to_vector<double>();  // (V)
    const double u = rand({1}, {DType::f64}, &gen).item<double>();
    const int64_t tok = sample_token(last, opt.temperature, opt.top_k, u);
    out.push_back(tok), all.push_back(tok);
    if (tok == opt.stop_token || static_cast<int64_t>(out.size()) == opt.max_new_tokens) break;
    logits = state->position < context ? model.decode(*state, from_vector<int64_t>({tok}, {1, 1}, device)) : restart();
  }
  return out;
}

}  // namespace dg::models
