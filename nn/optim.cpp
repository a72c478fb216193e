// Optimizers: the shared bookkeeping (parameters, lr, per-parameter state,
// state_dict), SGD and AdamW steps, gradient clipping and the LR schedule.
//
// Legend: p = parameter, g = its gradient, lr = learning rate, wd = weight
// decay; m, v = AdamW's first and second moments, b = SGD's momentum buffer.
// Every update runs under NoGradGuard (the optimizer is not part of any
// graph) and writes into p's own memory, bumping its storage version.
#include "nn/optim.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <set>
#include <utility>

#include "autograd/ops.h"

namespace dg::nn {

namespace {

bool is_float(DType dt) { return dt == DType::f32 || dt == DType::f64; }

// The gradient of parameter i, checked against p (undefined when p has none).
Tensor grad_of(const std::string& opt, size_t i, const Tensor& p) {
  Tensor g = p.grad();
  if (!g.defined()) return g;
  DG_CHECK(g.shape() == p.shape() && g.dtype() == p.dtype() && g.device() == p.device(),
           "{}: parameter {} has shape {} ({}) but its gradient has shape {} ({})", opt, i, p.shape(), p.dtype(),
           g.shape(), g.dtype());
  return g;
}

// "param.<i>.<field>" -> (i, field); false if the key has another form.
bool parse_key(const std::string& key, size_t& index, std::string& field) {
  const std::string prefix = "param.";
  if (key.rfind(prefix, 0) != 0) return false;
  const size_t dot = key.find('.', prefix.size());
  if (dot == std::string::npos || dot == prefix.size() || dot + 1 == key.size()) return false;
  index = 0;
  for (size_t c = prefix.size(); c < dot; ++c) {
    if (key[c] < '0' || key[c] > '9' || index > 100000000) return false;
    index = index * 10 + static_cast<size_t>(key[c] - '0');
  }
  field = key.substr(dot + 1);
  return true;
}

std::string key_of(size_t i, const std::string& field) { return fmt::format("param.{}.{}", i, field); }

// Counters ("step") stay in host memory whatever the parameters' device: they
// are kernel arguments read every step, not data.
Tensor counter(int64_t value) { return scalar_tensor(static_cast<double>(value), {DType::i64}); }

}  // namespace

// ---------------------------------------------------------------- Optimizer

Optimizer::Optimizer(std::string name, std::vector<Tensor> params, double lr)
    : name_(std::move(name)), params_(std::move(params)), lr_(0) {
  set_lr(lr);
  DG_CHECK(!params_.empty(), "{}: got an empty parameter list", name_);
  std::set<const TensorImpl*> seen;
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor& p = params_[i];
    DG_CHECK(p.defined(), "{}: parameter {} is an undefined tensor", name_, i);
    DG_CHECK(p.is_leaf() && p.requires_grad(),
             "{}: parameter {} (shape {}) must be a leaf tensor that requires grad", name_, i, p.shape());
    DG_CHECK(is_float(p.dtype()), "{}: parameter {} (shape {}) has dtype {}; optimizers need f32 or f64", name_, i,
             p.shape(), p.dtype());
    DG_CHECK(seen.insert(p.impl()).second, "{}: parameter {} (shape {}) is listed more than once", name_, i,
             p.shape());
  }
  state_.resize(params_.size());
}

void Optimizer::set_lr(double lr) {
  DG_CHECK(std::isfinite(lr) && lr >= 0, "{}: invalid learning rate {} (must be finite and >= 0)", name_, lr);
  lr_ = lr;
}

void Optimizer::follow_param_device(size_t i) {
  const Device device = params_[i].device();
  for (auto& [field, t] : state_[i])
    if (t.dim() != 0 || t.dtype() != DType::i64)  // counters stay on the host
      if (t.device() != device) t = to_device(t, device);
}

void Optimizer::zero_grad() {
  for (Tensor& p : params_) p.zero_grad();
}

std::map<std::string, Tensor> Optimizer::state_dict() const {
  std::map<std::string, Tensor> out;
  out["step"] = counter(steps_);
  for (size_t i = 0; i < state_.size(); ++i)
    for (const auto& [field, t] : state_[i]) out[key_of(i, field)] = copy_of(t);
  return out;
}

