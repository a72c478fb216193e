#pragma once
// Layers: Linear, Embedding, LayerNorm, RMSNorm, Dropout, MLP and causal
// self-attention. The pre-norm transformer block is in nn/block.h.
//
// Legend: B = batch, T = time (sequence length), C = channels (n_embd),
// H = heads, D = C / H (head dim), V = vocabulary.
//
//   nn::CausalSelfAttention attn(/*C=*/64, /*H=*/4);
//   Tensor y = attn.forward(dg::randn({2, 16, 64}));   // (2, 16, 64)
//
// Every layer computes with differentiable ops (autograd/ops.h), so its
// backward needs no code here. Parameters are created in `dtype` (f32 by
// default) and initialised as in GPT-2 (nn/init.h); callers re-initialise
// as they like.
#include <functional>
#include <memory>

#include "autograd/ops.h"
#include "nn/module.h"

namespace dg::nn {

struct LayerOptions {
  DType dtype = DType::f32;
  Generator* gen = nullptr;  // for initialisation; the default generator when null
  Device device = Device::cpu();  // where parameters are made (same values on every device)
};

// y = x @ W^T + b; x (..., in), W (out, in), b (out). Init: N(0, 0.02), b = 0.
class Linear : public Module {
 public:
  Linear(int64_t in, int64_t out, bool bias = true, LayerOptions opt = {});
  Tensor forward(const Tensor& x) const;
  Tensor weight, bias;  // bias undefined when built without one
};

// Rows of a (V, C) table; index (...) i64 -> (..., C). Init: N(0, 0.02).
class Embedding : public Module {
 public:
  Embedding(int64_t num, int64_t dim, LayerOptions opt = {});
  Tensor forward(const Tensor& index) const;
  Tensor weight;
};

// Normalise over the last dim; weight 1, bias 0 at init.
class LayerNorm : public Module {
 public:
  explicit LayerNorm(int64_t C, double eps = 1e-5, bool bias = true, LayerOptions opt = {});
  Tensor forward(const Tensor& x) const;
  Tensor weight, bias;
  double eps;
};

class RMSNorm : public Module {
 public:
  explicit RMSNorm(int64_t C, double eps = 1e-6, LayerOptions opt = {});
  Tensor forward(const Tensor& x) const;
  Tensor weight;
  double eps;
};

// Zeroes elements with probability p in training mode (scaling the rest by
// 1/(1-p)); the identity in eval mode or when p == 0.
class Dropout : public Module {
 public:
  explicit Dropout(double p = 0.0, Generator* gen = nullptr) : p(p), gen(gen) {}
  Tensor forward(const Tensor& x) const;
  double p;
  Generator* gen;
};

// fc (C -> hidden), GELU (tanh approximation), proj (hidden -> C).
class MLP : public Module {
 public:
  MLP(int64_t C, int64_t hidden, LayerOptions opt = {});
  Tensor forward(const Tensor& x) const;
  std::shared_ptr<Linear> fc, proj;
};

// Cached keys and values of one attention layer for incremental decoding:
// k, v (B, H, capacity, D); the first `length` positions are filled.
struct KVCache {
  Tensor k, v;
  int64_t length = 0;
};

// How the tokens of one attention see each other: takes the fused projection
// qkv (..., 3C), q | k | v side by side, and returns the attention output
// (..., C), heads side by side. The attention layer and the block are written
// once around it; callers choose the kernel: causal over a (B, T) batch, with
// a KV cache, over packed sequences, or one of their own (MoB's step scope).
using AttentionKernel = std::function<Tensor(const Tensor& qkv)>;

// Causal multi-head self-attention on the fused kernel: y = proj(kernel(qkv(x))),
// where the kernel splits q, k, v (each (B, T, H, D) viewed as (B, H, T, D)),
// takes softmax(q k^T / sqrt(D)) v with a causal mask and merges the heads.
class CausalSelfAttention : public Module {
 public:
  CausalSelfAttention(int64_t C, int64_t H, LayerOptions opt = {});
  // x (B, T, C) -> (B, T, C). With a cache, x holds the T newest positions:
  // their keys and values are appended and the queries attend to everything
  // cached so far (no gradients through a cache: use under NoGradGuard).
  Tensor forward(const Tensor& x, KVCache* cache = nullptr) const;
  // Packed variable-length sequences (the routed models): x (N, C) holds
  // sequences back to back, cu_seqlens (S + 1) i64 their boundaries; each
  // attends causally within itself only.
  Tensor forward_packed(const Tensor& x, const Tensor& cu_seqlens) const;

  // The kernels of those two: qkv (B, T, 3C) -> (B, T, C), causal, through
  // the cache when there is one; qkv (N, 3C) -> (N, C) over packed sequences.
  AttentionKernel kernel(KVCache* cache = nullptr) const;
  AttentionKernel packed_kernel(const Tensor& cu_seqlens) const;

  std::shared_ptr<Linear> qkv, proj;
  int64_t n_head;
};

}  // namespace dg::nn
