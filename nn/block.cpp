#include "nn/block.h"

namespace dg::nn {

// ---------------------------------------------------------------- the formula
Tensor block_delta(const BlockLayers& layers, const Tensor& x, const AttentionKernel& kernel) {
  Tensor a = attention_delta(layers, x, kernel);
  Tensor m = mlp_delta(layers, layers.norm(BlockNorm::ln2, x + a));
  return a + m;
}

Tensor attention_delta(const BlockLayers& layers, const Tensor& x, const AttentionKernel& kernel) {
  using enum BlockLinear;
  Tensor h = layers.norm(BlockNorm::ln1, x);
  return layers.dropout(layers.linear(attn_proj, kernel(layers.linear(attn_qkv, h))));
}

Tensor mlp_delta(const BlockLayers& layers, const Tensor& h) {
  using enum BlockLinear;
  Tensor f = gelu(layers.linear(mlp_fc, h), /*tanh_approx=*/true);
  return layers.dropout(layers.linear(mlp_proj, f));
}

// ---------------------------------------------------------------- one block
Block::Block(int64_t C, int64_t H, double dropout, LayerOptions opt) {
  ln1 = register_module("ln1", std::make_shared<LayerNorm>(C, 1e-5, true, opt));
  attn = register_module("attn", std::make_shared<CausalSelfAttention>(C, H, opt));
  ln2 = register_module("ln2", std::make_shared<LayerNorm>(C, 1e-5, true, opt));
  mlp = register_module("mlp", std::make_shared<MLP>(C, 4 * C, opt));
  drop = register_module("drop", std::make_shared<Dropout>(dropout));  // draws from the default generator
}

Tensor Block::forward(const Tensor& x, KVCache* cache) const {
  DG_CHECK(x.dim() == 3, "Block: expected x of shape (B, T, C), got {}", x.shape());
  return block_delta(*this, x, attn->kernel(cache));
}

Tensor Block::forward_packed(const Tensor& x, const Tensor& cu_seqlens) const {
  DG_CHECK(x.dim() == 2, "Block: packed input must be (N, C), got {}", x.shape());
  return block_delta(*this, x, attn->packed_kernel(cu_seqlens));
}

const LayerNorm& Block::layer(BlockNorm which) const { return which == BlockNorm::ln1 ? *ln1 : *ln2; }

const Linear& Block::layer(BlockLinear which) const {
  switch (which) {
    case BlockLinear::attn_qkv: return *attn->qkv;
    case BlockLinear::attn_proj: return *attn->proj;
    case BlockLinear::mlp_fc: return *mlp->fc;
    case BlockLinear::mlp_proj: return *mlp->proj;
  }
  DG_ASSERT(false, "Block::layer: unknown linear layer");
  return *attn->qkv;
}

// ---------------------------------------------------------------- grouped
GroupedBlocks::GroupedBlocks(const std::vector<std::shared_ptr<Block>>& blocks, const std::vector<int64_t>& offsets)
    : blocks_(blocks), offsets_(offsets) {
  DG_CHECK(!blocks.empty() && offsets.size() == blocks.size() + 1,
           "GroupedBlocks: {} blocks need {} group offsets, got {}", blocks.size(), blocks.size() + 1, offsets.size());
  const Block& b0 = *blocks.front();
  for (const auto& b : blocks)
    DG_CHECK(b->ln1->eps == b0.ln1->eps && b->ln2->eps == b0.ln2->eps && b->drop->p == b0.drop->p,
             "GroupedBlocks: the blocks differ in norm eps or dropout rate; they must be built alike");
}

Tensor GroupedBlocks::norm(BlockNorm which, const Tensor& x) const {
  Tensors weights, biases;
  for (const auto& b : blocks_) weights.push_back(b->layer(which).weight), biases.push_back(b->layer(which).bias);
  return grouped_layer_norm(x, offsets_, weights, biases, blocks_.front()->layer(which).eps);
}

Tensor GroupedBlocks::linear(BlockLinear which, const Tensor& x) const {
  Tensors weights, biases;
  for (const auto& b : blocks_) weights.push_back(b->layer(which).weight), biases.push_back(b->layer(which).bias);
  return grouped_linear(x, offsets_, weights, biases);
}

}  // namespace dg::nn
