// Tour, chapter 9: Mixture-of-Blocks (docs/tour/09_mob.md), part 2: the part
// of the tape that one token's output depends on, as Graphviz DOT.
//
//   tour_09_token_graph [token_graph.dot]
//
// The forward is batched: one node serves many tokens (grouped ops run every
// block's rows at once). So the view is computed, not read off the graph:
// backward from the logits with a gradient that is nonzero only on the chosen
// token's row (dg::gradient_flow), keeping every node and edge that carries a
// nonzero gradient. Work done only for other tokens (steps the token did not
// run, tokens it cannot attend to, other sequences) carries exactly zero and
// drops out. Block ops are labelled by step and block: the step from where the
// node sits on the tape (between two routing decisions), the block from the
// parameters it sends a nonzero gradient to.
#include <fmt/ranges.h>

#include <fstream>
#include <map>
#include <set>

#include "autograd/graphviz.h"
#include "examples/tour/check.h"
#include "examples/tour/tiny_mob.h"

using namespace dg;
using namespace dg::models;

namespace {

// A routing policy that forwards to another and remembers, at each step, the
// sequence number of the gate's softmax: where on the tape the step's
// routing decision is made.
class MarkSteps : public RoutingPolicy {
 public:
  MarkSteps(std::unique_ptr<RoutingPolicy> inner, std::vector<uint64_t>* marks)
      : inner_(std::move(inner)), marks_(marks) {}
  std::string name() const override { return inner_->name(); }
  bool needs_step_loss(bool training) const override { return inner_->needs_step_loss(training); }
  void begin(int64_t N, DType dtype) override {
    marks_->clear();
    inner_->begin(N, dtype);
  }
  StepDecision step(const StepContext& ctx, const std::vector<int64_t>& active) override {
    marks_->push_back(ctx.probs.grad_fn()->seq());
    return inner_->step(ctx, active);
  }
  Tensor finish() override { return inner_->finish(); }
  double expected_depth() const override { return inner_->expected_depth(); }

 private:
  std::unique_ptr<RoutingPolicy> inner_;
  std::vector<uint64_t>* marks_;
};

using BlocksPerStep = std::vector<std::set<int64_t>>;  // [step] -> blocks

// What the trace says token (b, t)'s output depends on, per step: at each
// step d before it returned, the block it ran and (step scope: attention over
// the tokens of its sequence active at d, causal) the block of every earlier
// token that ran one at d, whose keys and values it read. Dependencies
// through another token's residual add no other block: that token's own
// inputs came from steps where (b, t) was active too.
BlocksPerStep cone_from_trace(const RoutingTrace& tr, int64_t b, int64_t t) {
  BlocksPerStep blocks(tr.max_depth + 1);
  for (int64_t pos = 0; pos <= t; ++pos)
    for (const TraceStep& s : tr.tokens[b * tr.T + pos])
      if (s.block >= 0 && s.step < tr.depth(b * tr.T + t)) blocks[s.step].insert(s.block);
  return blocks;
}

// The block index k of a parameter named "blocks.k.<...>", else -1.
int64_t block_of(const std::string& name) {
  if (name.rfind("blocks.", 0) != 0) return -1;
  return std::stoll(name.substr(7, name.find('.', 7) - 7));
}

bool is_gate_param(const std::string& name) {
  return name.rfind("gate", 0) == 0 || name == "step_bias";
}

// How the nodes of one forward are labelled.
struct Labelling {
  std::map<const Node*, std::string> param_name;        // leaves that are parameters
  std::map<const Node*, int64_t> step;                  // op nodes -> step (-1: before the first)
  std::map<const Node*, std::set<std::string>> feeds;   // op nodes -> parameters sent a nonzero gradient

