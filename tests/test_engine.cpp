// The tape and the engine: accumulation, retain_graph, version checks, deep
// chains, grad mode, hooks, dg::grad, create_graph, custom functions, anomaly
// mode and the DOT export.
#include <cmath>

#include "autograd/engine.h"
#include "autograd/function.h"
#include "autograd/graphviz.h"
#include "testing.h"

using namespace dg;
using dg::testing::expect_values;
using dg::testing::rand_input;

namespace {
Tensor vec(std::vector<double> v) { return from_vector<double>(v).set_requires_grad(); }
}  // namespace

TEST(Engine, ReusedNodeAccumulates) {
  Tensor a = vec({1, -2, 3});
  Tensor b = a + a;  // b is used twice below: both uses send gradient back
  Tensor c = b * b;
  sum(c).backward();
  expect_values(a.grad(), {8, -16, 24});  // d/da (2a)^2 = 8a
}

TEST(Engine, GradientsAccumulateAcrossBackwards) {
  Tensor a = vec({1, 2});
  sum(a * a).backward();
  sum(a * a).backward();
  expect_values(a.grad(), {4, 8});
  a.zero_grad();
  EXPECT_FALSE(a.grad().defined());
}

TEST(Engine, BackwardTwiceWithoutRetainGraphIsAnError) {
  Tensor a = vec({1, 2});
  Tensor loss = sum(exp(a));
  loss.backward();
  EXPECT_DG_ERROR(loss.backward(), "second time", "retain_graph");
}

TEST(Engine, RetainGraphAllowsASecondBackward) {
  Tensor a = vec({0.5, 2});
  Tensor loss = sum(exp(a));
  loss.backward({}, /*retain_graph=*/true);
  loss.backward();
  expect_values(a.grad(), {2 * std::exp(0.5), 2 * std::exp(2.0)}, 1e-12);
}

TEST(Engine, InPlaceChangeOfASavedTensorIsAnError) {
  Tensor a = vec({1, 2});
  Tensor w = from_vector<double>({3, 4});  // saved by mul for a's gradient
  Tensor loss = sum(a * w);
  mul_(w, 2.0);
  EXPECT_DG_ERROR(loss.backward(), "mul", "modified in place", "version 0", "now 1");
}

TEST(Engine, DeepChainBackwardsAndFreesWithoutRecursion) {
  Tensor x = vec({1.0});
  Tensor y = x;
  for (int i = 0; i < 100000; ++i) y = y * 1.00001;
  y.backward();
  EXPECT_NEAR(x.grad().item<double>(), std::pow(1.00001, 100000), 1e-6);
  // A graph that is never backwarded is also freed iteratively.
  Tensor z = x;
  for (int i = 0; i < 100000; ++i) z = exp(z * 0.0);
  z = Tensor();
  y = Tensor();
  SUCCEED();
}

TEST(Engine, NoGradRecordsNothing) {
  Tensor a = vec({1, 2});
  Tensor b;
  {
    NoGradGuard guard;
    b = a * a + a;
    EXPECT_FALSE(is_grad_enabled());
    {
      EnableGradGuard on;
      EXPECT_TRUE(is_grad_enabled());
    }
  }
  EXPECT_TRUE(is_grad_enabled());
  EXPECT_FALSE(b.requires_grad());
  EXPECT_EQ(b.grad_fn(), nullptr);
  EXPECT_DG_ERROR(sum(b).backward(), "does not require grad");
}

TEST(Engine, HooksSeeAndReplaceGradients) {
  Tensor a = vec({1, 2});
  Tensor b = a * 3.0;
  std::vector<double> seen;
  register_hook(b, [&](const Tensor& g) {
    seen = g.to_vector<double>();
    return g * 10.0;  // replaces b's gradient
  });
  int leaf_calls = 0;
  register_hook(a, [&](const Tensor&) {
    ++leaf_calls;
    return Tensor();  // keeps the gradient
  });
  sum(b).backward();
  EXPECT_EQ(seen, (std::vector<double>{1, 1}));
  EXPECT_EQ(leaf_calls, 1);
  expect_values(a.grad(), {30, 30});
}

TEST(Engine, GradReturnsGradientsWithoutTouchingLeaves) {
  Tensor x = vec({1, 2}), w = vec({3, 4});
  Tensor loss = sum(x * w);
  Tensors g = grad({loss}, {x, w});
  expect_values(g[0], {3, 4});
  expect_values(g[1], {1, 2});
  EXPECT_FALSE(x.grad().defined());
  EXPECT_FALSE(w.grad().defined());
}

