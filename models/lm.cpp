#include "models/lm.h"

#include "autograd/ops.h"

namespace dg::models {

LossValues read_values(const LossOutput& out) {
  Tensors parts = {out.objective.detach(), out.lm.detach()};
  for (const auto& [name, t] : out.device_stats) parts.push_back(t.detach());
  for (Tensor& t : parts) t = to_dtype(t, DType::f64);
  const std::vector<double> v = stack(parts).to_vector<double>();  // the one copy to the host
  LossValues r{v[0], v[1], out.stats};
  size_t i = 2;
  for (const auto& [name, t] : out.device_stats) r.stats[name] = v[i++];
  return r;
}

Device device_of(const nn::Module& m) {
  const auto params = m.parameters();
  return params.empty() ? Device::cpu() : params.front().device();
}

}  // namespace dg::models