// Everything is validated before anything changes: a bad dict leaves the
// optimizer as it was.
void Optimizer::load_state_dict(const std::map<std::string, Tensor>& state) {
  const std::string where = name_ + ".load_state_dict";
  const std::vector<Field> spec = fields();
  auto check_counter = [&](const std::string& key, const Tensor& t) {
    DG_CHECK(t.defined() && t.dim() == 0 && t.dtype() == DType::i64,
             "{}: '{}' must be a 0-dim i64 tensor, got shape {} ({})", where, key,
             t.defined() ? t.shape() : Shape{}, t.defined() ? t.dtype() : DType::i64);
    DG_CHECK(t.item<int64_t>() >= 0, "{}: '{}' is negative ({})", where, key, t.item<int64_t>());
  };
  auto it = state.find("step");
  DG_CHECK(it != state.end(), "{}: missing key 'step'", where);
  check_counter("step", it->second);

  std::vector<std::map<std::string, Tensor>> loaded(params_.size());
  for (const auto& [key, t] : state) {
    if (key == "step") continue;
    size_t i = 0;
    std::string field;
    DG_CHECK(parse_key(key, i, field), "{}: unexpected key '{}'", where, key);
    DG_CHECK(i < params_.size(), "{}: key '{}' names parameter {}, but the optimizer has {} parameters", where, key, i,
             params_.size());
    const Field* f = nullptr;
    for (const Field& s : spec) f = s.name == field ? &s : f;
    DG_CHECK(f != nullptr, "{}: unexpected key '{}' ({} keeps no '{}' state)", where, key, name_, field);
    const Tensor& p = params_[i];
    if (f->counter) {
      check_counter(key, t);
    } else {
      DG_CHECK(t.defined(), "{}: '{}' is an undefined tensor", where, key);
      DG_CHECK(t.shape() == p.shape() && t.dtype() == p.dtype(),
               "{}: '{}' has shape {} ({}), but parameter {} has shape {} ({})", where, key, t.shape(), t.dtype(), i,
               p.shape(), p.dtype());
    }
    loaded[i][field] = f->counter ? copy_of(to_device(t, Device::cpu())) : copy_of(to_device(t, p.device()));
  }
  // A parameter has every field or none.
  for (size_t i = 0; i < loaded.size(); ++i) {
    if (loaded[i].empty()) continue;
    for (const Field& s : spec)
      DG_CHECK(loaded[i].count(s.name), "{}: missing key '{}'", where, key_of(i, s.name));
  }
  state_ = std::move(loaded);
  steps_ = it->second.item<int64_t>();
}

// ---------------------------------------------------------------- SGD

SGD::SGD(std::vector<Tensor> params, double lr, double momentum, double dampening, double weight_decay,
         bool nesterov)
    : Optimizer("SGD", std::move(params), lr),
      momentum_(momentum),
      dampening_(dampening),
      weight_decay_(weight_decay),
      nesterov_(nesterov) {
  DG_CHECK(std::isfinite(momentum) && momentum >= 0, "SGD: invalid momentum {} (must be >= 0)", momentum);
  DG_CHECK(std::isfinite(dampening), "SGD: invalid dampening {}", dampening);
  DG_CHECK(std::isfinite(weight_decay) && weight_decay >= 0, "SGD: invalid weight_decay {} (must be >= 0)",
           weight_decay);
  DG_CHECK(!nesterov || (momentum > 0 && dampening == 0),
           "SGD: nesterov requires momentum > 0 and dampening == 0 (got momentum {}, dampening {})", momentum,
           dampening);
}

std::vector<Optimizer::Field> SGD::fields() const {
  if (momentum_ == 0) return {};
  return {{"momentum_buffer", false}};
}

// d = g + wd*p;  b = d (first update) or momentum*b + (1-dampening)*d;
// p -= lr * (nesterov ? d + momentum*b : b)        (torch.optim.SGD)
void SGD::step() {
  NoGradGuard no_grad;
  for (size_t i = 0; i < params().size(); ++i) {
    Tensor p = params()[i];
    Tensor g = grad_of(name(), i, p);
    if (!g.defined()) continue;
    Tensor d = weight_decay_ != 0 ? add(g, mul(p, weight_decay_)) : g;
    if (momentum_ != 0) {
      follow_param_device(i);
      auto& st = state_[i];
      auto found = st.find("momentum_buffer");
      if (found == st.end()) {
        st["momentum_buffer"] = copy_of(d);  // never alias the grad
      } else {
        Tensor& b = found->second;
        mul_(b, momentum_);
        add_(b, d, 1.0 - dampening_);
      }
      const Tensor& b = st["momentum_buffer"];
      d = nesterov_ ? add(d, mul(b, momentum_)) : b;
    }
    add_(p, d, -lr());
  }
  ++steps_;
}

// ---------------------------------------------------------------- AdamW

std::vector<ParamGroup> decay_groups(const std::vector<Tensor>& params, double weight_decay) {
  std::vector<ParamGroup> groups{{{}, weight_decay}, {{}, 0.0}};
  for (const Tensor& p : params) groups[p.dim() >= 2 ? 0 : 1].params.push_back(p);
  return groups;
}

namespace {

std::vector<Tensor> flatten(const std::vector<ParamGroup>& groups) {
  std::vector<Tensor> out;
  for (const ParamGroup& g : groups) out.insert(out.end(), g.params.begin(), g.params.end());
  return out;
}

}  // namespace

