#pragma once
// LanguageModel: what the dense GPT, MoD and MoB have in common, so training,
// evaluation, generation and checkpoints are written once.
//
// Legend: B = batch, T = time, V = vocabulary (256 bytes).
//
//   GPT model(cfg);
//   LossOutput out = model.loss(x, y);   // x, y (B, T) i64
//   out.objective.backward();            // what the optimizer minimises
//   auto state = model.start_decoding(1);
//   Tensor logits = model.decode(*state, prompt);   // (1, T, V), keys/values cached
#include <map>
#include <memory>
#include <string>

#include "nn/module.h"

namespace dg::models {

struct RoutingTrace;  // models/trace.h

// A model's loss on one batch. `objective` is what training minimises (the LM
// loss plus any auxiliary terms); `lm` is the plain next-token cross-entropy
// (nats per token), comparable across models. `stats` are scalars for logs:
// those the model knows on the host, and `device_stats`, 0-dim tensors still
// on the model's device, read with the loss in one transfer (read_values).
struct LossOutput {
  Tensor objective;
  Tensor lm;
  std::map<std::string, double> stats;
  std::map<std::string, Tensor> device_stats;
};

// The host values of a LossOutput, all read in one copy from the device
// (objective, lm and every device stat stacked into one f64 tensor first).
struct LossValues {
  double objective = 0, lm = 0;
  std::map<std::string, double> stats;  // host and device stats together
};
LossValues read_values(const LossOutput& out);

// Per-sequence state of incremental decoding (KV caches and position).
struct DecodeState {
  virtual ~DecodeState() = default;
  int64_t position = 0;  // tokens consumed so far
};

class LanguageModel : public nn::Module {
 public:
  // idx (B, T) i64 -> logits (B, T, V).
  virtual Tensor forward(const Tensor& idx) = 0;
  // Next-token loss of targets (B, T) i64 (ignore_index -100 allowed).
  virtual LossOutput loss(const Tensor& idx, const Tensor& targets) = 0;
  virtual std::unique_ptr<DecodeState> start_decoding(int64_t batch) = 0;
  // Appends idx (B, t) to the state and returns the logits (B, t, V) of those
  // positions; equal to the matching rows of forward() on the whole sequence.
  virtual Tensor decode(DecodeState& state, const Tensor& idx) = 0;
  virtual int64_t block_size() const = 0;
  virtual int64_t vocab_size() const = 0;
  // Forward FLOPs actually spent by the most recent forward/loss call, per
  // token (routed models count their routing decisions).
  virtual double last_forward_flops_per_token() const = 0;
  // Per-token routing of the most recent forward, for models that send tokens
  // through a varying number of blocks (MoB, and kinds a program adds): depth
  // histograms, depth by difficulty and the trace page read it through here,
  // whatever the kind. nullptr for models without one (dense, MoD).
  virtual const RoutingTrace* last_routing_trace() const { return nullptr; }
  // "dense", "mod" or "mob", and the config as one JSON object (checkpoints).
  virtual std::string kind() const = 0;
  virtual std::string config_json() const = 0;
};

// The device of a module's parameters (the CPU for a module without any):
// where batches must go before model.loss(x, y).
Device device_of(const nn::Module& m);

}  // namespace dg::models