  std::set<int64_t> blocks(const Node* n) const {
    std::set<int64_t> out;
    if (auto it = feeds.find(n); it != feeds.end())
      for (const std::string& p : it->second)
        if (block_of(p) >= 0) out.insert(block_of(p));
    return out;
  }
  std::string label(const Node& n) const {
    if (n.is_accumulate_grad()) return param_name.count(&n) ? param_name.at(&n) : "";
    std::string text = step.at(&n) < 0 ? "input" : fmt::format("step {}", step.at(&n));
    const std::set<int64_t> ks = blocks(&n);
    if (!ks.empty()) text += fmt::format(" · block{} {}", ks.size() > 1 ? "s" : "", fmt::join(ks, ", "));
    return text;
  }
  std::string cluster(const Node& n) const {
    if (n.is_accumulate_grad()) return "";
    return step.at(&n) < 0 ? "input: embeddings" : fmt::format("step {}", step.at(&n));
  }
};

// Steps from the marks: a node between the decisions of steps d and d + 1 is
// step d's work, except the gate that makes the next decision (the ops on the
// gate's parameters and what they feed within that stretch): step d + 1.
Labelling label_nodes(const MoB& model, const Tensor& root, const std::vector<uint64_t>& marks,
                      const GradientFlow& flow) {
  Labelling l;
  std::map<const AutogradMeta*, std::string> by_meta;
  for (auto& [name, p] : model.named_parameters()) by_meta[p.impl()->autograd.get()] = name;
  auto param = [&](const Node* n) -> std::string {
    if (!n || !n->is_accumulate_grad()) return "";
    auto meta = static_cast<const AccumulateGrad*>(n)->meta();
    return meta && by_meta.count(meta.get()) ? by_meta.at(meta.get()) : "";
  };
  std::map<const Node*, bool> gate;
  for (const Node* n : tape({root})) {
    if (n->is_accumulate_grad()) {
      if (!param(n).empty()) l.param_name[n] = param(n);
      continue;
    }
    const int64_t window = std::lower_bound(marks.begin(), marks.end(), n->seq()) - marks.begin() - 1;
    bool is_gate = false;
    for (const Edge& e : n->next()) {
      const Node* m = e.node.get();
      is_gate |= is_gate_param(param(m)) || (gate.count(m) && gate[m] && l.step[m] == window + 1);
    }
    gate[n] = is_gate;
    l.step[n] = is_gate ? window + 1 : window;
  }
  for (const auto& [n, i] : flow.edges)
    if (std::string p = param(n->next()[i].node.get()); !p.empty()) l.feeds[n].insert(p);
  return l;
}

// Per step, the blocks whose parameters the kept block ops of that step feed.
BlocksPerStep blocks_in_flow(const Labelling& l, const GradientFlow& flow, int64_t max_depth) {
  BlocksPerStep out(max_depth + 1);
  for (const Node* n : flow.nodes)
    if (!n->is_accumulate_grad() && l.step.at(n) >= 0)
      for (int64_t k : l.blocks(n)) out[l.step.at(n)].insert(k);
  return out;
}

std::string show(const BlocksPerStep& s) {
  std::string out;
  for (size_t d = 0; d < s.size(); ++d) {
    out += fmt::format(" step {}: {{", d);
    for (int64_t k : s[d]) out += fmt::format("{}{}", out.back() == '{' ? "" : ",", k);
    out += "}";
  }
  return out;
}

// The logits' gradient seed: random values on token (b, t)'s row, zero elsewhere.
Tensor row_seed(const Tensor& logits, int64_t b, int64_t t) {
  Generator gen(5);
  Tensor seed = zeros(logits.shape(), {logits.dtype()});
  Tensor row = select(select(seed, 0, b), 0, t);
  copy_(row, randn({logits.size(2)}, {logits.dtype()}, &gen));
  return seed;
}

}  // namespace