TEST(Engine, GradOfANonLeafInput) {
  Tensor x = vec({1, 2});
  Tensor h = x * x;
  Tensor loss = sum(h * 3.0);
  expect_values(grad({loss}, {h})[0], {3, 3});
}

TEST(Engine, GradReportsUnusedInputs) {
  Tensor x = vec({1}), unused = vec({2});
  Tensor loss = sum(x * x);
  EXPECT_DG_ERROR(grad({loss}, {x, unused}, {}, true), "input 1", "not used");
  Tensors g = grad({loss}, {x, unused}, {}, false, false, /*allow_unused=*/true);
  EXPECT_FALSE(g[1].defined());
}

TEST(Engine, CreateGraphGivesSecondDerivatives) {
  Tensor x = vec({1, -2, 0.5});
  Tensor y = sum(x * x * x);
  Tensor dx = grad({y}, {x}, {}, false, /*create_graph=*/true)[0];  // 3x^2
  expect_values(dx, {3, 12, 0.75});
  Tensor ddx = grad({sum(dx)}, {x})[0];  // 6x
  expect_values(ddx, {6, -12, 3});
}

TEST(Engine, BroadcastGradientsAreSummedToInputShapes) {
  Tensor a = rand_input({3, 1}, 1), b = rand_input({4}, 2);
  Tensor c = a * b;  // (3, 4)
  sum(c).backward();
  EXPECT_EQ(a.grad().shape(), (Shape{3, 1}));
  EXPECT_EQ(b.grad().shape(), (Shape{4}));
  double sb = sum(b).item<double>(), sa = sum(a).item<double>();
  for (double v : a.grad().to_vector<double>()) EXPECT_NEAR(v, sb, 1e-12);
  for (double v : b.grad().to_vector<double>()) EXPECT_NEAR(v, sa, 1e-12);
}

TEST(Engine, ImplicitGradientNeedsAScalar) {
  Tensor a = vec({1, 2});
  EXPECT_DG_ERROR((a * a).backward(), "shape [2]", "one element");
  (a * a).backward(from_vector<double>({1, 0.5}));
  expect_values(a.grad(), {2, 2});
  EXPECT_DG_ERROR((a * a).backward(from_vector<double>({1, 2, 3})), "shape [3]", "shape [2]");
}

TEST(Engine, OnlyReachableNodesRun) {
  Tensor a = vec({1}), b = vec({2});
  Tensor unrelated = b * b;  // recorded, but not part of the loss
  int calls = 0;
  register_hook(unrelated, [&](const Tensor&) { return ++calls, Tensor(); });
  sum(a * 2.0).backward();
  EXPECT_EQ(calls, 0);
  EXPECT_FALSE(b.grad().defined());
}

TEST(Engine, TapeIsInSequenceOrder) {
  Tensor x = vec({1, 2});
  Tensor y = sum(tanh(x * x + x));
  std::vector<std::string> names;
  for (const Node* n : tape({y})) names.push_back(n->name());
  EXPECT_EQ(names, (std::vector<std::string>{"AccumulateGrad", "mul", "add", "tanh", "sum"}));
  std::string dot = to_dot({y});
  EXPECT_NE(dot.find("digraph"), std::string::npos);
  EXPECT_NE(dot.find("tanh"), std::string::npos);
  EXPECT_NE(dot.find("leaf"), std::string::npos);
}

// A custom function: y = x^3 with a hand-written backward.
struct Cube : Function<Cube> {
  static constexpr const char* name = "Cube";
  static Tensor forward(FunctionCtx& ctx, const Tensor& x) {
    ctx.save_for_backward({x});
    return x * x * x;
  }
  static Tensors backward(FunctionCtx& ctx, const Tensor& g) {
    Tensor x = ctx.saved()[0];
    return {g * x * x * 3.0};
  }
};

