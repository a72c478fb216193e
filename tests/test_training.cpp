// Short training runs on the embedded arithmetic corpus (seconds each; label
// "training", so the sanitizer pass of .ci/run leaves them out):
//  - the dense GPT's loss falls well below the unigram entropy (1500 steps:
//    at 1000 the final loss still moved by +-0.025 with the GEMM's rounding
//    order alone, thread count or OpenBLAS vs Eigen, which put it at the
//    threshold; at 1500 it ends 0.33 below it on each of those);
//  - the default Mixture-of-Blocks recipe does not collapse (mean depth
//    between 1 and D_max - 1, at least two blocks with >= 10 % of the block
//    applications) and ends well below the bigram loss;
//  - Mixture-of-Depths' causal predictor learns top-k membership (> 90 %).
#include <cmath>

#include "data/synthetic.h"
#include "models/gpt.h"
#include "models/mob.h"
#include "models/mod.h"
#include "train/trainer.h"
#include "testing.h"

using namespace dg;
using namespace dg::models;
using namespace dg::train;

namespace {

GPTConfig small_gpt() {
  return {.n_layer = 2, .n_head = 2, .n_embd = 64, .block_size = 48, .vocab_size = 256, .dropout = 0.0,
          .tied_head = true, .seed = 1, .dtype = DType::f32};
}

TrainOptions short_run(int64_t steps) {
  TrainOptions o;
  o.steps = steps, o.batch = 16, o.block = 48, o.lr = 3e-3, o.min_lr = 3e-4, o.warmup = 30, o.eval_every = 0;
  o.eval_batches = 4, o.seed = 3;
  return o;
}

}  // namespace

TEST(Training, DenseLossFallsWellBelowUnigram) {
  data::SyntheticCorpus corpus(5, 300'000, 60'000);
  GPT model(small_gpt());
  Trainer t(model, corpus, short_run(1500));
  t.run();
  const double unigram = corpus.unigram_entropy();
  EXPECT_LT(t.last_eval().val.loss, unigram - 0.4) << "unigram " << unigram;
}

TEST(Training, DefaultMoBDoesNotCollapseAndBeatsBigram) {
  data::SyntheticCorpus corpus(6, 300'000, 60'000);
  MoBConfig c;  // the default recipe: ponder halting, dense-path init, step scope, w = q
  c.gpt = small_gpt();
  c.n_blocks = 4;
  MoB model(c);
  Trainer t(model, corpus, short_run(1000));
  t.run();
  const double bigram = corpus.bigram_entropy();
  EXPECT_LT(t.last_eval().val.loss, bigram - 0.15) << "bigram " << bigram;
  // Routing on validation windows.
  model.eval();
  NoGradGuard ng;
  model.forward(corpus.eval_batch(0, 8, 48).x);
  TraceSummary s = model.last_trace().summary();
  EXPECT_GT(s.mean_depth, 1.0);
  EXPECT_LT(s.mean_depth, static_cast<double>(c.max_depth - 1));
  int busy = 0;
  for (double share : s.block_share) busy += share >= 0.10;
  EXPECT_GE(busy, 2) << "block shares " << s.block_share[0] << " " << s.block_share[1] << " " << s.block_share[2]
                     << " " << s.block_share[3];
}

TEST(Training, MoDPredictorLearnsTopkMembership) {
  data::SyntheticCorpus corpus(7, 300'000, 60'000);
  MoDConfig c;
  c.gpt = small_gpt();
  c.capacity = 0.25;
  c.mod_every = 1;
  c.predictor_weight = 0.1;
  c.aux_weight = 0.1;
  MoD model(c);
  Trainer t(model, corpus, short_run(300));
  t.run();
  model.eval();
  model.set_routing(MoDRouting::topk);
  LossOutput out = [&] {
    NoGradGuard ng;
    data::Batch b = corpus.eval_batch(1, 16, 48);
    return model.loss(b.x, b.y);
  }();
  const models::LossValues v = models::read_values(out);
  EXPECT_GT(v.stats.at("predictor_acc"), 0.90);
  EXPECT_GT(v.stats.at("router_acc"), 0.90);
}

// A FLOP budget with the FLOP schedule: training runs until the budget is
// spent (not for `steps`), and the learning rate reaches min_lr exactly when
// it is, whatever each step costs.
TEST(Training, FlopScheduleEndsAtTheBudget) {
  data::SyntheticCorpus corpus(5);
  GPTConfig g = small_gpt();
  g.n_layer = 1;
  GPT model(g);
  TrainOptions o;
  o.batch = 2, o.block = 16, o.warmup = 2, o.eval_every = 0, o.eval_batches = 1, o.lr = 1e-3, o.min_lr = 1e-4;
  const double step_flops = 3.0 * dense_flops_per_token(g.n_layer, g.n_embd, g.vocab_size, o.block) *
                            static_cast<double>(o.batch * o.block);
  o.steps = 5;                         // a deliberately low estimate: the budget holds 12 steps
  o.flop_budget = 11.5 * step_flops;
  o.flop_schedule = true;
  Trainer trainer(model, corpus, o);
  std::vector<double> lrs;
  trainer.run([&](const StepLog& s) { lrs.push_back(s.lr); });
  EXPECT_EQ(trainer.step(), 12);       // the first step at or past the budget
  EXPECT_GE(trainer.train_flops(), o.flop_budget);
  ASSERT_EQ(lrs.size(), 12u);
  EXPECT_LT(lrs[0], 0.01 * o.lr);      // warmup starts near 0
  // Warmup spans 2 of the 5 estimated steps, i.e. 40 % of the budget (4.6
  // real steps); then the cosine decays to min_lr at the budget.
  EXPECT_LT(lrs[3], lrs[4]);
  for (size_t i = 6; i < lrs.size(); ++i) EXPECT_LT(lrs[i], lrs[i - 1]) << i;
  EXPECT_GT(lrs.back(), o.min_lr);     // the last step starts before the budget is spent...
  EXPECT_LT(lrs.back(), 1.2 * o.min_lr);  // ...but within 4 % of it
  // Without the FLOP schedule the same options stop at `steps`.
  GPT model2(g);
  o.flop_schedule = false;
  Trainer t2(model2, corpus, o);
  t2.run();
  EXPECT_EQ(t2.step(), 5);
  o.flop_budget = 0, o.flop_schedule = true;
  EXPECT_DG_ERROR(Trainer(model2, corpus, o), "--flop-schedule needs a --flop-budget");
}
