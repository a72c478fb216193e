#pragma once
// The pre-norm transformer block, defined once. It returns only its delta
//
//   a = drop(attn(ln1(x)))      attn(h) = attn.proj(kernel(attn.qkv(h)))
//   m = drop(mlp(ln2(x + a)))   mlp(h)  = mlp.proj(gelu(mlp.fc(h)))
//   delta = a + m
//
// so the model (or a router) applies x + w * delta; a dense GPT layer is
// exactly x + delta. block_delta() writes this formula, the only place it is
// written, against BlockLayers: a way to run a block's layers. A Block runs
// its own layers on all rows of x. GroupedBlocks runs several blocks at
// once, each on its own rows of one group-ordered tensor, through grouped
// ops: batched-by-group execution is a way to call blocks, not a second
// copy of them. The attention kernel (how tokens see each other: causal, KV
// cached, packed sequences, or the caller's) is chosen per call.
//
// Legend: B = batch, T = time, C = channels, N = rows (tokens), n = blocks.
//
//   nn::Block block(/*C=*/64, /*H=*/4);
//   Tensor x = dg::randn({2, 16, 64});
//   Tensor y = x + block.forward(x);                          // causal over each sequence
//   Tensor d = nn::block_delta(block, x2d, block.attn->packed_kernel(cu_seqlens));  // == forward_packed
#include <memory>
#include <vector>

#include "nn/layers.h"

namespace dg::nn {

// The layers of a block, as the formula names them.
enum class BlockNorm { ln1, ln2 };
enum class BlockLinear { attn_qkv, attn_proj, mlp_fc, mlp_proj };

// How to run a block's layers on rows x (..., C).
class BlockLayers {
 public:
  virtual ~BlockLayers() = default;
  virtual Tensor norm(BlockNorm which, const Tensor& x) const = 0;
  virtual Tensor linear(BlockLinear which, const Tensor& x) const = 0;
  virtual Tensor dropout(const Tensor& x) const = 0;
};

// The block's delta of x through `layers`, attending with `kernel`
// (qkv (..., 3C) -> (..., C)). The formula at the top of this file.
Tensor block_delta(const BlockLayers& layers, const Tensor& x, const AttentionKernel& kernel);
// Its two halves, for models that replace one of them (MoE routes the MLP
// half to experts): block_delta = a + mlp_delta(layers, norm(ln2, x + a))
// with a = attention_delta(layers, x, kernel).
//   a = drop(attn.proj(kernel(attn.qkv(ln1(x)))))     x (..., C) -> (..., C)
//   m = drop(mlp.proj(gelu(mlp.fc(h))))               h (..., C), already normed -> (..., C)
Tensor attention_delta(const BlockLayers& layers, const Tensor& x, const AttentionKernel& kernel);
Tensor mlp_delta(const BlockLayers& layers, const Tensor& h);

class Block : public Module, public BlockLayers {
 public:
  Block(int64_t C, int64_t H, double dropout = 0.0, LayerOptions opt = {});
  // x (B, T, C), causal within each sequence, through the cache when given.
  Tensor forward(const Tensor& x, KVCache* cache = nullptr) const;
  // Packed sequences x (N, C) with boundaries cu_seqlens (S + 1).
  Tensor forward_packed(const Tensor& x, const Tensor& cu_seqlens) const;

  // BlockLayers: this block's own layers on all rows.
  Tensor norm(BlockNorm which, const Tensor& x) const override { return layer(which).forward(x); }
  Tensor linear(BlockLinear which, const Tensor& x) const override { return layer(which).forward(x); }
  Tensor dropout(const Tensor& x) const override { return drop->forward(x); }
  const LayerNorm& layer(BlockNorm which) const;
  const Linear& layer(BlockLinear which) const;

  std::shared_ptr<LayerNorm> ln1, ln2;
  std::shared_ptr<CausalSelfAttention> attn;
  std::shared_ptr<MLP> mlp;
  std::shared_ptr<Dropout> drop;
};

// blocks[k] on rows [offsets[k], offsets[k+1]) of a group-ordered x (N, C):
// every layer is one grouped op over all groups (grouped_layer_norm,
// grouped_linear), so there is no per-group gather, slice or cat, and no
// zero-filled gradient per group. The blocks must be built alike (the same
// norm eps and dropout rate); dropout is drawn once over all rows. Holds
// references: blocks and offsets must outlive it.
class GroupedBlocks : public BlockLayers {
 public:
  GroupedBlocks(const std::vector<std::shared_ptr<Block>>& blocks, const std::vector<int64_t>& offsets);
  Tensor norm(BlockNorm which, const Tensor& x) const override;
  Tensor linear(BlockLinear which, const Tensor& x) const override;
  Tensor dropout(const Tensor& x) const override { return blocks_.front()->dropout(x); }

 private:
  const std::vector<std::shared_ptr<Block>>& blocks_;
  const std::vector<int64_t>& offsets_;
};

}  // namespace dg::nn
