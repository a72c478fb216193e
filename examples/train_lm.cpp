// train_lm: trains a byte-level language model — dense GPT, Mixture-of-Depths,
// Mixture-of-Blocks or Mixture-of-Recursions — on the embedded arithmetic corpus (no download) or on
// any text file, then prints samples (and, for MoB, where the tokens spent
// their steps).
//
//   train_lm                                  # MoB on the synthetic corpus, defaults
//   train_lm --model dense --data bible.txt --steps 2000 --out runs/dense
//   train_lm --out runs/dense --resume --steps 4000    # continue a run exactly
//   train_lm --model mod --device cuda                  # on the first GPU (cuda:N for another)
//
// Output: a live progress bar on a terminal (plain log lines otherwise),
// metrics as JSON lines in <out>/metrics.jsonl, a checkpoint at each
// evaluation and at the end (<out>/ckpt.safetensors, written atomically),
// and for MoB the routing trace <out>/routing.json (tools/plot_routing.py
// draws it) with its page <out>/routing.html (models/trace_page.h).
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>

#include "examples/device_flag.h"
#include "examples/lm_flags.h"
#include "models/factory.h"
#include "models/generate.h"
#include "models/gpt.h"
#include "models/mob.h"
#include "models/mod.h"
#include "models/trace_page.h"
#include "models/mor.h"
#include "train/evaluate.h"
#include "train/trainer.h"

using namespace dg;

namespace {

struct Flags : examples::LMFlags {
  std::string model = "mob";
  // --steps, --batch, --lr, ... (train::train_options_table()); block and seed come from --block and --seed.
  train::TrainOptions train = defaults();
  static train::TrainOptions defaults() {
    train::TrainOptions o;
    o.steps = 2500, o.batch = 16, o.warmup = 100, o.eval_every = 500;
    return o;
  }
  int64_t samples = 4, sample_tokens = 120;
  int threads = 0;
  std::string device = "cpu";
};

std::string format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "--:--";
  const int64_t t = static_cast<int64_t>(s + 0.5);
  return fmt::format("{}:{:02d}", t / 60, t % 60);
}

// A one-line progress bar redrawn in place (terminal), or a log line every
// `every` steps (pipes, files, CI logs).
struct Progress {
  bool tty = isatty(STDOUT_FILENO) != 0;
  int64_t every = 50;
  void step(const train::StepLog& s) {
    const double eta = s.seconds / static_cast<double>(s.step) * static_cast<double>(s.total - s.step);
    std::string extra;
    if (s.stats.count("depth")) extra = fmt::format("  depth {:.2f}", s.stats.at("depth"));
    if (tty) {
      const int width = 28, filled = static_cast<int>(width * s.step / std::max<int64_t>(s.total, 1));
      fmt::print("\r[{}{}] {}/{}  loss {:.4f}  {:.0f} tok/s  ETA {}{}   ", std::string(filled, '#'),
                 std::string(width - filled, '.'), s.step, s.total, s.loss, s.tokens_per_s, format_duration(eta), extra);
      std::fflush(stdout);
    } else if (s.step % every == 0 || s.step == s.total) {
      fmt::print("step {:>5}/{}  loss {:.4f}  lr {:.2e}  {:.0f} tok/s  ETA {}{}\n", s.step, s.total, s.loss, s.lr,
                 s.tokens_per_s, format_duration(eta), extra);
      std::fflush(stdout);
    }
  }
  void eval(const train::EvalLog& e) {
    if (tty) fmt::print("\n");
    std::string acc;
    if (e.val.answers_by_level[1] + e.val.answers_by_level[4] > 0)
      acc = fmt::format("  answers {:.1f}% (by level {:.0f}/{:.0f}/{:.0f}/{:.0f}%)", 100 * e.val.answer_accuracy,
                        100 * e.val.accuracy_by_level[1], 100 * e.val.accuracy_by_level[2],
                        100 * e.val.accuracy_by_level[3], 100 * e.val.accuracy_by_level[4]);
    fmt::print("eval  step {:>5}  val loss {:.4f}  {:.2f} MFLOP/token{}\n", e.step, e.val.loss,
               e.val.flops_per_token / 1e6, acc);
    std::fflush(stdout);
  }
};