// Two tensor inputs and a non-tensor argument: y = a * b * k.
struct ScaledProduct : Function<ScaledProduct> {
  static Tensor forward(FunctionCtx& ctx, const Tensor& a, double k, const Tensor& b) {
    ctx.save_for_backward({a, b});
    ctx.data["k"] = k;
    return a * b * k;
  }
  static Tensors backward(FunctionCtx& ctx, const Tensor& g) {
    Tensors s = ctx.saved();
    double k = std::any_cast<double>(ctx.data["k"]);
    return {ctx.needs_input_grad(0) ? g * s[1] * k : Tensor(), ctx.needs_input_grad(1) ? g * s[0] * k : Tensor()};
  }
};

TEST(Function, CustomFunctionPassesGradcheck) {
  Tensor x = rand_input({2, 3}, 3);
  EXPECT_GRADCHECK([](const Tensors& in) { return Cube::apply(in[0]); }, {x});
  EXPECT_GRADGRADCHECK([](const Tensors& in) { return Cube::apply(in[0]); }, {x});
  Tensor a = rand_input({4}, 4), b = rand_input({4}, 5);
  EXPECT_GRADCHECK([](const Tensors& in) { return ScaledProduct::apply(in[0], 2.5, in[1]); }, {a, b});
  Tensor y = Cube::apply(x);
  EXPECT_STREQ(y.grad_fn()->name(), "Cube");
}

namespace {
// Passes x through; its backward records what accumulated_grad(0) held (an
// empty vector: undefined) and, when it is given a buffer, adds its gradient
// there and returns none.
struct Probe : Function<Probe> {
  static constexpr const char* name = "Probe";
  static inline std::vector<std::vector<double>> seen;
  static Tensor forward(FunctionCtx&, const Tensor& x) { return x * 1.0; }
  static Tensors backward(FunctionCtx&, const Tensor& g) {
    Tensor acc = accumulated_grad(0);
    seen.push_back(acc.defined() ? acc.to_vector<double>() : std::vector<double>{});
    if (!acc.defined()) return {g};
    add_(acc, g);
    return {Tensor()};
  }
};
}  // namespace

TEST(Engine, AccumulatedGradIsTheSumSoFarAndTakesAnInPlaceAdd) {
  Tensor x = vec({1, 2, 3});
  Tensor c1 = from_vector<double>({1, 10, 100}), c2 = from_vector<double>({-2, -3, -4});
  Probe::seen.clear();
  // Backward runs x * c2 first (the later op), then the probe: x's buffer
  // then holds c2, a fresh tensor only the engine holds. (Named steps: the
  // operands of one expression may be evaluated in either order.)
  Tensor first = sum(Probe::apply(x) * c1);
  Tensor second = sum(x * c2);
  (first + second).backward();
  ASSERT_EQ(Probe::seen.size(), 1u);
  EXPECT_EQ(Probe::seen[0], (std::vector<double>{-2, -3, -4}));
  expect_values(x.grad(), {-1, 7, 96});
  // The probe first: nothing has arrived for x yet.
  Probe::seen.clear();
  x.zero_grad();
  first = sum(x * c2);
  second = sum(Probe::apply(x) * c1);
  (first + second).backward();
  ASSERT_EQ(Probe::seen.size(), 1u);
  EXPECT_TRUE(Probe::seen[0].empty());
  expect_values(x.grad(), {-1, 7, 96});
}

TEST(Engine, AccumulatedGradIsRefusedWhereAnInPlaceAddCouldChangeAnythingElse) {
  Tensor c = from_vector<double>({1, 10, 100});
  auto expect_refused = [&](const char* what, const std::function<Tensors(const Tensor&)>& grads_of,
                            const std::vector<double>& expected) {
    SCOPED_TRACE(what);
    Tensor x = vec({1, 2, 3});
    Probe::seen.clear();
    Tensors g = grads_of(x);
    ASSERT_FALSE(Probe::seen.empty());
    for (const auto& v : Probe::seen) EXPECT_TRUE(v.empty());
    expect_values(g[0], expected);
  };
  // add's backward hands one tensor to both inputs: x's buffer is also the
  // probe's incoming gradient.
  expect_refused("shared", [&](const Tensor& x) { return grad({sum((Probe::apply(x) + x) * c)}, {x}); },
                 {2, 20, 200});
  // Recorded backward: the buffer may be a node's output.
  expect_refused("create_graph", [&](const Tensor& x) {
    Tensor first = sum(Probe::apply(x) * c);
    return grad({first + sum(x * c)}, {x}, {}, false, /*create_graph=*/true);
  }, {2, 20, 200});
  // Anomaly mode checks each contribution on its own.
  expect_refused("anomaly", [&](const Tensor& x) {
    AnomalyGuard anomaly;
    Tensor first = sum(Probe::apply(x) * c);
    return grad({first + sum(x * c)}, {x});
  }, {2, 20, 200});
  // A non-contiguous buffer (the transpose's gradient is a transposed view).
  Tensor y = from_vector<double>({1, 2, 3, 4, 5, 6}, {2, 3}).set_requires_grad();
  Tensor w = from_vector<double>({1, 2, 3, 4, 5, 6}, {3, 2});
  Probe::seen.clear();
  Tensor first = sum(Probe::apply(y));
  Tensor gy = grad({first + sum(transpose(y, 0, 1) * w)}, {y})[0];
  ASSERT_EQ(Probe::seen.size(), 1u);
  EXPECT_TRUE(Probe::seen[0].empty());
  expect_values(gy, {2, 4, 6, 3, 5, 7});
  // Outside a backward: nothing.
  EXPECT_FALSE(accumulated_grad(0).defined());
}