int main(int argc, char** argv) try {
  tour::Checks check;
  const char* dot_path = argc > 1 ? argv[1] : "token_graph.dot";
  auto model = tour::tiny_mob();
  model->eval();
  std::vector<uint64_t> marks;
  const MoBConfig& c = model->mob_config();
  model->set_policy(std::make_unique<MarkSteps>(make_ponder_policy({c.prior, c.kl, c.eps}, BlockChooser{}), &marks));
  Tensor logits = model->forward(tour::tiny_tokens(1));  // (B, T, V), the graph recorded
  const RoutingTrace& trace = model->last_trace();

  // The chosen token: sequence 0, position 1. It returns after two steps.
  const int64_t b = 0, t = 1, token = b * trace.T + t;
  GradientFlow flow = gradient_flow({logits}, {row_seed(logits, b, t)});
  Labelling l = label_nodes(*model, logits, marks, flow);
  const size_t all = tape({logits}).size();
  fmt::print("tape: {} nodes; the part token {} (sequence {}, position {}) depends on: {} nodes, {} edges\n", all,
             token, b, t, flow.nodes.size(), flow.edges.size());
  std::map<std::string, int> dropped;
  for (const Node* n : tape({logits}))
    if (!flow.contains(n)) ++dropped[n->name()];
  fmt::print("dropped (exactly zero gradient):");
  for (auto& [name, count] : dropped) fmt::print(" {} x{}", name, count);
  fmt::print("\n");

  BlocksPerStep own(c.max_depth + 1);
  for (const TraceStep& s : trace.tokens[token])
    if (s.block >= 0) own[s.step].insert(s.block);
  BlocksPerStep cone = cone_from_trace(trace, b, t), got = blocks_in_flow(l, flow, c.max_depth);
  fmt::print("its own path:                      {}\n", show(own));
  fmt::print("blocks it depends on, by the trace:{}\n", show(cone));
  fmt::print("blocks in its part of the tape:    {}\n", show(got));
  bool covers = true;
  for (size_t d = 0; d < own.size(); ++d)
    for (int64_t k : own[d]) covers &= got[d].count(k) > 0;
  check.expect(covers, "the kept nodes include, at every step, the block the trace says the token ran");
  check.expect(got == cone, "and exactly the blocks of the tokens it attends to (causal, same sequence), per step");
  const int64_t halt_step = trace.depth(token);
  bool later_empty = true;
  for (int64_t d = halt_step; d <= c.max_depth; ++d) later_empty &= got[d].empty();
  check.expect(later_empty, fmt::format("no block op of step {} or later is kept: the token returned at step {}",
                                        halt_step, halt_step));
  bool head_once = true;
  for (const auto& [n, params] : l.feeds)
    if (params.count("ln_f.weight")) head_once &= l.step.at(n) == halt_step;
  check.expect(head_once,
               fmt::format("the LM head's ops kept are those of step {}, where the token returned", halt_step));

  // Token 0 ran one block at step 0 and returned at step 1: the chosen token
  // read its keys and values at step 0, and nothing else of it. So of that
  // block only ln1 and the q|k|v projection get a gradient, not proj or the MLP.
  const auto& path0 = trace.tokens[b * trace.T];
  if (path0.size() == 2 && path0[0].block != *own[0].begin()) {
    const int64_t k0 = path0[0].block;
    std::set<std::string> fed;
    for (const auto& [n, params] : l.feeds)
      for (const std::string& p : params)
        if (block_of(p) == k0) fed.insert(p.substr(p.find('.', 7) + 1));
    fmt::print("of block {} (token 0's block at step 0) it depends on: {}\n", k0, fmt::join(fed, ", "));
    check.expect(fed == std::set<std::string>{"ln1.weight", "ln1.bias", "attn.qkv.weight", "attn.qkv.bias"},
                 "through attention it reads token 0's keys and values only: ln1 and qkv of that block, no MLP");
  } else {
    check.expect(false, "the trace no longer has token 0 run one other block and return (pick another token)");
  }

  // Position 0 attends only to itself: its part holds its own path and nothing else.
  const int64_t first = b * trace.T;
  GradientFlow flow0 = gradient_flow({logits}, {row_seed(logits, b, 0)});
  BlocksPerStep own0(c.max_depth + 1);
  for (const TraceStep& s : trace.tokens[first])
    if (s.block >= 0) own0[s.step].insert(s.block);
  check.expect(blocks_in_flow(label_nodes(*model, logits, marks, flow0), flow0, c.max_depth) == own0,
               fmt::format("token {} (position 0) depends on exactly its own path:{}", first, show(own0)));

  DotLabels labels{[&](const Node& n) { return l.label(n); }, [&](const Node& n) { return l.cluster(n); }};
  std::string dot = to_dot(flow, labels);
  std::ofstream(dot_path) << dot;
  bool labelled = dot.rfind("digraph", 0) == 0;
  for (const Node* n : flow.nodes) labelled &= dot.find(l.label(*n)) != std::string::npos;
  for (size_t d = 0; d < own.size(); ++d)
    labelled &= own[d].empty() || dot.find(fmt::format("step {} · block", d)) != std::string::npos;
  fmt::print("wrote {} (render: dot -Tsvg {} -o token_graph.svg)\n", dot_path, dot_path);
  check.expect(labelled, "the DOT carries every kept node's label; block ops read 'step d · block k'");
  return check.exit_code();
} catch (const dg::Error& e) {
  fmt::print(stderr, "error: {}\n", e.what());
  return 1;
}
