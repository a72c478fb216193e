#pragma once
// Layers: Linear, Embedding, LayerNorm, RMSNorm, Dropout, MLP, causal
// self-attention and the pre-norm transformer block.
//
// Legend: B = batch, T = time (sequence length), C = channels (n_embd),
// H = heads, D = C / H (head dim), V = vocabulary.
//
//   nn::Block block(/*C=*/64, /*H=*/4);
//   Tensor x = dg::randn({2, 16, 64});
//   Tensor y = x + block.forward(x);   // the block returns only its delta
//
// Every layer computes with differentiable ops (autograd/ops.h), so its
// backward needs no code here. Parameters are created in `dtype` (f32 by
// default) and initialised as in GPT-2 (nn/init.h); callers re-initialise
// as they like.
#include <memory>

#include "autograd/ops.h"
#include "nn/module.h"

namespace dg::nn {

struct LayerOptions {
  DType dtype = DType::f32;
  Generator* gen = nullptr;  // for initialisation; the default generator when null
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

// Causal multi-head self-attention on the fused kernel: qkv = x Wqkv^T + b
// split into q, k, v (each (B, T, H, D) viewed as (B, H, T, D)), softmax(q k^T
// / sqrt(D)) v with a causal mask, heads merged, then proj.
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
  // The two halves around the attention kernel, for callers that mix tokens
  // projected by different layers in one attention (MoB's step scope) or
  // cache keys themselves (MoB decoding): heads(x (N, C)) -> q, k, v each
  // (H, N, D) contiguous; merge(y (N, C), heads side by side, as
  // attention_qkv returns them) -> proj(y) (N, C).
  struct Heads {
    Tensor q, k, v;
  };
  Heads heads(const Tensor& x) const;
  Tensor merge(const Tensor& y) const;

  std::shared_ptr<Linear> qkv, proj;
  int64_t n_head;
};

// Pre-norm transformer block returning only its delta:
//   a = attn(ln1(x)),  m = mlp(ln2(x + a)),  delta = a + m
// so the model (or a router) applies x + w * delta. A dense GPT layer is
// exactly x + delta.
class Block : public Module {
 public:
  Block(int64_t C, int64_t H, double dropout = 0.0, LayerOptions opt = {});
  Tensor forward(const Tensor& x, KVCache* cache = nullptr) const;
  // Packed sequences x (N, C) with boundaries cu_seqlens: the same delta.
  Tensor forward_packed(const Tensor& x, const Tensor& cu_seqlens) const;
  // The block split around its attention: q, k, v of ln1(x) as heads, or
  // fused as the projection (N, 3C) that attention_qkv reads; and the delta
  // given the attention output y (N, C) of those queries (heads side by side).
  CausalSelfAttention::Heads attention_inputs(const Tensor& x) const { return attn->heads(ln1->forward(x)); }
  Tensor attention_qkv_input(const Tensor& x) const { return attn->qkv->forward(ln1->forward(x)); }
  Tensor delta_from_attention(const Tensor& x, const Tensor& y) const;
  std::shared_ptr<LayerNorm> ln1, ln2;
  std::shared_ptr<CausalSelfAttention> attn;
  std::shared_ptr<MLP> mlp;
  std::shared_ptr<Dropout> drop;
};

}  // namespace dg::nn
