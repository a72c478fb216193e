// Parity with PyTorch: every op of autograd/ops.h against the reference values
// of tests/parity/reference.json (written by tests/parity/make_reference.py
// with torch, in f64 and in f32). For each case and dtype we run the op on the
// same inputs, compare the outputs, then backward  loss = sum_j sum(out_j * w_j)
// and compare the gradient of every floating input.
//
// Tolerances (|got - want| <= atol + rtol * |want|):
//   f64: atol = rtol = 1e-10. Both sides are exact to ~1e-15 here; what differs
//        is only the order of sums (matmul, reductions, norms), worth a few ulps.
//   f32: atol 1e-5, rtol 1e-4: different summation orders and vectorised
//        exp/tanh/erf approximations (a few ulps each, compounded in the fused
//        kernels) against torch's own.
//   0 (bit-exact, both dtypes) where the op only moves or selects values, or
//        rounds once (shape ops, indexing, max/min/topk, x+s, x*s, relu, ...):
//        see exact_forward / exact_grad below.
// A failure prints, llm.c style, the max |diff| of every output and gradient
// of every op of the family in that dtype.
#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <string>

#include "testing.h"

using namespace dg;
using json = nlohmann::json;

namespace {

// --- the reference file ------------------------------------------------------

const json& reference() {
  static const json ref = [] {
    std::ifstream f(DG_SOURCE_DIR "/tests/parity/reference.json");
    if (!f) throw std::runtime_error("cannot open tests/parity/reference.json (run tests/parity/make_reference.py)");
    return json::parse(f);
  }();
  return ref;
}

Shape shape_of(const json& j) { return Shape(j.get<std::vector<int64_t>>()); }
Dims dims_of(const json& j) { return j.get<Dims>(); }

// A tensor of `shape` holding v converted to dt (from_doubles makes an empty shape 1-D).
Tensor tensor_of(const std::vector<double>& v, const Shape& shape, DType dt) {
  return shape.empty() ? scalar_tensor(v.at(0), {dt}) : from_doubles(v, shape, {dt});
}

// One input tensor of a case: floats in `dt`, indices as i64, masks as bool.
Tensor make_input(const json& in, DType dt) {
  Shape shape = shape_of(in["shape"]);
  const std::string kind = in["kind"];
  if (kind == "i64" || kind == "bool") {
    std::vector<double> v;
    for (const json& x : in["data"]) v.push_back(kind == "bool" ? x.get<bool>() : x.get<int64_t>());
    return tensor_of(v, shape, kind == "bool" ? DType::b8 : DType::i64);  // small ints: exact in double
  }
  Tensor t = tensor_of(in["data"].get<std::vector<double>>(), shape, dt);
  if (in["grad"].get<bool>()) t.set_requires_grad();
  return t;
}

// --- how dyngrad runs each op of the table (names and params as in make_reference.py)

using Runner = std::function<Tensors(const Tensors& in, const json& p)>;

Tensors vi(const ValuesIndices& r) { return {r.values, r.indices}; }

const std::map<std::string, Runner>& runners() {
  static const std::map<std::string, Runner> table = {
      // unary
      {"neg", [](const Tensors& x, const json&) { return Tensors{neg(x[0])}; }},
      {"exp", [](const Tensors& x, const json&) { return Tensors{exp(x[0])}; }},
      {"log", [](const Tensors& x, const json&) { return Tensors{log(x[0])}; }},
      {"sqrt", [](const Tensors& x, const json&) { return Tensors{sqrt(x[0])}; }},
      {"rsqrt", [](const Tensors& x, const json&) { return Tensors{rsqrt(x[0])}; }},
      {"abs", [](const Tensors& x, const json&) { return Tensors{abs(x[0])}; }},
      {"tanh", [](const Tensors& x, const json&) { return Tensors{tanh(x[0])}; }},
      {"sigmoid", [](const Tensors& x, const json&) { return Tensors{sigmoid(x[0])}; }},
      {"relu", [](const Tensors& x, const json&) { return Tensors{relu(x[0])}; }},
      {"gelu", [](const Tensors& x, const json& p) { return Tensors{gelu(x[0], p["tanh_approx"].get<bool>())}; }},
      {"silu", [](const Tensors& x, const json&) { return Tensors{silu(x[0])}; }},
      {"square", [](const Tensors& x, const json&) { return Tensors{square(x[0])}; }},
      {"pow", [](const Tensors& x, const json& p) {
         return p.contains("exponent") ? Tensors{pow(x[0], p["exponent"].get<double>())} : Tensors{pow(x[0], x[1])};
       }},
      {"clamp", [](const Tensors& x, const json& p) { return Tensors{clamp(x[0], p["lo"], p["hi"])}; }},
      // binary
      {"add", [](const Tensors& x, const json&) { return Tensors{x[0] + x[1]}; }},
      {"sub", [](const Tensors& x, const json&) { return Tensors{x[0] - x[1]}; }},
      {"mul", [](const Tensors& x, const json&) { return Tensors{x[0] * x[1]}; }},
      {"div", [](const Tensors& x, const json&) { return Tensors{x[0] / x[1]}; }},
      {"maximum", [](const Tensors& x, const json&) { return Tensors{maximum(x[0], x[1])}; }},
      {"minimum", [](const Tensors& x, const json&) { return Tensors{minimum(x[0], x[1])}; }},
      {"add_scalar", [](const Tensors& x, const json& p) { return Tensors{x[0] + p["s"].get<double>()}; }},
      {"mul_scalar", [](const Tensors& x, const json& p) { return Tensors{x[0] * p["s"].get<double>()}; }},
      {"where", [](const Tensors& x, const json&) { return Tensors{where(x[0], x[1], x[2])}; }},
      // reductions
      {"sum", [](const Tensors& x, const json& p) { return Tensors{sum(x[0], dims_of(p["dims"]), p["keepdim"])}; }},
      {"mean", [](const Tensors& x, const json& p) { return Tensors{mean(x[0], dims_of(p["dims"]), p["keepdim"])}; }},
      {"max_dim", [](const Tensors& x, const json& p) { return vi(max(x[0], p["dim"], p["keepdim"])); }},
      {"min_dim", [](const Tensors& x, const json& p) { return vi(min(x[0], p["dim"], p["keepdim"])); }},
      {"max_all", [](const Tensors& x, const json&) { return Tensors{max(x[0])}; }},
      {"min_all", [](const Tensors& x, const json&) { return Tensors{min(x[0])}; }},
      {"argmax", [](const Tensors& x, const json& p) { return Tensors{argmax(x[0], p["dim"], p["keepdim"])}; }},
      {"argmin", [](const Tensors& x, const json& p) { return Tensors{argmin(x[0], p["dim"], p["keepdim"])}; }},
      {"logsumexp",
       [](const Tensors& x, const json& p) { return Tensors{logsumexp(x[0], dims_of(p["dims"]), p["keepdim"])}; }},
      {"var", [](const Tensors& x, const json& p) {
         return Tensors{var(x[0], dims_of(p["dims"]), p["keepdim"], p["correction"].get<int64_t>())};
       }},
      // shape
      {"reshape", [](const Tensors& x, const json& p) { return Tensors{reshape(x[0], shape_of(p["shape"]))}; }},
      {"reshape_transposed",
       [](const Tensors& x, const json& p) { return Tensors{reshape(transpose(x[0], 0, 2), shape_of(p["shape"]))}; }},
      {"view", [](const Tensors& x, const json& p) { return Tensors{view(x[0], shape_of(p["shape"]))}; }},
      {"flatten", [](const Tensors& x, const json& p) { return Tensors{flatten(x[0], p["start"], p["end"])}; }},
      {"permute", [](const Tensors& x, const json& p) { return Tensors{permute(x[0], dims_of(p["dims"]))}; }},
      {"transpose", [](const Tensors& x, const json& p) { return Tensors{transpose(x[0], p["d0"], p["d1"])}; }},
      {"slice", [](const Tensors& x, const json& p) {
         return Tensors{slice(x[0], p["dim"], p["start"], p["end"], p["step"])};
       }},
      {"narrow",
       [](const Tensors& x, const json& p) { return Tensors{narrow(x[0], p["dim"], p["start"], p["length"])}; }},
      {"select", [](const Tensors& x, const json& p) { return Tensors{select(x[0], p["dim"], p["index"])}; }},
      {"expand", [](const Tensors& x, const json& p) { return Tensors{expand(x[0], shape_of(p["shape"]))}; }},
      {"squeeze", [](const Tensors& x, const json& p) { return Tensors{squeeze(x[0], p["dim"])}; }},
      {"unsqueeze", [](const Tensors& x, const json& p) { return Tensors{unsqueeze(x[0], p["dim"])}; }},
      {"contiguous", [](const Tensors& x, const json&) { return Tensors{contiguous(transpose(x[0], 1, 2))}; }},
      {"cat", [](const Tensors& x, const json& p) { return Tensors{cat(x, p["dim"])}; }},
      {"stack", [](const Tensors& x, const json& p) { return Tensors{stack(x, p["dim"])}; }},
      {"split", [](const Tensors& x, const json& p) { return split(x[0], p["size"].get<int64_t>(), p["dim"]); }},
      {"split_sizes", [](const Tensors& x, const json& p) { return split(x[0], dims_of(p["sizes"]), p["dim"]); }},
      {"sum_to", [](const Tensors& x, const json& p) { return Tensors{sum_to(x[0], shape_of(p["shape"]))}; }},
      // matmul
      {"matmul", [](const Tensors& x, const json&) { return Tensors{matmul(x[0], x[1])}; }},
      {"matmul_bt", [](const Tensors& x, const json&) { return Tensors{matmul(x[0], transpose(x[1], 0, 1))}; }},
      {"matmul_at", [](const Tensors& x, const json&) { return Tensors{matmul(transpose(x[0], 0, 1), x[1])}; }},
      {"linear",
       [](const Tensors& x, const json&) { return Tensors{linear(x[0], x[1], x.size() > 2 ? x[2] : Tensor())}; }},
      // indexing
      {"index_select", [](const Tensors& x, const json& p) { return Tensors{index_select(x[0], p["dim"], x[1])}; }},
      {"index_add",
       [](const Tensors& x, const json& p) { return Tensors{index_add(x[0], p["dim"], x[1], x[2], p["alpha"])}; }},
      {"gather", [](const Tensors& x, const json& p) { return Tensors{gather(x[0], p["dim"], x[1])}; }},
      {"scatter_add", [](const Tensors& x, const json& p) { return Tensors{scatter_add(x[0], p["dim"], x[1], x[2])}; }},
      {"embedding", [](const Tensors& x, const json&) { return Tensors{embedding(x[0], x[1])}; }},
      {"masked_fill", [](const Tensors& x, const json& p) { return Tensors{masked_fill(x[0], x[1], p["value"])}; }},
      {"topk", [](const Tensors& x, const json& p) { return vi(topk(x[0], p["k"], p["dim"], p["largest"], true)); }},
      {"dropout", [](const Tensors& x, const json& p) { return Tensors{dropout(x[0], p["p"], p["training"])}; }},
      // nn
      {"softmax", [](const Tensors& x, const json& p) { return Tensors{softmax(x[0], p["dim"])}; }},
      {"log_softmax", [](const Tensors& x, const json& p) { return Tensors{log_softmax(x[0], p["dim"])}; }},
      {"layer_norm", [](const Tensors& x, const json& p) { return Tensors{layer_norm(x[0], x[1], x[2], p["eps"])}; }},
      {"layer_norm_plain",
       [](const Tensors& x, const json& p) { return Tensors{layer_norm(x[0], Tensor(), Tensor(), p["eps"])}; }},
      {"rms_norm", [](const Tensors& x, const json& p) { return Tensors{rms_norm(x[0], x[1], p["eps"])}; }},
      {"cross_entropy", [](const Tensors& x, const json& p) {
         const std::string r = p["reduction"];
         Reduction red = r == "none" ? Reduction::none : r == "sum" ? Reduction::sum : Reduction::mean;
         return Tensors{cross_entropy(x[0], x[1], p["ignore_index"], p["label_smoothing"], red)};
       }},
      {"attention", [](const Tensors& x, const json& p) {
         return Tensors{scaled_dot_product_attention(x[0], x[1], x[2], p["causal"], p["scale"])};
       }},
      // grouped ops: inputs x, then per group weight (and bias)
      {"grouped_linear", [](const Tensors& x, const json& p) {
         const bool bias = p["bias"];
         Tensors w, b;
         for (size_t i = 1; i < x.size(); i += bias ? 2 : 1) {
           w.push_back(x[i]);
           if (bias) b.push_back(x[i + 1]);
         }
         return Tensors{grouped_linear(x[0], p["offsets"].get<std::vector<int64_t>>(), w, b)};
       }},
      {"grouped_layer_norm", [](const Tensors& x, const json& p) {
         Tensors w, b;
         for (size_t i = 1; i + 1 < x.size(); i += 2) w.push_back(x[i]), b.push_back(x[i + 1]);
         return Tensors{grouped_layer_norm(x[0], p["offsets"].get<std::vector<int64_t>>(), w, b, p["eps"])};
       }},
      {"attention_varlen",
       [](const Tensors& x, const json& p) { return Tensors{attention_varlen(x[0], x[1], x[2], x[3], p["scale"])}; }},
      {"attention_qkv", [](const Tensors& x, const json& p) {
         return Tensors{attention_qkv(x[0], p["n_head"], x.size() > 1 ? x[1] : Tensor(), p["scale"])};
       }},
  };
  return table;
}

// --- tolerances ------------------------------------------------------------------

struct Tol {
  double atol, rtol;
};

// Ops whose forward only moves, selects or rounds once: both sides give the
// same bits (the reference is exact in both dtypes, inputs are f32-exact).
const std::set<std::string> exact_forward = {
    "neg", "abs", "relu", "clamp", "add", "sub", "mul", "maximum", "minimum", "add_scalar", "mul_scalar", "where",
    "max_dim", "min_dim", "max_all", "min_all", "argmax", "argmin", "reshape", "reshape_transposed", "view",
    "flatten", "permute", "transpose", "slice", "narrow", "select", "expand", "squeeze", "unsqueeze", "contiguous",
    "cat", "stack", "split", "split_sizes", "index_select", "gather", "embedding", "masked_fill", "topk", "dropout"};
// Ops whose gradient is the weight moved or selected (no sum of more than two
// terms, no rounding beyond one product): bit-exact too. Cases with a
// broadcast operand are not listed: their gradient is a sum (any order).
const std::set<std::string> exact_grad = {
    "neg", "abs", "relu", "clamp", "max_dim", "min_dim", "max_all", "min_all", "reshape", "reshape_transposed",
    "view", "flatten", "permute", "transpose", "slice", "narrow", "select", "squeeze", "unsqueeze", "contiguous",
    "cat", "stack", "split", "split_sizes", "index_select", "masked_fill", "topk", "dropout", "add_scalar",
    "mul_scalar"};

Tol tolerance(const std::string& op, DType dt, bool grad) {
  if ((grad ? exact_grad : exact_forward).count(op)) return {0.0, 0.0};
  return dt == DType::f64 ? Tol{1e-10, 1e-10} : Tol{1e-5, 1e-4};
}

// --- comparing -----------------------------------------------------------------

struct Check {
  std::string what;  // "out0", "grad[1]"
  double max_abs = 0;
  bool ok = true;
  std::string note;  // shape mismatch, exception, ...
};

// want is read in double; for f32 it is first rounded to f32 (the file holds
// the shortest decimal of the f32 value).
Check compare(const std::string& what, const Tensor& got, const Shape& shape, const json& want, DType dt, Tol tol) {
  Check c{what, 0, true, ""};
  if (!got.defined()) return {what, 0, false, "undefined"};
  if (!(got.shape() == shape)) return {what, 0, false, fmt::format("shape {} != torch {}", got.shape(), shape)};
  std::vector<double> g = got.to_vector<double>();
  std::vector<double> w = want.get<std::vector<double>>();
  for (size_t i = 0; i < g.size(); ++i) {
    double ref = dt == DType::f32 ? static_cast<double>(static_cast<float>(w[i])) : w[i];
    double d = std::abs(g[i] - ref);
    if (!(d <= tol.atol + tol.rtol * std::abs(ref))) c.ok = false;
    c.max_abs = std::isnan(d) ? d : std::max(c.max_abs, d);
  }
  return c;
}

// Runs one case in one dtype; returns the checks of its outputs and gradients.
std::vector<Check> run_case(const json& cs, DType dt) {
  const std::string op = cs["op"];
  const char* tag = dt == DType::f64 ? "f64" : "f32";
  auto it = runners().find(op);
  if (it == runners().end()) return {{"runner", 0, false, "no runner for op '" + op + "'"}};
  std::vector<Check> checks;
  try {
    Tensors in;
    for (const json& j : cs["inputs"]) in.push_back(make_input(j, dt));
    Tensors out = it->second(in, cs["params"]);
    const json& outs = cs["outputs"];
    if (out.size() != outs.size())
      return {{"outputs", 0, false, fmt::format("{} outputs, torch has {}", out.size(), outs.size())}};
    Tensor loss;
    for (size_t j = 0; j < out.size(); ++j) {
      const json& o = outs[j];
      checks.push_back(compare(fmt::format("out{}", j), out[j], shape_of(o["shape"]), o[tag], dt,
                               tolerance(op, dt, false)));
      if (o["kind"] == "float" && out[j].defined() && out[j].requires_grad()) {
        Tensor w = tensor_of(o["w"].get<std::vector<double>>(), shape_of(o["shape"]), dt);
        Tensor term = sum(out[j] * w);
        loss = loss.defined() ? loss + term : term;
      }
    }
    if (loss.defined()) loss.backward();
    for (size_t i = 0; i < in.size(); ++i) {
      const json& j = cs["inputs"][i];
      if (!j.contains(std::string("grad_") + tag)) continue;
      Tensor g = in[i].grad().defined() ? in[i].grad() : zeros_like(in[i]);  // no gradient = zero gradient
      checks.push_back(compare(fmt::format("grad[{}]", i), g, in[i].shape(), j[std::string("grad_") + tag], dt,
                               tolerance(op, dt, true)));
    }
  } catch (const std::exception& e) {
    checks.push_back({"run", 0, false, e.what()});
  }
  return checks;
}

// Runs every case of a family in both dtypes; on any mismatch prints the
// whole family's table (op, dtype, max |diff| of each output and gradient).
void check_family(const std::string& family) {
  int cases = 0;
  bool all_ok = true;
  std::string table;
  for (const json& cs : reference()["cases"]) {
    if (cs["family"] != family) continue;
    ++cases;
    for (DType dt : {DType::f64, DType::f32}) {
      bool ok = true;
      std::string line = fmt::format("  {:<40} {}", cs["name"].get<std::string>(), dtype_name(dt));
      for (const Check& c : run_case(cs, dt)) {
        ok = ok && c.ok;
        line += c.note.empty() ? fmt::format("  {} {:.2e}{}", c.what, c.max_abs, c.ok ? "" : " FAIL")
                               : fmt::format("  {} FAIL: {}", c.what, c.note);
      }
      all_ok = all_ok && ok;
      table += (ok ? "  ok " : "  XX ") + line + "\n";
    }
  }
  EXPECT_GT(cases, 0) << "no case of family " << family << " in reference.json";
  EXPECT_TRUE(all_ok) << "parity with torch " << reference()["torch_version"].get<std::string>() << ", family "
                      << family << " (max |dyngrad - torch| per output and gradient):\n"
                      << table;
}

}  // namespace

TEST(Parity, EveryCaseHasARunnerAndEveryRunnerACase) {
  std::set<std::string> used;
  for (const json& cs : reference()["cases"]) {
    const std::string op = cs["op"];
    EXPECT_TRUE(runners().count(op)) << cs["name"] << ": no runner for op " << op;
    used.insert(op);
  }
  for (const auto& [op, fn] : runners()) EXPECT_TRUE(used.count(op)) << "runner " << op << " has no reference case";
}

TEST(Parity, Unary) { check_family("unary"); }
TEST(Parity, Binary) { check_family("binary"); }
TEST(Parity, Reduce) { check_family("reduce"); }
TEST(Parity, Shape) { check_family("shape"); }
TEST(Parity, Matmul) { check_family("matmul"); }
TEST(Parity, Index) { check_family("index"); }
TEST(Parity, NN) { check_family("nn"); }
