// attention_varlen (packed variable-length causal attention): values and
// gradients against scaled_dot_product_attention run on each sequence alone
// (f64), gradcheck on contiguous and strided inputs, no attention across
// sequences and exact causality inside one (bit-identical outputs and
// gradients), f32 against f64, empty batches, double backward and error
// messages.
//
// Legend: H = heads, N = packed tokens, D = head dim, S = sequences.
#include <cmath>
#include <numeric>

#include "autograd/engine.h"
#include "testing.h"

using namespace dg;
using namespace dg::testing;

namespace {

// cu_seqlens (S + 1) from the sequence lengths: 0, then running sums.
Tensor cu_from_lengths(const std::vector<int64_t>& lengths) {
  std::vector<int64_t> cu{0};
  for (int64_t len : lengths) cu.push_back(cu.back() + len);
  return from_vector<int64_t>(cu, {static_cast<int64_t>(cu.size())});
}

int64_t total(const std::vector<int64_t>& lengths) {
  return std::accumulate(lengths.begin(), lengths.end(), int64_t{0});
}

struct Qkv {
  Tensor q, k, v;
};
// q, k, v (H, N, D) in [-2, 2), requiring grad.
Qkv make_qkv(int64_t H, int64_t N, int64_t D, uint64_t seed) {
  return {rand_input({H, N, D}, seed, -2, 2), rand_input({H, N, D}, seed + 1, -2, 2),
          rand_input({H, N, D}, seed + 2, -2, 2)};
}

// The reference: each non-empty sequence through scaled_dot_product_attention
// as a (1, H, len, D) batch, the outputs concatenated back to (H, N, D).
Tensor ref_varlen(const Tensor& q, const Tensor& k, const Tensor& v, const std::vector<int64_t>& lengths,
                  double scale = 0.0) {
  Tensors outs;
  int64_t start = 0;
  for (int64_t len : lengths) {
    if (len > 0) {
      auto seq = [&](const Tensor& x) { return unsqueeze(narrow(x, 1, start, len), 0); };
      outs.push_back(squeeze(scaled_dot_product_attention(seq(q), seq(k), seq(v), true, scale), 0));
    }
    start += len;
  }
  return cat(outs, 1);
}

Tensor f32(const Tensor& t) { return to_dtype(t, DType::f32); }

// Rows [begin, end) of every head of a (H, N, D) tensor, as host values.
std::vector<double> rows(const Tensor& x, int64_t begin, int64_t end) {
  std::vector<double> all = x.to_vector<double>(), r;
  const int64_t H = x.size(0), N = x.size(1), D = x.size(2);
  for (int64_t h = 0; h < H; ++h)
    r.insert(r.end(), all.begin() + (h * N + begin) * D, all.begin() + (h * N + end) * D);
  return r;
}

// x with every element of token `row` (all heads) changed by `delta`.
Tensor perturb_row(const Tensor& x, int64_t row, double delta) {
  std::vector<double> v = x.to_vector<double>();
  const int64_t H = x.size(0), N = x.size(1), D = x.size(2);
  for (int64_t h = 0; h < H; ++h)
    for (int64_t d = 0; d < D; ++d) v[(h * N + row) * D + d] += delta;
  return from_vector<double>(v, x.shape()).set_requires_grad();
}

}  // namespace

TEST(AttentionVarlen, KnownValues) {
  // Two sequences of length 2 (D = 1, scale 1): each first row sees only its own v.
  Tensor q = from_vector<double>({1, 2, 1, 2}, {1, 4, 1}), k = from_vector<double>({0, 1, 0, 1}, {1, 4, 1});
  Tensor v = from_vector<double>({10, 20, 30, 40}, {1, 4, 1});
  const double p = 1 / (1 + std::exp(-2.0));  // softmax([0, 2])[1]
  expect_values(attention_varlen(q, k, v, cu_from_lengths({2, 2}), 1.0),
                {10, 10 * (1 - p) + 20 * p, 30, 30 * (1 - p) + 40 * p}, 1e-12);
}

// Lengths around the kernel's 32-row query block, an empty sequence included.
TEST(AttentionVarlen, MatchesPerSequenceAttention) {
  struct Case {
    int64_t H, D;
    std::vector<int64_t> lengths;
  };
  for (const Case& c : {Case{3, 8, {3, 0, 7, 1, 33, 40}}, Case{1, 5, {65}}, Case{2, 4, {0, 1, 0, 32, 0}},
                        Case{8, 16, {128, 5, 97, 64, 1, 31}}}) {  // the last one runs the tiles in parallel
    Qkv t = make_qkv(c.H, total(c.lengths), c.D, 100 + c.H);
    Tensor cu = cu_from_lengths(c.lengths);
    Tensor out = attention_varlen(t.q, t.k, t.v, cu), ref = ref_varlen(t.q, t.k, t.v, c.lengths);
    EXPECT_LT(max_abs_diff(out, ref), 1e-12) << "H " << c.H << " D " << c.D;
    Generator gen(7);
    Tensor gy = randn(out.shape(), {DType::f64}, &gen);
    Tensors g = grad({out}, {t.q, t.k, t.v}, {gy}), gr = grad({ref}, {t.q, t.k, t.v}, {gy});
    for (size_t i = 0; i < 3; ++i) EXPECT_LT(max_abs_diff(g[i], gr[i]), 1e-12) << "input " << i << " H " << c.H;
  }
}

