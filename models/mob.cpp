#include "models/mob.h"

#include <cmath>

#include "models/block_on_rows.h"
#include "models/routing.h"
#include "nn/init.h"

namespace dg::models {

// ---------------------------------------------------------------- config
const config::Table<MoBConfig>& mob_fields() {
  using M = MoBConfig;
  using config::kInf;
  static const config::Table<M> t = {
      config::integer<M>("n_blocks", "--blocks", &M::n_blocks, 1, 1024, "number of blocks n"),
      config::integer<M>("max_depth", "--max-depth", &M::max_depth, 1, 1024, "D_max: return forced at this step"),
      config::choice<M>("halting", "--halting", &M::halting,
                        config::EnumNames<Halting>{{{Halting::ponder, "ponder"}, {Halting::bias, "bias"}}},
                        "ponder (learned) or bias (the literal scheme)"),
      config::choice<M>("gate_init", "--gate-init", &M::gate_init,
                        config::EnumNames<GateInit>{{{GateInit::dense_path, "dense-path"}, {GateInit::uniform, "uniform"}}},
                        "initial gate"),
      config::choice<M>("attn_scope", "--attn-scope", &M::attn_scope,
                        config::EnumNames<AttnScope>{{{AttnScope::step, "step"}, {AttnScope::block, "block"}}},
                        "attention among all active tokens (step) or those in the same block (block)"),
      config::choice<M>("weight", "--weight", &M::weight,
                        config::EnumNames<BlockWeight>{{{BlockWeight::q, "q"},
                                                        {BlockWeight::straight_through, "straight-through"}}},
                        "weight of a block's delta"),
      config::choice<M>("explore", "--explore", &M::explore,
                        config::EnumNames<Explore>{{{Explore::none, "none"}, {Explore::gumbel, "gumbel"},
                                                    {Explore::epsilon, "epsilon"}}},
                        "exploration in training"),
      config::real<M>("explore_param", "--explore-param", &M::explore_param, {0, kInf},
                      "Gumbel noise scale, or epsilon (at most 1)"),
      config::real<M>("return_bias", "--return-bias", &M::return_bias, {-kInf, kInf, true, true},
                      "beta: + beta*d on the return logit"),
      config::real<M>("prior", "--prior", &M::prior, {0, 1, true, true}, "ponder: geometric prior lambda_p"),
      config::real<M>("kl", "--kl", &M::kl, {0, kInf}, "ponder: KL weight kappa"),
      config::real<M>("eps", "--eps", &M::eps, {0, 1}, "ponder: stop computing under this surviving mass"),
      config::real<M>("ponder_cost", "--ponder-cost", &M::ponder_cost, {0, kInf}, "bias halting: cost per step"),
      config::real<M>("depth_target", "--depth-target", &M::depth_target, {0, kInf},
                      "D* of the optional depth budget (at most --max-depth)"),
      config::real<M>("depth_weight", "--depth-weight", &M::depth_weight, {0, kInf},
                      "weight of (E[steps] - D*)^2 (0: off)"),
      config::real<M>("balance", "--balance", &M::balance, {0, kInf}, "load-balance loss weight"),
  };
  return t;
}

const config::Table<MoBConfig>& mob_config_table() {
  static const config::Table<MoBConfig> t = config::nested(gpt_config_table(), &MoBConfig::gpt) + mob_fields();
  return t;
}

std::string to_json(const MoBConfig& c) {
  MoBConfig w = c;
  w.gpt.n_layer = c.n_blocks;  // as every MoB checkpoint has it (and bench/torch_models.py writes it)
  return config::to_json(mob_config_table(), w).dump();
}

void validate(const MoBConfig& c, const std::string& where) {
  DG_CHECK(c.explore != Explore::epsilon || c.explore_param <= 1,
           "{}: explore_param (--explore-param) is epsilon with explore epsilon and must be in [0, 1], got {}", where,
           c.explore_param);
  DG_CHECK(c.depth_target <= static_cast<double>(c.max_depth),
           "{}: depth_target (--depth-target) {} must be at most max_depth (--max-depth) {}", where, c.depth_target,
           c.max_depth);
  validate(c.gpt, c.n_blocks, where);
}

MoBConfig mob_config_from_json(const std::string& text, const std::string& where) {
  MoBConfig c = config::from_json_text(mob_config_table(), text, where);
  validate(c, where);
  return c;
}

// ---------------------------------------------------------------- model
namespace {

// Row lists decided on the host, as index tensors on the device of the rows.
Rows ids(const std::vector<int64_t>& v, Device device) { return Rows(v, device); }

}  // namespace

MoB::MoB(const MoBConfig& cfg) : mcfg_(cfg), trunk_(cfg.gpt, cfg.n_blocks), explore_gen_(cfg.gpt.seed + 2) {
  for (auto& [name, m] : trunk_.modules()) register_module(name, m);
  config::check_ranges(mob_fields(), cfg, "MoB config");
  validate(cfg);
  const int64_t n = cfg.n_blocks, D = cfg.max_depth, C = cfg.gpt.n_embd;
  Generator gen(cfg.gpt.seed + 1);
  nn::LayerOptions opt{cfg.gpt.dtype, &gen};
  gate_ln = register_module("gate_ln", std::make_shared<nn::LayerNorm>(C, 1e-5, true, opt));
  gate = register_module("gate", std::make_shared<nn::Linear>(C, n + 1, false, opt));
  std::vector<double> bias((D + 1) * (n + 1), 0.0);
  if (cfg.gate_init == GateInit::dense_path) {
    nn::init::zeros_(gate->weight);  // the bias alone decides: block d at step d < n, then return
    for (int64_t d = 0; d <= D; ++d) bias[d * (n + 1) + (d < n ? d : n)] = 3.0;
  }
  step_bias = register_parameter("step_bias", from_doubles(bias, {D + 1, n + 1}, {cfg.gpt.dtype}));
  BlockChooser chooser{cfg.weight, cfg.explore, cfg.explore_param};
  if (cfg.halting == Halting::ponder)
    policy_ = make_ponder_policy({cfg.prior, cfg.kl, cfg.eps, cfg.depth_target, cfg.depth_weight}, chooser);
  else
    policy_ = make_bias_policy({cfg.ponder_cost, cfg.depth_target, cfg.depth_weight}, chooser);
}

std::string MoB::config_json() const { return to_json(mcfg_); }

Tensor MoB::gate_logits(const Tensor& x, int64_t d) const {
  Tensor logits = gate->forward(gate_ln->forward(x)) + select(step_bias, 0, d);
  if (mcfg_.return_bias != 0.0) {
    std::vector<double> rb(mcfg_.n_blocks + 1, 0.0);
    rb.back() = mcfg_.return_bias * static_cast<double>(d);
    logits = logits + from_doubles(rb, {mcfg_.n_blocks + 1}, {x.dtype(), x.device()});
  }
  return logits;
}

// Deltas (Nc, C) for the continuing rows of R (flat rows b*T + t, ascending),
// each through its chosen block, grouped: one batched call per block; the
// deltas stay in group order (the caller adds them back through g.perm).
MoB::StepDeltas MoB::step_deltas(const Tensor& R, const std::vector<int64_t>& rows, const std::vector<int64_t>& choice,
                        int64_t T) {
  const int64_t n = mcfg_.n_blocks, Nc = static_cast<int64_t>(rows.size()), C = trunk_.cfg.n_embd;
  Groups g = group_by_choice(choice, n);
  const Device dev = R.device();
  std::vector<int64_t> group_rows(Nc);
  for (int64_t i = 0; i < Nc; ++i) group_rows[i] = rows[g.perm[i]];
  const Rows to_groups = ids(group_rows, dev);  // the step's gather (step scope) and its scatter back
  // cu_seqlens of a list of positions in the continuing list (ascending
  // rows), counting the causal attention FLOPs of its packed sequences.
  auto seqlens = [&](const std::vector<int64_t>& pos) {
    std::vector<int64_t> pos_rows(pos.size());
    for (size_t i = 0; i < pos.size(); ++i) pos_rows[i] = rows[pos[i]];
    const std::vector<int64_t> cu = packed_seqlens(pos_rows, T);
    last_flops_ += packed_attention_flops(cu, C);
    return from_vector<int64_t>(cu, {static_cast<int64_t>(cu.size())}, dev);
  };
  last_flops_ += 24.0 * C * C * static_cast<double>(Nc);  // every continuing token through one block
  if (mcfg_.attn_scope == AttnScope::block) {
    const Tensor x = gather_rows(R, ids(rows, dev));  // (Nc, C), rows in (sequence, position) order
    Tensors parts;
    for (int64_t k = 0; k < n; ++k)
      if (g.offsets[k] < g.offsets[k + 1]) {
        const std::vector<int64_t> members(g.perm.begin() + g.offsets[k], g.perm.begin() + g.offsets[k + 1]);
        parts.push_back(trunk_.blocks[k]->forward_packed(gather_rows(x, ids(members, dev)), seqlens(members)));
      }
    return {parts.size() == 1 ? parts[0] : cat(parts, 0), g.perm, to_groups};
  }
  // Step scope. The tokens are gathered from R in group order (one gather,
  // whose backward adds into R's gradient in place) and the blocks run as
  // nn::GroupedBlocks: each block's layers on its own rows through grouped
  // ops. One attention runs over all tokens, reading the projections where
  // they are: packed position j (sequence, position order) is group-order
  // row inv[j].
  std::vector<int64_t> all(Nc), inv(Nc);
  for (int64_t i = 0; i < Nc; ++i) all[i] = i, inv[g.perm[i]] = i;
  const Rows to_sequences = ids(inv, dev);
  const Tensor cu = seqlens(all);
  auto attend_in_sequence_order = [&](const Tensor& qkv) {  // (Nc, 3C) -> (Nc, C), group order
    return attention_qkv_rows(qkv, trunk_.cfg.n_head, cu, to_sequences.ids);
  };
  Tensor delta = nn::block_delta(nn::GroupedBlocks(trunk_.blocks, g.offsets), gather_rows(R, to_groups),
                                 attend_in_sequence_order);
  return {delta, g.perm, to_groups};
}

MoB::Run MoB::run(const Tensor& idx, const Tensor& targets, bool training) {
  check_tokens("MoB", idx, trunk_.cfg.block_size, trunk_.cfg.vocab_size);
  const int64_t B = idx.size(0), T = idx.size(1), N = B * T, C = trunk_.cfg.n_embd, V = trunk_.cfg.vocab_size;
  const int64_t n = mcfg_.n_blocks, D = mcfg_.max_depth;
  Tensor R = reshape(trunk_.embed(idx), {N, C});
  Tensor y_flat = targets.defined() ? reshape(targets, {N}) : Tensor();
  policy_->begin(N, R.dtype());
  trace_.reset(B, T, n, D);
  last_flops_ = 0;
  Run out;
  const Device dev = R.device();
  if (!training) out.logits = zeros({N, V}, {R.dtype(), dev});
  std::vector<int64_t> active(N);
  for (int64_t i = 0; i < N; ++i) active[i] = i;
  Tensor balance;
  for (int64_t d = 0; d <= D && !active.empty(); ++d) {
    const int64_t Na = static_cast<int64_t>(active.size());
    const Rows rows = ids(active, dev);
    Tensor Ra = gather_rows(R, rows);
    StepContext ctx;
    ctx.step = d, ctx.max_depth = D, ctx.training = training, ctx.gen = &explore_gen_;
    ctx.probs = softmax(gate_logits(Ra, d), -1);
    last_flops_ += 2.0 * C * (n + 1) * Na;
    if (policy_->needs_step_loss(training)) {
      ctx.ce = cross_entropy(trunk_.head(Ra), gather_rows(y_flat, rows), -100, 0.0, Reduction::none);
      last_flops_ += 2.0 * C * V * Na;
    }
    StepDecision dec = policy_->step(ctx, active);
    if (dec.loss.defined()) out.objective = out.objective.defined() ? out.objective + dec.loss : dec.loss;
    const std::vector<double>& lam = dec.halt_prob;
    std::vector<int64_t> halted, cont, cont_blocks, cont_pos;
    for (int64_t i = 0; i < Na; ++i) {
      if (dec.halt[i]) {
        halted.push_back(i);
        trace_.tokens[active[i]].push_back({static_cast<int32_t>(d), -1, 0.0f, static_cast<float>(lam[i])});
      } else {
        cont.push_back(active[i]);
        cont_blocks.push_back(dec.block[i]);
        cont_pos.push_back(i);
      }
    }
    if (!training && !halted.empty()) {
      std::vector<int64_t> halted_rows;  // their rows of the (N) stream
      for (int64_t i : halted) halted_rows.push_back(active[i]);
      out.logits = index_add(out.logits, 0, ids(halted_rows, dev).ids, trunk_.head(gather_rows(Ra, ids(halted, dev))));
      last_flops_ += 2.0 * C * V * static_cast<double>(halted.size());
    }
    if (cont.empty()) break;
    const std::vector<double> w = dec.weight_value.empty() ? dec.weight.to_vector<double>() : dec.weight_value;
    for (size_t j = 0; j < cont.size(); ++j)
      trace_.tokens[cont[j]].push_back({static_cast<int32_t>(d), static_cast<int32_t>(cont_blocks[j]),
                                        static_cast<float>(w[j]), static_cast<float>(lam[cont_pos[j]])});
    if (training && mcfg_.balance > 0) {
      // Switch-style: n * sum_k f_k * P_k over the continuing tokens, with f_k
      // the share that chose k (no gradient) and P_k the mean of q_k.
      Tensor pc = gather_rows(ctx.probs, ids(cont_pos, dev));
      Tensor q = slice(pc, 1, 0, n) / unsqueeze(1.0 - select(pc, 1, n), 1);
      std::vector<double> f(n, 0.0);
      for (int64_t b : cont_blocks) f[b] += 1.0 / static_cast<double>(cont.size());
      Tensor term = sum(mean(q, {0}) * from_doubles(f, {n}, {q.dtype(), dev})) * (static_cast<double>(n) * mcfg_.balance);
      balance = balance.defined() ? balance + term : term;
    }
    // R[row] += w * delta, the deltas in group order: rows and weights follow them.
    StepDeltas sd = step_deltas(R, cont, cont_blocks, T);
    R = scatter_add_rows(R, sd.rows, sd.delta, index_select(dec.weight, 0, ids(sd.perm, dev).ids));
    active = cont;
  }
  Tensor fin = policy_->finish();
  if (fin.defined()) out.objective = out.objective.defined() ? out.objective + fin : fin;
  if (balance.defined()) out.objective = out.objective.defined() ? out.objective + balance * static_cast<double>(N) : balance * static_cast<double>(N);
  last_flops_ /= static_cast<double>(N);
  return out;
}

Tensor MoB::forward(const Tensor& idx) {
  Run r = run(idx, Tensor(), false);
  return reshape(r.logits, {idx.size(0), idx.size(1), trunk_.cfg.vocab_size});
}

LossOutput MoB::loss(const Tensor& idx, const Tensor& targets) {
  if (!is_training()) {
    Tensor l = lm_loss(forward(idx), targets);
    return {l, l, {{"depth", trace_.summary().mean_depth}}, {}};
  }
  Run r = run(idx, targets, true);
  const double N = static_cast<double>(idx.numel());
  Tensor objective = r.objective * (1.0 / N);
  LossOutput out{objective, objective, {}, {}};
  out.stats["depth"] = trace_.summary().mean_depth;
  out.stats["expected_depth"] = policy_->expected_depth();
  return out;
}

std::unique_ptr<DecodeState> MoB::start_decoding(int64_t batch) {
  DG_CHECK(batch == 1, "MoB::decode: incremental decoding runs one sequence at a time (batch 1), got {}", batch);
  const int64_t per_step = mcfg_.attn_scope == AttnScope::step ? 1 : mcfg_.n_blocks;
  return trunk_.start_decoding(*this, batch, (mcfg_.max_depth + 1) * per_step);
}

// One token at a time: its path is decided step by step exactly as in
// forward() (eval halting); at step d its keys and values join the cache of
// step d (scope step) or of (step d, block k) (scope block), so later tokens
// attend to exactly the tokens that were active there.
Tensor MoB::decode(DecodeState& state, const Tensor& idx) {
  KVDecodeState& s = Trunk::decode_state(state, *this, "MoB::decode");
  check_tokens("MoB::decode", idx, trunk_.cfg.block_size - s.position, trunk_.cfg.vocab_size);
  DG_CHECK(idx.size(0) == 1, "MoB::decode: batch must be 1, got {}", idx.size(0));
  NoGradGuard no_grad;
  const int64_t T = idx.size(1), C = trunk_.cfg.n_embd, n = mcfg_.n_blocks, D = mcfg_.max_depth;
  Tensors outs;
  for (int64_t t = 0; t < T; ++t) {
    Tensor R = reshape(trunk_.embed(slice(idx, 1, t, t + 1), s.position), {1, C});
    policy_->begin(1, R.dtype());
    for (int64_t d = 0; d <= D; ++d) {
      StepContext ctx;
      ctx.step = d, ctx.max_depth = D, ctx.training = false, ctx.gen = &explore_gen_;
      ctx.probs = softmax(gate_logits(R, d), -1);
      StepDecision dec = policy_->step(ctx, {0});
      if (dec.halt[0]) break;
      const int64_t k = dec.block[0];
      nn::KVCache& cache = s.caches[mcfg_.attn_scope == AttnScope::step ? d : d * n + k];
      R = R + dec.weight * reshape(trunk_.blocks[k]->forward(reshape(R, {1, 1, C}), &cache), {1, C});
    }
    outs.push_back(reshape(trunk_.head(R), {1, 1, trunk_.cfg.vocab_size}));
    ++s.position;
  }
  return cat(outs, 1);
}

}  // namespace dg::models
