#include "nn/layers.h"

#include <cmath>

#include "nn/init.h"

namespace dg::nn {

namespace {

Tensor new_param(const Shape& shape, const LayerOptions& opt) { return empty(shape, {opt.dtype}); }

}  // namespace

// ---------------------------------------------------------------- Linear
Linear::Linear(int64_t in, int64_t out, bool with_bias, LayerOptions opt) {
  DG_CHECK(in > 0 && out > 0, "Linear: sizes must be positive, got in={} out={}", in, out);
  weight = register_parameter("weight", new_param({out, in}, opt));
  init::normal_(weight, 0.0, 0.02, opt.gen);
  if (with_bias) {
    bias = register_parameter("bias", new_param({out}, opt));
    init::zeros_(bias);
  }
}

// x (..., in) -> (..., out): dg::linear, one GEMM over the folded rows with
// the bias as its starting output (no separate add).
Tensor Linear::forward(const Tensor& x) const {
  DG_CHECK(x.defined() && x.dim() >= 1 && x.size(-1) == weight.size(1),
           "Linear: input of shape {} does not end in in_features = {} (weight {})", x.defined() ? x.shape() : Shape{},
           weight.size(1), weight.shape());
  return linear(x, weight, bias);
}

// ---------------------------------------------------------------- Embedding
Embedding::Embedding(int64_t num, int64_t dim, LayerOptions opt) {
  DG_CHECK(num > 0 && dim > 0, "Embedding: sizes must be positive, got {} x {}", num, dim);
  weight = register_parameter("weight", new_param({num, dim}, opt));
  init::normal_(weight, 0.0, 0.02, opt.gen);
}

Tensor Embedding::forward(const Tensor& index) const { return embedding(weight, index); }

// ---------------------------------------------------------------- norms
LayerNorm::LayerNorm(int64_t C, double eps, bool with_bias, LayerOptions opt) : eps(eps) {
  weight = register_parameter("weight", new_param({C}, opt));
  init::ones_(weight);
  if (with_bias) {
    bias = register_parameter("bias", new_param({C}, opt));
    init::zeros_(bias);
  }
}

Tensor LayerNorm::forward(const Tensor& x) const { return layer_norm(x, weight, bias, eps); }

RMSNorm::RMSNorm(int64_t C, double eps, LayerOptions opt) : eps(eps) {
  weight = register_parameter("weight", new_param({C}, opt));
  init::ones_(weight);
}

Tensor RMSNorm::forward(const Tensor& x) const { return rms_norm(x, weight, eps); }

Tensor Dropout::forward(const Tensor& x) const {
  if (!is_training() || p == 0.0) return x;
  return dropout(x, p, true, gen);
}

// ---------------------------------------------------------------- MLP
MLP::MLP(int64_t C, int64_t hidden, LayerOptions opt) {
  fc = register_module("fc", std::make_shared<Linear>(C, hidden, true, opt));
  proj = register_module("proj", std::make_shared<Linear>(hidden, C, true, opt));
}

Tensor MLP::forward(const Tensor& x) const { return proj->forward(gelu(fc->forward(x), /*tanh_approx=*/true)); }

// ---------------------------------------------------------------- attention
CausalSelfAttention::CausalSelfAttention(int64_t C, int64_t H, LayerOptions opt) : n_head(H) {
  DG_CHECK(H > 0 && C % H == 0, "CausalSelfAttention: n_embd {} is not divisible by n_head {}", C, H);
  qkv = register_module("qkv", std::make_shared<Linear>(C, 3 * C, true, opt));
  proj = register_module("proj", std::make_shared<Linear>(C, C, true, opt));
}

Tensor CausalSelfAttention::forward(const Tensor& x, KVCache* cache) const {
  DG_CHECK(x.dim() == 3, "CausalSelfAttention: expected x of shape (B, T, C), got {}", x.shape());
  const int64_t B = x.size(0), T = x.size(1), C = x.size(2), H = n_head, D = C / H;
  Tensor qkv_out = qkv->forward(x);  // (B, T, 3C)
  // Without a cache the kernel reads q, k, v straight from the projection.
  if (!cache) return proj->forward(attention_qkv(qkv_out, H));
  // (B, T, C) slice -> (B, T, H, D) -> (B, H, T, D): views; the kernel copies them contiguous.
  auto heads = [&](int64_t i) { return transpose(view(slice(qkv_out, 2, i * C, (i + 1) * C), {B, T, H, D}), 1, 2); };
  Tensor q = heads(0), k = heads(1), v = heads(2);
  DG_CHECK(!is_grad_enabled() || !x.requires_grad(),
           "CausalSelfAttention: a KV cache is for inference; run it under NoGradGuard");
  DG_CHECK(cache->k.defined(), "CausalSelfAttention: KV cache not allocated");
  const int64_t cap = cache->k.size(2);
  DG_CHECK(cache->length + T <= cap, "CausalSelfAttention: KV cache holds {} positions, {} cached + {} new", cap,
           cache->length, T);
  Tensor kdst = narrow(cache->k, 2, cache->length, T), vdst = narrow(cache->v, 2, cache->length, T);
  copy_(kdst, k);
  copy_(vdst, v);
  cache->length += T;
  k = narrow(cache->k, 2, 0, cache->length);
  v = narrow(cache->v, 2, 0, cache->length);
  // Causal mask aligned to the end: the T new queries see all cached keys.
  Tensor y = scaled_dot_product_attention(q, k, v, /*causal=*/true);  // (B, H, T, D)
  return proj->forward(reshape(transpose(y, 1, 2), {B, T, C}));
}

// Packed layout: qkv (N, 3C) -> three (N, H, D) slices -> (H, N, D) contiguous,
// the layout of the varlen kernel (each head's rows of one sequence contiguous).
CausalSelfAttention::Heads CausalSelfAttention::heads(const Tensor& x) const {
  DG_CHECK(x.dim() == 2, "CausalSelfAttention: packed input must be (N, C), got {}", x.shape());
  const int64_t N = x.size(0), C = x.size(1), H = n_head, D = C / H;
  Tensor qkv_out = qkv->forward(x);  // (N, 3C)
  auto head = [&](int64_t i) {
    return contiguous(transpose(view(slice(qkv_out, 1, i * C, (i + 1) * C), {N, H, D}), 0, 1));
  };
  return {head(0), head(1), head(2)};
}

Tensor CausalSelfAttention::merge(const Tensor& y) const { return proj->forward(y); }

Tensor CausalSelfAttention::forward_packed(const Tensor& x, const Tensor& cu_seqlens) const {
  DG_CHECK(x.dim() == 2, "CausalSelfAttention: packed input must be (N, C), got {}", x.shape());
  return merge(attention_qkv(qkv->forward(x), n_head, cu_seqlens));
}

// ---------------------------------------------------------------- block
Block::Block(int64_t C, int64_t H, double dropout, LayerOptions opt) {
  ln1 = register_module("ln1", std::make_shared<LayerNorm>(C, 1e-5, true, opt));
  attn = register_module("attn", std::make_shared<CausalSelfAttention>(C, H, opt));
  ln2 = register_module("ln2", std::make_shared<LayerNorm>(C, 1e-5, true, opt));
  mlp = register_module("mlp", std::make_shared<MLP>(C, 4 * C, opt));
  drop = register_module("drop", std::make_shared<Dropout>(dropout));  // draws from the default generator
}

Tensor Block::forward(const Tensor& x, KVCache* cache) const {
  Tensor a = drop->forward(attn->forward(ln1->forward(x), cache));
  Tensor m = drop->forward(mlp->forward(ln2->forward(x + a)));
  return a + m;
}

Tensor Block::forward_packed(const Tensor& x, const Tensor& cu_seqlens) const {
  Tensor a = drop->forward(attn->forward_packed(ln1->forward(x), cu_seqlens));
  Tensor m = drop->forward(mlp->forward(ln2->forward(x + a)));
  return a + m;
}

Tensor Block::delta_from_attention(const Tensor& x, const Tensor& y) const {
  Tensor a = drop->forward(attn->merge(y));
  Tensor m = drop->forward(mlp->forward(ln2->forward(x + a)));
  return a + m;
}

}  // namespace dg::nn