void print_routing(models::LanguageModel& model, const data::Corpus& corpus, const Flags& f) {
  data::Batch b = corpus.eval_batch(0, 1, f.gpt.block_size);
  model.eval();
  {
    NoGradGuard ng;
    model.forward(b.x.to(models::device_of(model)));
  }
  if (const models::RoutingTrace* trace = model.last_routing_trace()) {
    models::TraceSummary s = trace->summary();
    fmt::print("\n{} routing on a validation window: mean depth {:.2f} blocks, repeats {:.1f}%\n", model.kind(),
               s.mean_depth, 100 * s.repeat_rate);
    fmt::print("  depth histogram:");
    for (size_t d = 0; d < s.depth_histogram.size(); ++d) fmt::print(" {}:{}", d, s.depth_histogram[d]);
    fmt::print("\n  block share:    ");
    for (size_t k = 0; k < s.block_share.size(); ++k) fmt::print(" F{}:{:.0f}%", k, 100 * s.block_share[k]);
    fmt::print("\n");
    if (!f.train.out_dir.empty()) {
      std::string text(corpus.bytes(data::Split::val).substr(0, f.gpt.block_size));
      const std::vector<int64_t> levels = b.answer_level.to_vector<int64_t>();
      std::ofstream(f.train.out_dir + "/routing.json") << trace->to_json(text, levels);
      std::ofstream(f.train.out_dir + "/routing.html")
          << models::trace_page_html(*trace, text, levels, model.kind() + " routing: " + f.train.out_dir);
      fmt::print("  trace: {}/routing.json (pictures: /usr/bin/python3 tools/plot_routing.py {}/routing.json)\n",
                 f.train.out_dir, f.train.out_dir);
      fmt::print("  page:  {}/routing.html (each character coloured by depth; hover for its path)\n", f.train.out_dir);
    }
  }
  if (auto* mod = dynamic_cast<models::MoD*>(&model)) {
    mod->set_routing(models::MoDRouting::causal);
    train::EvalResult r = train::evaluate(*mod, corpus, f.train.batch, f.gpt.block_size, f.train.eval_batches);
    double frac = 0;
    for (double x : mod->last_stats().fraction) frac += x / static_cast<double>(mod->last_stats().fraction.size());
    mod->set_routing(models::MoDRouting::topk);
    fmt::print("\nMoD with causal routing (sampling mode): val loss {:.4f}, routed blocks process {:.1f}% of tokens\n",
               r.loss, 100 * frac);
  }
  auto* mor = dynamic_cast<models::MoR*>(&model);
  if (mor && mor->mor_config().router == models::MoRRouter::expert) {
    mor->set_routing(models::MoRRouting::causal);
    train::EvalResult r = train::evaluate(*mor, corpus, f.train.batch, f.gpt.block_size, f.train.eval_batches);
    mor->set_routing(models::MoRRouting::topk);
    fmt::print("\nMoR with causal routing (sampling mode): val loss {:.4f}, {:.2f} MFLOP/token\n", r.loss,
               r.flops_per_token / 1e6);
  }
}

