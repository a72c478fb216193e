#pragma once
// Command-line flags from a config table (models/config_table.h): every field
// with a flag becomes a CLI11 option that sets the field through the table,
// so a flag gets the same checks and messages as the JSON key, and --help
// shows the field's help, allowed values and default.
//
//   models::GPTConfig g;
//   examples::add_flags(app, models::gpt_config_table(), g);      // --layers, --heads, ...
//   examples::add_flags(app, train::train_options_table(), o, {"--lr", "--batch"});  // only these
#include <CLI/CLI.hpp>
#include <algorithm>
#include <string>
#include <vector>

#include "models/config_table.h"
#include "train/trainer.h"

namespace dg::examples {

// The placeholder --help shows after a flag.
template <class C>
std::string flag_type(const config::Field<C>& f) {
  if (f.allowed.rfind("an integer", 0) == 0) return "INT";
  if (f.allowed.rfind("a number", 0) == 0) return "FLOAT";
  if (f.allowed.rfind("one of", 0) == 0) return "NAME";
  return "TEXT";
}

// Adds the flags of table t that fill c (all of them, or those in `only`).
// c and the table must outlive parsing.
template <class C>
void add_flags(CLI::App& app, const config::Table<C>& t, C& c, const std::vector<std::string>& only = {}) {
  for (const config::Field<C>& f : t) {
    if (f.flag.empty() || (!only.empty() && std::find(only.begin(), only.end(), f.flag) == only.end())) continue;
    const std::string help = f.is_switch ? f.help : fmt::format("{} ({})", f.help, f.allowed);
    if (f.is_switch) {
      app.add_flag_function(f.flag, [&c, &f](int64_t) { f.set(c, true, f.flag); }, help);
      continue;
    }
    const nlohmann::json now = f.get(c);
    app.add_option(
           f.flag,
           [&c, &f](const CLI::results_t& r) {
             try {
               config::set_from_text(f, c, r.back());
             } catch (const Error& e) {
               throw CLI::ValidationError(e.what());
             }
             return true;
           },
           help)
        ->type_name(flag_type(f))
        ->default_str(now.is_string() ? now.get<std::string>() : now.dump());
  }
}

// The default --warmup (100) is cut to --steps for a short run; a --warmup the
// user gave stays as given, and train::validate refuses it above --steps.
inline void fit_default_warmup(const CLI::App& app, train::TrainOptions& o) {
  if (app.count("--warmup") == 0) o.warmup = std::min(o.warmup, o.steps);
}

}  // namespace dg::examples