TEST(AttentionVarlen, ExplicitScale) {
  const std::vector<int64_t> lengths{4, 6};
  Qkv t = make_qkv(2, 10, 4, 200);
  EXPECT_LT(max_abs_diff(attention_varlen(t.q, t.k, t.v, cu_from_lengths(lengths), 0.3),
                         ref_varlen(t.q, t.k, t.v, lengths, 0.3)),
            1e-12);
}

TEST(AttentionVarlen, Gradcheck) {
  Tensor cu = cu_from_lengths({2, 0, 3, 1});
  Qkv t = make_qkv(2, 6, 3, 300);
  EXPECT_GRADCHECK([cu](const Tensors& in) { return attention_varlen(in[0], in[1], in[2], cu); }, {t.q, t.k, t.v});
}

// Token-major projections (N, H, D) seen as (H, N, D): the op makes them contiguous.
TEST(AttentionVarlen, GradcheckStridedInputs) {
  const std::vector<int64_t> lengths{3, 1, 2};
  Tensor cu = cu_from_lengths(lengths);
  Tensor q = rand_input({6, 2, 3}, 320, -2, 2), k = rand_input({6, 2, 3}, 321, -2, 2),
         v = rand_input({6, 2, 3}, 322, -2, 2);
  EXPECT_GRADCHECK(
      [cu](const Tensors& in) {
        return attention_varlen(transpose(in[0], 0, 1), transpose(in[1], 0, 1), transpose(in[2], 0, 1), cu);
      },
      {q, k, v});
  Tensor qt = transpose(q, 0, 1), kt = transpose(k, 0, 1), vt = transpose(v, 0, 1);
  EXPECT_LT(max_abs_diff(attention_varlen(qt, kt, vt, cu), ref_varlen(qt, kt, vt, lengths)), 1e-12);
  // A strided cu_seqlens (every other element of a longer tensor) works too.
  Tensor cu2 = slice(from_vector<int64_t>({0, -1, 3, -1, 4, -1, 6}, {7}), 0, 0, 7, 2);
  EXPECT_EQ(max_abs_diff(attention_varlen(qt, kt, vt, cu2), attention_varlen(qt, kt, vt, cu)), 0.0);
}

// Sequence 1 of {5, 40, 9}: perturbing a token of sequence 2 changes nothing
// in sequences 0 and 1 (outputs and gradients bit-identical); perturbing key
// and value j of sequence 1 changes none of its earlier outputs.
TEST(AttentionVarlen, NoAttentionAcrossSequencesAndExactCausality) {
  const std::vector<int64_t> lengths{5, 40, 9};
  const int64_t N = total(lengths), D = 4, s1 = 5, s2 = 45;
  Tensor cu = cu_from_lengths(lengths);
  Qkv t = make_qkv(2, N, D, 400);
  Generator gen(8);
  Tensor gy = randn({2, N, D}, {DType::f64}, &gen);
  Tensor out = attention_varlen(t.q, t.k, t.v, cu);
  Tensors g = grad({out}, {t.q, t.k, t.v}, {gy});

  Tensor q2 = perturb_row(t.q, s2 + 3, 1.5), k2 = perturb_row(t.k, s2 + 3, 3.0), v2 = perturb_row(t.v, s2 + 3, -5.0);
  Tensor out2 = attention_varlen(q2, k2, v2, cu);
  Tensors g2 = grad({out2}, {q2, k2, v2}, {gy});
  EXPECT_EQ(rows(out, 0, s2), rows(out2, 0, s2));
  EXPECT_NE(rows(out, s2 + 3, s2 + 4), rows(out2, s2 + 3, s2 + 4));
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(rows(g[i], 0, s2), rows(g2[i], 0, s2)) << "input " << i;

  const int64_t j = s1 + 25;  // inside sequence 1, beyond its first query block
  Tensor k3 = perturb_row(t.k, j, 3.0), v3 = perturb_row(t.v, j, -5.0);
  Tensor out3 = attention_varlen(t.q, k3, v3, cu);
  EXPECT_EQ(rows(out, 0, j), rows(out3, 0, j));
  EXPECT_NE(rows(out, j, j + 1), rows(out3, j, j + 1));
  EXPECT_EQ(rows(out, s2, N), rows(out3, s2, N));
}

