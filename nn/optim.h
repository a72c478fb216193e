#pragma once
// Optimizers (namespace dg::nn): SGD (momentum, Nesterov), AdamW (decoupled
// weight decay, fused kernel), gradient clipping by global norm, and the
// warmup + cosine learning-rate schedule. Semantics follow torch.optim
// (PyTorch 1.13, foreach=False); tests/test_optim.cpp compares against it.
//
//   auto groups = nn::decay_groups(model.parameters(), 0.1);  // 2-D weights decay, the rest not
//   nn::AdamW opt(groups, /*lr=*/3e-4);
//   nn::WarmupCosine sched{.warmup = 100, .total = 5000, .max_lr = 3e-4, .min_lr = 3e-5};
//   for (int64_t it = 0; it < 5000; ++it) {
//     opt.set_lr(sched(it));
//     opt.zero_grad();
//     for (int k = 0; k < accum; ++k) {              // gradient accumulation:
//       Tensor loss = model.loss(batch(k)) / accum;  // scale each micro-batch loss by 1/accum,
//       loss.backward();                             // grads add up (+=) across backward() calls,
//     }                                              // then one step per `accum` micro-batches.
//     nn::clip_grad_norm(model.parameters(), 1.0);
//     opt.step();
//   }
//
// Rules shared by every optimizer:
//  - Parameters are leaf tensors that require grad (f32 or f64), each listed
//    once. A parameter whose grad is undefined is skipped by step(): neither
//    it nor its state changes (as in PyTorch).
//  - Updates run in place under NoGradGuard and bump the parameter's storage
//    version (so a graph that saved the old value refuses to backward).
//  - State is created on a parameter's first update. state_dict() returns
//    copies, named "step" (0-dim i64: number of step() calls) and
//    "param.<i>.<field>" for parameter i (in construction order, groups
//    flattened in order): SGD "momentum_buffer" (with momentum != 0); AdamW
//    "exp_avg", "exp_avg_sq" (the parameter's shape and dtype) and "step"
//    (0-dim i64: updates of that parameter, its bias-correction count).
//    load_state_dict() copies values in and checks every name, shape and
//    dtype (dg::Error naming the key); hyper-parameters (lr, betas, ...) are
//    not part of the state: construct the optimizer with the same ones.
//  - Devices: state tensors live on their parameter's device (made with
//    zeros_like(p); moved by step() if the parameter was moved with
//    Module::to, loaded onto it); the "step" counters stay on the host.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace dg::nn {

class Optimizer {
 public:
  Optimizer(std::string name, std::vector<Tensor> params, double lr);
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // One update of every parameter that has a gradient.
  virtual void step() = 0;
  // Drops every parameter's gradient (Tensor::zero_grad), so the next
  // backward starts from nothing.
  void zero_grad();

  double lr() const { return lr_; }
  void set_lr(double lr);  // >= 0, else dg::Error
  int64_t steps() const { return steps_; }  // step() calls so far
  const std::vector<Tensor>& params() const { return params_; }
  const std::string& name() const { return name_; }

  virtual std::map<std::string, Tensor> state_dict() const;
  virtual void load_state_dict(const std::map<std::string, Tensor>& state);

 protected:
  // A per-parameter state field: the parameter's shape and dtype, or a
  // 0-dim i64 counter.
  struct Field {
    std::string name;
    bool counter = false;
  };
  // Moves parameter i's state tensors to its device (after Module::to moved
  // it); counters stay on the host. Called by step() before each update.
  void follow_param_device(size_t i);
  // The fields every parameter with state has (all of them, or none yet).
  virtual std::vector<Field> fields() const = 0;
  // state_[i][field]; empty until parameter i's first update.
  std::vector<std::map<std::string, Tensor>> state_;
  int64_t steps_ = 0;

 private:
  std::string name_;
  std::vector<Tensor> params_;
  double lr_;
};

// torch.optim.SGD. With d = g + wd*p:
//   momentum == 0:  p -= lr * d
//   else            b = d on the first update, then b = momentum*b + (1-dampening)*d;
//                   p -= lr * (nesterov ? d + momentum*b : b)
// Nesterov needs momentum > 0 and dampening == 0.
class SGD final : public Optimizer {
 public:
  SGD(std::vector<Tensor> params, double lr, double momentum = 0, double dampening = 0, double weight_decay = 0,
      bool nesterov = false);
  void step() override;

 protected:
  std::vector<Field> fields() const override;

 private:
  double momentum_, dampening_, weight_decay_;
  bool nesterov_;
};

// Parameters sharing a weight decay (AdamW).
struct ParamGroup {
  std::vector<Tensor> params;
  double weight_decay = 0.01;
};

// The usual GPT split: parameters with dim >= 2 (matmul and embedding
// weights) decay with `weight_decay`; biases and norm gains (dim < 2) do not.
// Returns {decayed, not decayed}, each keeping the order of `params`.
std::vector<ParamGroup> decay_groups(const std::vector<Tensor>& params, double weight_decay);

// torch.optim.AdamW (amsgrad off), one fused backend kernel per parameter:
//   p *= 1 - lr*wd;  m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g^2;  t += 1
//   p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)
// t counts the updates of each parameter (a skipped step does not count).
class AdamW final : public Optimizer {
 public:
  AdamW(std::vector<Tensor> params, double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8,
        double weight_decay = 0.01);
  AdamW(std::vector<ParamGroup> groups, double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999,
        double eps = 1e-8);
  void step() override;
  double weight_decay_of(size_t param_index) const { return weight_decay_.at(param_index); }

 protected:
  std::vector<Field> fields() const override;

 private:
  double beta1_, beta2_, eps_;
  std::vector<double> weight_decay_;  // per parameter
};

// Clips gradients by their global L2 norm, like torch.nn.utils.clip_grad_norm_:
// norm = sqrt(sum over every grad element of g^2), accumulated in f64 over
// the parameters that have a grad. When c = max_norm / (norm + 1e-6) < 1,
// every grad is scaled in place by c. Returns the norm before clipping; a
// non-finite norm leaves the grads untouched (the caller decides: skip the
// step, lower the lr, ...). max_norm must be >= 0.
double clip_grad_norm(const std::vector<Tensor>& params, double max_norm);

// Linear warmup then cosine decay (step counts from 0):
//   step < warmup:           max_lr * (step + 1) / warmup
//   warmup <= step < total:  min_lr + (max_lr - min_lr) * (1 + cos(pi * (step - warmup) / (total - warmup))) / 2
//   step >= total:           min_lr
// So step 0 gives max_lr/warmup, step warmup-1 and step warmup give max_lr,
// and the decay reaches min_lr at `total`. Needs 0 <= warmup <= total and step >= 0.
double warmup_cosine_lr(int64_t step, int64_t warmup, int64_t total, double max_lr, double min_lr);

struct WarmupCosine {
  int64_t warmup = 0;
  int64_t total = 1;
  double max_lr = 1e-3;
  double min_lr = 0.0;
  double operator()(int64_t step) const { return warmup_cosine_lr(step, warmup, total, max_lr, min_lr); }
};

}  // namespace dg::nn
