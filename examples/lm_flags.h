#pragma once
// The model and data flags shared by train_lm and compare_routing: one Flags
// struct, the CLI11 options that fill it, and the model config JSON it
// describes (what models::make_model takes).
//
//   LMFlags f;
//   add_model_flags(app, f);        // --layers, --embd, ..., MoD, MoB, MoE and MoR groups (from the config tables)
//   std::string cfg = model_config(f, "mob");
//   auto model = models::make_model("mob", cfg);
#include <CLI/CLI.hpp>
#include <memory>
#include <string>

#include "data/synthetic.h"
#include "data/text.h"
#include "data/tokenizer.h"
#include "examples/config_flags.h"
#include "models/gpt.h"
#include "models/mob.h"
#include "models/mod.h"
#include "models/moe.h"
#include "models/mor.h"

namespace dg::examples {

struct LMFlags {
  std::string data = "synthetic";
  // --layers, --heads, --embd, --block, --dropout, --seed (models::gpt_config_table()).
  models::GPTConfig gpt{.n_layer = 4, .n_head = 4, .n_embd = 128, .block_size = 64, .vocab_size = data::kVocabSize,
                        .dropout = 0.0, .tied_head = true, .seed = 1337, .dtype = DType::f32};
  models::MoDConfig mod;  // its own fields (models::mod_fields()); the GPT part is `gpt`
  models::MoBConfig mob;  // its own fields (models::mob_fields()); the GPT part is `gpt`
  models::MoEConfig moe;  // its own fields (models::moe_fields()); the GPT part is `gpt`
  models::MoRConfig mor;  // its own fields (models::mor_fields()); the GPT part is `gpt`
};

// The config JSON of model `kind` (dense | mod | mob | moe | mor) that the flags describe,
// after the checks across fields (a dg::Error naming the keys and flags).
inline std::string model_config(const LMFlags& f, const std::string& kind) {
  models::validate(f.gpt, kind == "mob" ? f.mob.n_blocks : kind == "mor" ? f.mor.cycle : f.gpt.n_layer, "model flags");
  if (kind == "dense") return models::to_json(f.gpt);
  if (kind == "mor") {
    models::MoRConfig c = f.mor;
    c.gpt = f.gpt;
    models::validate(c, "model flags");
    return models::to_json(c);
  }
  if (kind == "mod") {
    models::MoDConfig c = f.mod;
    c.gpt = f.gpt;
    return models::to_json(c);
  }
  if (kind == "moe") {
    models::MoEConfig c = f.moe;
    c.gpt = f.gpt;
    models::validate(c, "model flags");
    return models::to_json(c);
  }
  models::MoBConfig c = f.mob;
  c.gpt = f.gpt;
  models::validate(c, "model flags");
  return models::to_json(c);
}

// "synthetic" (the embedded arithmetic corpus) or a text file.
inline std::unique_ptr<data::Corpus> load_corpus(const std::string& spec, uint64_t seed) {
  if (spec == "synthetic") return std::make_unique<data::SyntheticCorpus>(seed);
  return std::make_unique<data::TextCorpus>(data::TextCorpus::from_file(spec));
}

// --data, the GPT flags and the MoD / MoB / MoR option groups, from the config tables.
inline void add_model_flags(CLI::App& app, LMFlags& f) {
  app.add_option("--data", f.data, "'synthetic' (embedded arithmetic corpus) or a text file")->capture_default_str();
  add_flags(app, models::gpt_config_table(), f.gpt);
  add_flags(*app.add_option_group("Mixture-of-Depths (--model mod)"), models::mod_fields(), f.mod);
  add_flags(*app.add_option_group("Mixture-of-Blocks (--model mob)"), models::mob_fields(), f.mob);
  add_flags(*app.add_option_group("Mixture-of-Experts (--model moe)"), models::moe_fields(), f.moe);
  add_flags(*app.add_option_group("Mixture-of-Recursions (--model mor)"), models::mor_fields(), f.mor);
}

}  // namespace dg::examples