void print_samples(models::LanguageModel& model, const data::Corpus& corpus, const Flags& f) {
  fmt::print("\nsamples:\n");
  std::string val = corpus.bytes(data::Split::val);
  for (int64_t i = 0; i < f.samples; ++i) {
    // Prompt: the start of a validation line (up to and including '=' on the arithmetic corpus).
    size_t start = 0;
    for (int64_t k = 0; k <= i * 7 && start < val.size(); ++k) start = val.find('\n', start) + 1;
    if (start == 0 || start >= val.size()) start = 0;
    size_t eq = val.find('=', start), nl = val.find('\n', start);
    size_t len = (eq != std::string::npos && eq < nl) ? eq - start + 1 : std::min<size_t>(16, val.size() - start);
    std::string prompt = val.substr(start, len);
    models::SampleOptions so{.max_new_tokens = f.sample_tokens, .temperature = 0.8, .top_k = 40,
                             .seed = f.gpt.seed + static_cast<uint64_t>(i), .stop_token = -1};
    std::vector<int64_t> out = models::generate(model, data::encode(prompt), so);
    std::string text = data::decode(out);
    if (dynamic_cast<data::SyntheticCorpus*>(const_cast<data::Corpus*>(&corpus)))
      text = text.substr(0, text.find('\n') == std::string::npos ? text.size() : text.find('\n'));
    fmt::print("  {}|{}\n", prompt, text);
  }
}

}  // namespace

int main(int argc, char** argv) {
  Flags f;
  CLI::App app{"Train a byte-level language model (dense GPT, Mixture-of-Depths or Mixture-of-Blocks)."};
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);  // a repeated flag: the last wins
  app.add_option("--model", f.model, "dense | mod | mob | moe | mor")->check(CLI::IsMember({"dense", "mod", "mob", "moe", "mor"}))->capture_default_str();
  examples::add_flags(app, train::train_options_table(), f.train);
  app.add_option("--threads", f.threads, "CPU threads (0: DG_NUM_THREADS or all cores)")->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--samples", f.samples, "samples to print at the end")->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--sample-tokens", f.sample_tokens, "bytes per sample")->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  examples::add_device_flag(app, f.device);
  examples::add_model_flags(app, f);
  CLI11_PARSE(app, argc, argv);

  try {
    // Everything that can be checked before a model is built or a step runs.
    train::TrainOptions& o = f.train;
    o.block = f.gpt.block_size, o.seed = f.gpt.seed;
    examples::fit_default_warmup(app, o);
    train::validate(o);
    const std::string config = examples::model_config(f, f.model);
    const Device device = examples::open_device(f.device);
    if (f.threads > 0) set_num_threads(f.threads);
    auto corpus = examples::load_corpus(f.data, f.gpt.seed);
    train::check_data(*corpus, o.block);
    auto model = models::make_model(f.model, config);
    model->to(device);  // before the trainer: its optimizer state and a resumed checkpoint follow the weights
    fmt::print("train_lm: {} model on {}, {:.2f}M parameters, data {} (train {} bytes, val {}); unigram entropy {:.3f} "
               "nats\n",
               model->kind(), device, static_cast<double>(model->num_parameters()) / 1e6, corpus->source(),
               corpus->size(data::Split::train), corpus->size(data::Split::val), corpus->unigram_entropy());
    train::Trainer trainer(*model, *corpus, o);
    if (o.resume) fmt::print("resumed from {}/ckpt.safetensors at step {}\n", o.out_dir, trainer.step());
    Progress progress;
    trainer.run([&](const train::StepLog& s) { progress.step(s); },
                [&](const train::EvalLog& e) { progress.eval(e); });
    fmt::print("done: {} steps, {:.0f} tokens/s, {:.3g} training FLOPs; final val loss {:.4f} (unigram {:.3f}, "
               "bigram {:.3f}); {} steps skipped (non-finite)\n",
               trainer.step(), trainer.tokens_per_s(), trainer.train_flops(), trainer.last_eval().val.loss,
               corpus->unigram_entropy(), corpus->bigram_entropy(), trainer.skipped());
    print_routing(*model, *corpus, f);
    print_samples(*model, *corpus, f);
  } catch (const std::exception& e) {  // dg::Error included
    fmt::print(stderr, "train_lm: {}\n", e.what());
    return 1;
  }
  return 0;
}
