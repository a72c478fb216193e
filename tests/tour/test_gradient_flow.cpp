// dg::gradient_flow and the DOT export of its part of the graph (the tour's
// per-token view, docs/tour/09_mob.md): a node or edge is kept exactly when a
// nonzero gradient reaches it from the seeded rows; leaves' .grad, the graph
// and the nodes' hooks are left as they were.
#include <gtest/gtest.h>

#include <string>

#include "autograd/engine.h"
#include "autograd/graphviz.h"
#include "autograd/ops.h"

using namespace dg;

namespace {

Tensor leaf(std::vector<double> v, const Shape& shape) { return from_vector<double>(v, shape).set_requires_grad(); }

bool has_edge(const GradientFlow& f, const Node* n, size_t i) {
  for (const auto& e : f.edges)
    if (e.first == n && e.second == i) return true;
  return false;
}

}  // namespace

// Row 0 of out is tanh(x[0]) * u, row 1 is tanh(x[1]) * v: one tanh node
// serves both rows. Seeding row 0 keeps tanh (its gradient is nonzero on row
// 0) and u, and drops the row-1 branch and v.
TEST(TourGradientFlow, KeepsWhatTheSeededRowDependsOn) {
  Tensor x = leaf({0.1, 0.2, 0.3, 0.4, 0.5, 0.6}, {2, 3});
  Tensor u = leaf({1, 2, 3}, {3}), v = leaf({4, 5, 6}, {3});
  Tensor a = tanh(x);
  Tensor row0 = select(a, 0, 0) * u, row1 = select(a, 0, 1) * v;
  Tensor out = stack({row0, row1}, 0);
  Tensor seed = from_vector<double>({1, -1, 2, 0, 0, 0}, {2, 3});
  GradientFlow f = gradient_flow({out}, {seed});

  EXPECT_TRUE(f.contains(out.grad_fn().get()));
  EXPECT_TRUE(f.contains(a.grad_fn().get()));
  EXPECT_TRUE(f.contains(row0.grad_fn().get()));
  EXPECT_FALSE(f.contains(row1.grad_fn().get()));
  EXPECT_TRUE(has_edge(f, out.grad_fn().get(), 0));
  EXPECT_FALSE(has_edge(f, out.grad_fn().get(), 1));
  const Node* u_acc = row0.grad_fn()->next()[1].node.get();
  const Node* v_acc = row1.grad_fn()->next()[1].node.get();
  EXPECT_TRUE(f.contains(u_acc));
  EXPECT_FALSE(f.contains(v_acc));
  for (size_t i = 1; i < f.nodes.size(); ++i) EXPECT_LT(f.nodes[i - 1]->seq(), f.nodes[i]->seq());

  // Nothing was accumulated, the graph is still there, the hooks are gone.
  EXPECT_FALSE(x.grad().defined());
  EXPECT_FALSE(u.grad().defined());
  EXPECT_TRUE(out.grad_fn()->pre_hooks.empty());
  EXPECT_TRUE(a.grad_fn()->pre_hooks.empty());
  out.backward(seed);
  EXPECT_TRUE(v.grad().defined());  // a full backward still reaches everything
}

// A gradient that is exactly zero drops the edge, even though the edge exists.
TEST(TourGradientFlow, ExactlyZeroGradientIsDropped) {
  Tensor x = leaf({1, 2}, {2});
  Tensor zero = zeros({2}, {DType::f64});
  Tensor y = sum(x * zero);
  GradientFlow f = gradient_flow({y}, {ones({}, {DType::f64})});
  const Node* mul = y.grad_fn()->next()[0].node.get();
  EXPECT_TRUE(f.contains(mul));  // a nonzero gradient reaches the mul...
  EXPECT_FALSE(has_edge(f, mul, 0));  // ...which sends exactly zero to x
  EXPECT_FALSE(f.contains(mul->next()[0].node.get()));
}

// A bad seed fails inside the engine; the hooks are removed all the same.
TEST(TourGradientFlow, RemovesItsHooksWhenBackwardFails) {
  Tensor x = leaf({1, 2}, {2});
  Tensor y = tanh(x);
  EXPECT_THROW(gradient_flow({y}, {ones({3}, {DType::f64})}), Error);
  EXPECT_TRUE(y.grad_fn()->pre_hooks.empty());
}

// The DOT of the kept part: only kept nodes and edges, with labels and clusters.
TEST(TourGradientFlow, DotShowsOnlyTheKeptPart) {
  Tensor x = leaf({1, 2}, {2}), w = leaf({3, 4}, {2});
  Tensor kept = x * 2.0, dropped = w * 3.0;
  Tensor out = stack({kept, dropped}, 0);
  GradientFlow f = gradient_flow({out}, {from_vector<double>({1, 1, 0, 0}, {2, 2})});
  DotLabels labels{[](const Node& n) { return std::string(n.is_accumulate_grad() ? "a leaf" : "an op"); },
                   [](const Node& n) { return n.is_accumulate_grad() ? std::string() : std::string("ops"); }};
  std::string dot = to_dot(f, labels);
  const auto box = [](const Tensor& t) { return fmt::format("n{} [", t.grad_fn()->seq()); };
  EXPECT_NE(dot.find(box(kept)), std::string::npos);
  EXPECT_EQ(dot.find(box(dropped)), std::string::npos);
  EXPECT_NE(dot.find("subgraph cluster_0 {\n    label=\"ops\";"), std::string::npos);
  EXPECT_NE(dot.find("\\nan op\""), std::string::npos);
  EXPECT_NE(dot.find("\\na leaf\""), std::string::npos);
  EXPECT_EQ(dot.find(fmt::format("n{} -> n{}", dropped.grad_fn()->seq(), out.grad_fn()->seq())), std::string::npos);
  EXPECT_NE(dot.find(fmt::format("n{} -> n{}", kept.grad_fn()->seq(), out.grad_fn()->seq())), std::string::npos);
}