// linear, grouped_linear, index_select and embedding add into the buffer in
// place when a tensor has several uses; create_graph takes the out-of-place
// path for the same sums. Both must agree (f64, to rounding).
TEST(Engine, InPlaceAccumulationByOpsGivesTheOutOfPlaceGradients) {
  Tensor w = rand_input({5, 4}, 11).set_requires_grad();
  Tensor w2 = rand_input({5, 4}, 12).set_requires_grad();
  Tensor table = rand_input({7, 4}, 13).set_requires_grad();
  Tensor x = rand_input({6, 4}, 14).set_requires_grad();
  const Tensor rows = from_vector<int64_t>({3, 0, 3, 5, 1, 3}), perm = from_vector<int64_t>({5, 4, 3, 2, 1, 0});
  const Tensor tokens = from_vector<int64_t>({2, 6, 2, 0, 6, 6});
  auto loss = [&] {
    Tensor h = x + embedding(table, tokens);  // table: embedding, then the tied head below
    Tensor a = linear(h, w);
    Tensor b = grouped_linear(index_select(h, 0, rows), {0, 2, 6}, {w, w2}, {});
    Tensor c = grouped_linear(index_select(h, 0, perm), {0, 3, 6}, {w2, w}, {});
    return sum(tanh(a + b + c)) + sum(tanh(linear(h, table)) * 0.3) + sum(index_select(h, 0, rows) * 0.5);
  };
  const Tensors params = {w, w2, table, x};
  Tensors in_place = grad({loss()}, params);
  Tensors out_of_place = grad({loss()}, params, {}, false, /*create_graph=*/true);
  for (size_t i = 0; i < params.size(); ++i)
    EXPECT_LT(dg::testing::max_abs_diff(in_place[i], out_of_place[i]), 1e-12) << "parameter " << i;
  // And against finite differences, through backward() (which accumulates
  // into .grad) for every parameter at once.
  for (size_t i = 0; i < params.size(); ++i) EXPECT_TRUE(dg::testing::param_gradcheck(loss, params[i])) << "parameter " << i;
}

// layer_norm and grouped_layer_norm add dx into x's gradient sum where the
// engine allows it (a residual stream read by a norm, several norms of one
// tensor); the create_graph path gives the out-of-place sums.
TEST(Engine, InPlaceAccumulationByNormsGivesTheOutOfPlaceGradients) {
  Tensor x = rand_input({6, 4}, 21).set_requires_grad();
  Tensor w = rand_input({4}, 22).set_requires_grad(), b = rand_input({4}, 23).set_requires_grad();
  Tensor w2 = rand_input({4}, 24).set_requires_grad(), b2 = rand_input({4}, 25).set_requires_grad();
  const Tensor m = rand_input({4, 4}, 26).detach();  // a constant weight
  auto loss = [&] {
    Tensor h = x * 1.5;
    Tensor r = h + linear(layer_norm(h, w, b), m);  // residual
    Tensor g = grouped_layer_norm(r, {0, 2, 6}, {w, w2}, {b, b2});
    Tensor n = layer_norm(r, w2, Tensor());  // a second norm of r
    return sum(tanh(r) * 0.4) + sum(tanh(g) * n) + sum(layer_norm(h, Tensor(), b2) * 0.3);
  };
  const Tensors params = {x, w, b, w2, b2};
  Tensors in_place = grad({loss()}, params);
  Tensors out_of_place = grad({loss()}, params, {}, false, /*create_graph=*/true);
  for (size_t i = 0; i < params.size(); ++i)
    EXPECT_LT(dg::testing::max_abs_diff(in_place[i], out_of_place[i]), 1e-12) << "parameter " << i;
  for (size_t i = 0; i < params.size(); ++i) EXPECT_TRUE(dg::testing::param_gradcheck(loss, params[i])) << "parameter " << i;
}

