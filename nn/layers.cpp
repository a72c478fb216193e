#include "nn/layers.h"

#include <cmath>

#include "nn/init.h"

namespace dg::nn {

namespace {

Tensor new_param(const Shape& shape, const LayerOptions& opt) { return empty(shape, {opt.dtype, opt.device}); }

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
  return proj->forward(kernel(cache)(qkv->forward(x)));
}

Tensor CausalSelfAttention::forward_packed(const Tensor& x, const Tensor& cu_seqlens) const {
  DG_CHECK(x.dim() == 2, "CausalSelfAttention: packed input must be (N, C), got {}", x.shape());
  return proj->forward(packed_kernel(cu_seqlens)(qkv->forward(x)));
}

AttentionKernel CausalSelfAttention::kernel(KVCache* cache) const {
  const int64_t H = n_head;
  // Without a cache the fused kernel reads q, k, v straight from the projection.
  if (!cache) return [H](const Tensor& qkv_out) { return attention_qkv(qkv_out, H); };
  return [H, cache](const Tensor& qkv_out) {
    DG_CHECK(qkv_out.dim() == 3, "CausalSelfAttention: a KV cache needs x of shape (B, T, C), got qkv {}",
             qkv_out.shape());
    const int64_t B = qkv_out.size(0), T = qkv_out.size(1), C = qkv_out.size(2) / 3, D = C / H;
    // (B, T, C) slice -> (B, T, H, D) -> (B, H, T, D): views; the kernel copies them contiguous.
    auto heads = [&](int64_t i) { return transpose(view(slice(qkv_out, 2, i * C, (i + 1) * C), {B, T, H, D}), 1, 2); };
    Tensor q = heads(0), k = heads(1), v = heads(2);
    DG_CHECK(!is_grad_enabled() || !qkv_out.requires_grad(),
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
    return reshape(transpose(y, 1, 2), {B, T, C});
  };
}

// Packed layout: each sequence's rows are contiguous; the varlen kernel reads
// q, k, v from the fused projection and keeps heads apart itself.
AttentionKernel CausalSelfAttention::packed_kernel(const Tensor& cu_seqlens) const {
  return [H = n_head, cu_seqlens](const Tensor& qkv_out) { return attention_qkv(qkv_out, H, cu_seqlens); };
}

}  // namespace dg::nn
