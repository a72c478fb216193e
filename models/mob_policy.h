#pragma once
// Routing policies of Mixture-of-Blocks: given the gate's probabilities at
// step d for the active tokens, decide which tokens halt, which block each
// remaining token runs, with what weight, and what the training objective
// adds. The model owns the gate and the batched execution; a policy owns only
// these decisions, so a new scheme is a new class (see docs in models/mob.h).
//
// Legend: Na = tokens active at this step, n = blocks, column n of the gate
// probabilities is "return" (halt).
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "autograd/ops.h"

namespace dg::models {

enum class BlockWeight { q, straight_through };
enum class Explore { none, gumbel, epsilon };

// What a policy sees at one step.
struct StepContext {
  int64_t step = 0;       // d
  int64_t max_depth = 0;  // D_max: return is forced at d == D_max
  bool training = false;
  Tensor probs;           // (Na, n + 1), differentiable
  Tensor ce;              // (Na) CE of the LM head on the current residual, when needs_step_loss()
  Generator* gen = nullptr;
};

// What it decides.
struct StepDecision {
  std::vector<uint8_t> halt;   // (Na): 1 = output now
  std::vector<int64_t> block;  // (Na): the block of each continuing token (ignored where halt)
  Tensor weight;               // (Nc): w of R + w * delta for the continuing tokens (differentiable)
  Tensor loss;                 // scalar sum over tokens added to the objective (may be undefined)
  // Host values for the routing trace: the probability of halting at this
  // step (Na), and w's values (Nc; left empty, the model reads `weight`).
  std::vector<double> halt_prob;
  std::vector<double> weight_value;
};

class RoutingPolicy {
 public:
  virtual ~RoutingPolicy() = default;
  virtual std::string name() const = 0;
  // Whether StepContext::ce must be computed (the per-step LM head costs 2CV per token).
  virtual bool needs_step_loss(bool training) const = 0;
  // A new forward over N tokens.
  virtual void begin(int64_t N, DType dtype) = 0;
  // `active` lists the policy's own token ids (0..N-1) of the rows in ctx.
  virtual StepDecision step(const StepContext& ctx, const std::vector<int64_t>& active) = 0;
  // Objective terms after the last step (e.g. the KL to the prior); may be undefined.
  virtual Tensor finish() = 0;
  // Expected number of steps per token of the last forward (stats).
  virtual double expected_depth() const = 0;
};

// Block choice shared by the policies: argmax over the renormalised block
// probabilities q_k = p_k / (1 - p_return), with optional exploration during
// training, and the weight w = q_k or 1 - sg(q_k) + q_k (straight-through:
// value 1, gradient of q_k).
struct BlockChooser {
  BlockWeight weight = BlockWeight::q;
  Explore explore = Explore::none;
  double explore_param = 0;  // Gumbel temperature or epsilon
  // q (Na, n) -> chosen blocks and their weights (Na), reading q to the host.
  void choose(const Tensor& q, bool training, Generator* gen, std::vector<int64_t>& block, Tensor& w) const;
  // The same from q's values already on the host (qv, row-major Na * n): no
  // read; w_value gets w's values.
  void choose(const Tensor& q, const std::vector<double>& qv, bool training, Generator* gen,
              std::vector<int64_t>& block, Tensor& w, std::vector<double>& w_value) const;
};

struct PonderOptions {
  double prior = 0.3;   // geometric prior parameter lambda_p
  double kl = 0.01;     // kappa
  double eps = 0.1;     // stop once the surviving mass is below eps
  double depth_target = 0, depth_weight = 0;  // optional (E[steps] - D*)^2 budget
};

// PonderNet-style halting: lambda_d = p_return; h_d = lambda_d * prod_{j<d}(1 - lambda_j);
// objective sum_d h_d CE_d + kl * KL(h || geometric(prior)). Training stops a
// token once its surviving mass is under eps (that mass is charged to the
// current step); evaluation halts at the first d with lambda_d > 0.5.
std::unique_ptr<RoutingPolicy> make_ponder_policy(const PonderOptions& opt, BlockChooser chooser);

struct BiasOptions {
  double ponder_cost = 0.01;  // per applied block
  double depth_target = 0, depth_weight = 0;
};

// The literal scheme: argmax over all n + 1 choices (return included, with the
// +beta*d bias the gate adds), halt when return wins; objective: the LM loss
// at the output plus ponder_cost per step taken. Kept for comparison: the
// return choice gets no gradient from the LM loss and collapses to step 0.
std::unique_ptr<RoutingPolicy> make_bias_policy(const BiasOptions& opt, BlockChooser chooser);

}  // namespace dg::models