AdamW::AdamW(std::vector<Tensor> params, double lr, double beta1, double beta2, double eps, double weight_decay)
    : AdamW(std::vector<ParamGroup>{ParamGroup{std::move(params), weight_decay}}, lr, beta1, beta2, eps) {}

AdamW::AdamW(std::vector<ParamGroup> groups, double lr, double beta1, double beta2, double eps)
    : Optimizer("AdamW", flatten(groups), lr), beta1_(beta1), beta2_(beta2), eps_(eps) {
  DG_CHECK(beta1 >= 0 && beta1 < 1, "AdamW: invalid beta1 {} (must be in [0, 1))", beta1);
  DG_CHECK(beta2 >= 0 && beta2 < 1, "AdamW: invalid beta2 {} (must be in [0, 1))", beta2);
  DG_CHECK(std::isfinite(eps) && eps >= 0, "AdamW: invalid eps {} (must be >= 0)", eps);
  for (size_t k = 0; k < groups.size(); ++k) {
    const double wd = groups[k].weight_decay;
    DG_CHECK(std::isfinite(wd) && wd >= 0, "AdamW: invalid weight_decay {} in group {} (must be >= 0)", wd, k);
    weight_decay_.insert(weight_decay_.end(), groups[k].params.size(), wd);
  }
}

std::vector<Optimizer::Field> AdamW::fields() const {
  return {{"exp_avg", false}, {"exp_avg_sq", false}, {"step", true}};
}

// Per parameter with a grad: t += 1, then the fused backend kernel
// (adamw_step_, Backend::adamw_step) updates p, m and v in one pass over memory.
void AdamW::step() {
  NoGradGuard no_grad;
  for (size_t i = 0; i < params().size(); ++i) {
    const Tensor& p = params()[i];
    Tensor g = grad_of(name(), i, p);
    if (!g.defined()) continue;
    DG_CHECK(p.is_contiguous(), "AdamW: parameter {} of shape {} is not contiguous (strides {})", i, p.shape(),
             p.strides());
    g = to_contiguous(g);
    follow_param_device(i);
    auto& st = state_[i];
    if (st.empty()) st = {{"exp_avg", zeros_like(p)}, {"exp_avg_sq", zeros_like(p)}, {"step", counter(0)}};
    const int64_t t = st["step"].item<int64_t>() + 1;
    st["step"] = counter(t);
    Tensor pp = p, m = st["exp_avg"], v = st["exp_avg_sq"];  // handles: the update is in place
    adamw_step_(pp, g, m, v, {lr(), beta1_, beta2_, eps_, weight_decay_[i]}, t);
  }
  ++steps_;
}

// ---------------------------------------------------------------- clipping

// norm = sqrt(sum_p sum(g_p^2)) in f64; c = max_norm / (norm + 1e-6);
// g *= c for every grad when c < 1 (torch.nn.utils.clip_grad_norm_).
double clip_grad_norm(const std::vector<Tensor>& params, double max_norm) {
  DG_CHECK(max_norm >= 0, "clip_grad_norm: max_norm must be >= 0, got {}", max_norm);
  NoGradGuard no_grad;
  std::vector<Tensor> grads;
  // sum(g^2) in f64 on each grad's device, added up there (in parameter
  // order), then one read per device.
  std::vector<Tensor> sums;
  for (const Tensor& p : params) {
    Tensor g = p.defined() ? p.grad() : Tensor();
    if (!g.defined()) continue;
    Tensor s = sum(square(to_dtype(g, DType::f64)));
    auto same = std::find_if(sums.begin(), sums.end(), [&](const Tensor& t) { return t.device() == g.device(); });
    if (same == sums.end()) sums.push_back(s);
    else *same = add(*same, s);
    grads.push_back(g);
  }
  double sum_sq = 0;
  for (const Tensor& s : sums) sum_sq += s.item<double>();
  const double norm = std::sqrt(sum_sq);
  if (!std::isfinite(norm)) return norm;
  const double coef = max_norm / (norm + 1e-6);
  if (coef < 1.0)
    for (Tensor& g : grads) mul_(g, coef);
  return norm;
}

// ---------------------------------------------------------------- schedule

double warmup_cosine_lr(int64_t step, int64_t warmup, int64_t total, double max_lr, double min_lr) {
  DG_CHECK(step >= 0 && warmup >= 0 && total >= warmup,
           "warmup_cosine_lr: needs step >= 0 and 0 <= warmup <= total, got step {}, warmup {}, total {}", step,
           warmup, total);
  if (step < warmup) return max_lr * static_cast<double>(step + 1) / static_cast<double>(warmup);
  if (step >= total) return min_lr;
  const double progress = static_cast<double>(step - warmup) / static_cast<double>(total - warmup);
  return min_lr + (max_lr - min_lr) * 0.5 * (1.0 + std::cos(std::numbers::pi * progress));
}

}  // namespace dg::nn