TEST(AttentionVarlen, F32MatchesF64) {
  Tensor cu = cu_from_lengths({3, 0, 45, 1, 33});
  Qkv t = make_qkv(2, 82, 16, 500);
  Tensor out = attention_varlen(t.q, t.k, t.v, cu);
  Tensor q = f32(t.q).set_requires_grad(), k = f32(t.k).set_requires_grad(), v = f32(t.v).set_requires_grad();
  Tensor out32 = attention_varlen(q, k, v, cu);
  EXPECT_EQ(out32.dtype(), DType::f32);
  EXPECT_LT(max_abs_diff(out32, out), 1e-5);
  Tensor gy = randn(out.shape(), {DType::f64});
  Tensors g = grad({out}, {t.q, t.k, t.v}, {gy}), g32 = grad({out32}, {q, k, v}, {f32(gy)});
  for (size_t i = 0; i < 3; ++i) EXPECT_LT(max_abs_diff(g32[i], g[i]), 1e-4) << "input " << i;
}

// No tokens at all (only empty sequences, or none): empty output and gradients.
TEST(AttentionVarlen, EmptyBatch) {
  for (const std::vector<int64_t>& lengths : {std::vector<int64_t>{0, 0}, std::vector<int64_t>{}}) {
    Qkv t = make_qkv(2, 0, 4, 600);
    Tensor out = attention_varlen(t.q, t.k, t.v, cu_from_lengths(lengths));
    EXPECT_EQ(out.shape(), Shape({2, 0, 4}));
    Tensors g = grad({sum(out)}, {t.q, t.k, t.v});
    for (const Tensor& gi : g) EXPECT_EQ(gi.shape(), Shape({2, 0, 4}));
  }
}

TEST(AttentionVarlen, NoDoubleBackward) {
  Qkv t = make_qkv(1, 3, 2, 700);
  Tensor gy = rand_input({1, 3, 2}, 701).detach();
  Tensors g = grad({attention_varlen(t.q, t.k, t.v, cu_from_lengths({1, 2}))}, {t.q, t.k, t.v}, {gy}, false, true);
  for (size_t i = 0; i < 3; ++i)
    EXPECT_DG_ERROR(grad({g[i]}, {t.q}, {ones(g[i].shape(), {DType::f64})}),
                    "double backward of attention_varlen is not supported");
}

TEST(AttentionVarlen, Errors) {
  const char* op = "attention_varlen";
  Tensor x = zeros({2, 5, 4}, {DType::f64}), cu = cu_from_lengths({2, 3});
  EXPECT_DG_ERROR(attention_varlen(x, x, x, from_vector<int64_t>({1, 3, 5}, {3})), op,
                  "cu_seqlens[0] must be 0, got 1");
  EXPECT_DG_ERROR(attention_varlen(x, x, x, from_vector<int64_t>({0, 3, 2, 5}, {4})), op,
                  "cu_seqlens must be non-decreasing", "cu_seqlens[1] = 3 > cu_seqlens[2] = 2");
  EXPECT_DG_ERROR(attention_varlen(x, x, x, from_vector<int64_t>({0, 2, 4}, {3})), op,
                  "cu_seqlens[2] = 4 must equal the token count N = 5", "[2, 5, 4]");
  EXPECT_DG_ERROR(attention_varlen(x, x, x, from_vector<int32_t>({0, 2, 5}, {3})), op, "cu_seqlens must be i64",
                  "i32");
  EXPECT_DG_ERROR(attention_varlen(x, x, x, from_vector<int64_t>({0, 2, 5, 5}, {2, 2})), op,
                  "cu_seqlens must be 1-D", "[2, 2]");
  EXPECT_DG_ERROR(attention_varlen(x, x, x, from_vector<int64_t>({}, {0})), op, "cu_seqlens must be 1-D",
                  "length S + 1 >= 1");
  EXPECT_DG_ERROR(attention_varlen(x, x, x, Tensor()), op, "cu_seqlens is an undefined tensor");
  EXPECT_DG_ERROR(attention_varlen(x, zeros({2, 5, 3}, {DType::f64}), x, cu), op,
                  "q, k, v must have the same shape (H, N, D)", "k [2, 5, 3]");
  EXPECT_DG_ERROR(attention_varlen(x, x, zeros({2, 4, 4}, {DType::f64}), cu), op, "v [2, 4, 4]");
  EXPECT_DG_ERROR(attention_varlen(zeros({1, 2, 5, 4}, {DType::f64}), x, x, cu), op,
                  "q, k, v must be 3-D (H, N, D), got [1, 2, 5, 4] for q");
  EXPECT_DG_ERROR(attention_varlen(x, zeros({2, 5, 4}), x, cu), op, "dtype mismatch");
  EXPECT_DG_ERROR(attention_varlen(zeros({2, 5, 4}, {DType::i64}), x, x, cu), op, "floating");
  Tensor d0 = zeros({2, 5, 0}, {DType::f64});
  EXPECT_DG_ERROR(attention_varlen(d0, d0, d0, cu), op, "head dim D must be positive");
}
