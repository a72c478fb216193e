#pragma once
// Training checkpoints: one safetensors file holding the model's state dict
// ("model.<name>"), the optimizer's state ("optim.<key>") and, in the header's
// __metadata__, the step, generator states and whatever the caller adds (the
// model kind and config as JSON, the training config). Written atomically by
// save_safetensors (temporary file, fsync, rename): a crash mid-write leaves
// the previous checkpoint intact.
//
//   nn::Metadata meta = {{"model_kind", "dense"}, {"model_config", model.config_json()}};
//   nn::save_checkpoint("out/ckpt.safetensors", model, &opt, 1200, meta);
//   ...
//   nn::Metadata got = nn::load_checkpoint("out/ckpt.safetensors", model, &opt, meta);  // checks kind/config
//   int64_t step = std::stoll(got.at("step"));
#include <string>

#include "nn/module.h"
#include "nn/optim.h"
#include "nn/safetensors.h"
#include "tensor/rng.h"

namespace dg::nn {

// Whether t holds no NaN and no infinity (integer and bool tensors always do).
bool all_finite(const Tensor& t);
// The name of the first tensor (map order) holding a NaN or an infinity, or
// "" when all are finite.
std::string first_nonfinite(const NamedTensors& tensors);

// Writes model (+ optimizer, when given) with `step` and `metadata`. Refuses
// (dg::Error naming the file and tensor, nothing written, the previous file
// kept) when a weight or an optimizer moment is NaN or infinite.
void save_checkpoint(const std::string& path, const Module& model, const Optimizer* opt, int64_t step,
                     const Metadata& metadata = {});

// Loads into model (+ optimizer) after validating the file: every metadata
// entry in `expect` must be present with the same value — JSON objects (the
// model config) compared parsed, key by key — (a one-line dg::Error naming the
// file, the key and both values otherwise), and the model's and
// optimizer's tensors must match strictly. Nothing is modified unless all
// checks pass. A tensor holding NaN or infinity is an error naming the file
// and the tensor unless allow_nonfinite. Returns the file's metadata (with "step").
Metadata load_checkpoint(const std::string& path, Module& model, Optimizer* opt, const Metadata& expect = {},
                         bool allow_nonfinite = false);

// Generator state as metadata ("<prefix>.seed", "<prefix>.offset") and back.
void put_generator(Metadata& meta, const std::string& prefix, const Generator& gen);
void get_generator(const Metadata& meta, const std::string& prefix, Generator& gen, const std::string& path);

}  // namespace dg::nn
