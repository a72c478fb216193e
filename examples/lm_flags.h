#pragma once
// The model and data flags shared by train_lm and compare_routing: one Flags
// struct, the CLI11 options that fill it, and the model config JSON it
// describes (what models::make_model takes).
//
//   LMFlags f;
//   add_model_flags(app, f);        // --layers, --embd, ..., MoD and MoB groups
//   std::string cfg = model_config(f, "mob");
//   auto model = models::make_model("mob", cfg);
#include <CLI/CLI.hpp>
#include <memory>
#include <string>

#include "data/synthetic.h"
#include "data/text.h"
#include "data/tokenizer.h"
#include "models/gpt.h"
#include "models/mob.h"
#include "models/mod.h"

namespace dg::examples {

struct LMFlags {
  std::string data = "synthetic";
  int64_t block = 64, layers = 4, heads = 4, embd = 128;
  double dropout = 0.0;
  uint64_t seed = 1337;
  // MoD
  double capacity = 0.125;
  int64_t mod_every = 2;
  std::string causal = "both", router_weight = "raw";
  // MoB
  int64_t blocks = 4, max_depth = 6;
  std::string halting = "ponder", gate_init = "dense-path", attn_scope = "step", weight = "q", explore = "none";
  double prior = 0.3, kl = 0.01, eps = 0.1, depth_target = 0.0, depth_weight = 0.0, return_bias = 0.0,
         balance = 0.0, explore_param = 0.0, ponder_cost = 0.01;
};

// Sets the string field `key` of a flat JSON object to `value` (the enum
// fields; make_model's parser then rejects an unknown value by name).
inline void set_json_string(std::string& json, const std::string& key, const std::string& value) {
  const std::string from = "\"" + key + "\":\"";
  const size_t p = json.find(from);
  if (p == std::string::npos) throw Error(fmt::format("model config: no string field '{}' in {}", key, json));
  const size_t b = p + from.size(), e = json.find('"', b);
  json.replace(b, e - b, value);
}

// The config JSON of model `kind` (dense | mod | mob) that the flags describe.
inline std::string model_config(const LMFlags& f, const std::string& kind) {
  models::GPTConfig g{.n_layer = f.layers, .n_head = f.heads, .n_embd = f.embd, .block_size = f.block,
                      .vocab_size = data::kVocabSize, .dropout = f.dropout, .tied_head = true, .seed = f.seed,
                      .dtype = DType::f32};
  if (kind == "dense") return models::to_json(g);
  if (kind == "mod") {
    models::MoDConfig c;
    c.gpt = g, c.capacity = f.capacity, c.mod_every = f.mod_every;
    std::string j = models::to_json(c);
    set_json_string(j, "causal", f.causal == "aux" ? "aux_loss" : f.causal);
    set_json_string(j, "router_weight", f.router_weight);
    return j;
  }
  models::MoBConfig c;
  c.gpt = g, c.n_blocks = f.blocks, c.max_depth = f.max_depth, c.prior = f.prior, c.kl = f.kl, c.eps = f.eps;
  c.depth_target = f.depth_target, c.depth_weight = f.depth_weight, c.return_bias = f.return_bias;
  c.balance = f.balance, c.explore_param = f.explore_param, c.ponder_cost = f.ponder_cost;
  std::string j = models::to_json(c);
  set_json_string(j, "halting", f.halting), set_json_string(j, "gate_init", f.gate_init);
  set_json_string(j, "attn_scope", f.attn_scope), set_json_string(j, "weight", f.weight);
  set_json_string(j, "explore", f.explore);
  return j;
}

// "synthetic" (the embedded arithmetic corpus) or a text file.
inline std::unique_ptr<data::Corpus> load_corpus(const std::string& spec, uint64_t seed) {
  if (spec == "synthetic") return std::make_unique<data::SyntheticCorpus>(seed);
  return std::make_unique<data::TextCorpus>(data::TextCorpus::from_file(spec));
}

// --data, --block, --layers, --heads, --embd, --dropout, --seed and the MoD /
// MoB option groups.
inline void add_model_flags(CLI::App& app, LMFlags& f) {
  app.add_option("--data", f.data, "'synthetic' (embedded arithmetic corpus) or a text file")->capture_default_str();
  app.add_option("--block", f.block, "sequence length T (also the model's block_size)")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--layers", f.layers, "dense/MoD: transformer blocks")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--heads", f.heads, "attention heads")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--embd", f.embd, "channels C")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--dropout", f.dropout, "dropout probability")->capture_default_str();
  app.add_option("--seed", f.seed, "seed of the weights, the data order and the synthetic corpus")->capture_default_str();
  auto* mod = app.add_option_group("Mixture-of-Depths (--model mod)");
  mod->add_option("--capacity", f.capacity, "share of tokens a routed block processes (0, 1]")->capture_default_str();
  mod->add_option("--mod-every", f.mod_every, "route every N-th block")->capture_default_str();
  mod->add_option("--causal", f.causal, "causal routing for sampling: aux | predictor | both")
      ->check(CLI::IsMember({"aux", "predictor", "both"}))->capture_default_str();
  mod->add_option("--router-weight", f.router_weight, "raw | sigmoid | none")->check(CLI::IsMember({"raw", "sigmoid", "none"}))->capture_default_str();
  auto* mob = app.add_option_group("Mixture-of-Blocks (--model mob)");
  mob->add_option("--blocks", f.blocks, "number of blocks n")->check(CLI::PositiveNumber)->capture_default_str();
  mob->add_option("--max-depth", f.max_depth, "D_max: return forced at this step")->check(CLI::PositiveNumber)->capture_default_str();
  mob->add_option("--halting", f.halting, "ponder (learned, default) | bias (the literal scheme)")
      ->check(CLI::IsMember({"ponder", "bias"}))->capture_default_str();
  mob->add_option("--gate-init", f.gate_init, "dense-path | uniform")->check(CLI::IsMember({"dense-path", "uniform"}))->capture_default_str();
  mob->add_option("--prior", f.prior, "ponder: geometric prior lambda_p")->capture_default_str();
  mob->add_option("--kl", f.kl, "ponder: KL weight kappa")->capture_default_str();
  mob->add_option("--eps", f.eps, "ponder: stop computing under this surviving mass")->capture_default_str();
  mob->add_option("--depth-target", f.depth_target, "D* of the optional depth budget")->capture_default_str();
  mob->add_option("--depth-weight", f.depth_weight, "weight of (E[steps] - D*)^2 (0: off)")->capture_default_str();
  mob->add_option("--return-bias", f.return_bias, "beta: + beta*d on the return logit")->capture_default_str();
  mob->add_option("--ponder-cost", f.ponder_cost, "bias halting: cost per step")->capture_default_str();
  mob->add_option("--attn-scope", f.attn_scope, "step (all active tokens) | block (same block only)")
      ->check(CLI::IsMember({"step", "block"}))->capture_default_str();
  mob->add_option("--weight", f.weight, "q | straight-through")->check(CLI::IsMember({"q", "straight-through"}))->capture_default_str();
  mob->add_option("--balance", f.balance, "load-balance loss weight")->capture_default_str();
  mob->add_option("--explore", f.explore, "none | gumbel | epsilon")->check(CLI::IsMember({"none", "gumbel", "epsilon"}))->capture_default_str();
  mob->add_option("--explore-param", f.explore_param, "Gumbel noise scale or epsilon")->capture_default_str();
}

}  // namespace dg::examples