TEST(Anomaly, ForwardNaNNamesTheOpAndTheLine) {
  Tensor x = vec({-1, 1});
  AnomalyGuard on;
  std::string line = fmt::format("test_engine.cpp:{}", __LINE__ + 1);
  EXPECT_DG_ERROR(log(x), "anomaly", "'log'", line.c_str());
}

TEST(Anomaly, BackwardInfNamesTheOp) {
  Tensor x = vec({0, 1});
  Tensor y = sum(sqrt(x));  // d sqrt(x)/dx = inf at 0
  AnomalyGuard on;
  EXPECT_DG_ERROR(y.backward(), "anomaly", "'sqrt'", "test_engine.cpp");
}

TEST(Anomaly, BackwardNamesTheLineThatCreatedTheNode) {
  Tensor x = vec({0, 1});
  const std::string line = fmt::format("test_engine.cpp:{}", __LINE__ + 1);
  Tensor y = sum(sqrt(x));
  AnomalyGuard on;
  EXPECT_DG_ERROR(y.backward(), "anomaly", "'sqrt'", line.c_str());
}

// Site (autograd/site.h) takes the caller's file, line and function, also
// through a defaulted argument of the caller and through the operators.
namespace {
Site where_called(Site site = Site::current()) { return site; }
}  // namespace

TEST(Site, IsTheCallersLocation) {
  const uint_least32_t line = __LINE__ + 1;
  const Site s = where_called();
  EXPECT_EQ(s.line(), line);
  EXPECT_NE(std::string(s.file_name()).find("test_engine.cpp"), std::string::npos) << s.file_name();
  EXPECT_NE(std::string(s.function_name()).find("TestBody"), std::string::npos) << s.function_name();

  Tensor a = vec({1, 2}), b = vec({3, 4});
  const uint_least32_t op_line = __LINE__ + 1;
  Tensor c = a * b, d = exp(c);
  EXPECT_EQ(c.grad_fn()->site().line(), op_line);
  EXPECT_EQ(d.grad_fn()->site().line(), op_line);
  EXPECT_NE(std::string(d.grad_fn()->site().file_name()).find("test_engine.cpp"), std::string::npos);
}

TEST(Anomaly, OffByDefault) {
  EXPECT_FALSE(is_anomaly_enabled());
  Tensor x = vec({-1});
  EXPECT_TRUE(std::isnan(log(x).item<double>()));
}

TEST(Gradcheck, CatchesAWrongBackward) {
  struct Wrong : Function<Wrong> {
    static Tensor forward(FunctionCtx&, const Tensor& x) { return x * x; }
    static Tensors backward(FunctionCtx&, const Tensor& g) { return {g}; }  // should be 2x·g
  };
  Tensor x = rand_input({3}, 6);
  auto r = gradcheck([](const Tensors& in) { return Wrong::apply(in[0]); }, {x});
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.message.find("analytic"), std::string::npos) << r.message;
}

// The perturbed copies gradcheck feeds to the function keep each input's
// shape, 0-dim included (they used to arrive as shape [1]).
TEST(Gradcheck, PerturbedInputsKeepTheirShape) {
  Tensor s = rand_input({}, 7), m = rand_input({2, 3}, 8);
  std::vector<Shape> seen;
  auto fn = [&](const Tensors& in) {
    seen.push_back(in[0].shape());
    seen.push_back(in[1].shape());
    return in[0] * in[1];
  };
  EXPECT_GRADCHECK(fn, {s, m});
  EXPECT_GRADGRADCHECK(fn, {s, m});
  ASSERT_GT(seen.size(), 4u);
  for (size_t i = 0; i < seen.size(); i += 2) {
    EXPECT_EQ(seen[i], Shape{}) << "call " << i / 2;
    EXPECT_EQ(seen[i + 1], (Shape{2, 3})) << "call " << i / 2;
  }
}
