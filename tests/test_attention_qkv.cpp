// attention_qkv: causal attention read straight from fused projections
// (B, T, 3C) or packed (N, 3C) — against splitting into heads, attending with
// scaled_dot_product_attention / attention_varlen and merging (f64, values
// and gradients), gradcheck, exact causality, f32 against f64, double
// backward and error messages; attention_qkv_rows (tokens in any row order)
// against permuting, attending and permuting back.
#include <algorithm>
#include <numeric>

#include "autograd/engine.h"
#include "testing.h"

using namespace dg;
using namespace dg::testing;

namespace {

// The composite the op replaces: qkv (B, T, 3C) -> three (B, H, T, D) heads ->
// causal attention -> (B, T, C).
Tensor ref_dense(const Tensor& qkv, int64_t H) {
  const int64_t B = qkv.size(0), T = qkv.size(1), C = qkv.size(2) / 3, D = C / H;
  auto heads = [&](int64_t i) { return transpose(view(slice(qkv, 2, i * C, (i + 1) * C), {B, T, H, D}), 1, 2); };
  Tensor y = scaled_dot_product_attention(heads(0), heads(1), heads(2), true);
  return reshape(transpose(y, 1, 2), {B, T, C});
}

// Packed: qkv (N, 3C) -> (H, N, D) heads -> attention_varlen -> (N, C).
Tensor ref_packed(const Tensor& qkv, int64_t H, const Tensor& cu) {
  const int64_t N = qkv.size(0), C = qkv.size(1) / 3, D = C / H;
  auto heads = [&](int64_t i) { return contiguous(transpose(view(slice(qkv, 1, i * C, (i + 1) * C), {N, H, D}), 0, 1)); };
  Tensor y = attention_varlen(heads(0), heads(1), heads(2), cu);
  return reshape(transpose(y, 0, 1), {N, C});
}

Tensor cu_of(const std::vector<int64_t>& lengths) {
  std::vector<int64_t> cu{0};
  for (int64_t l : lengths) cu.push_back(cu.back() + l);
  return from_vector<int64_t>(cu, {static_cast<int64_t>(cu.size())});
}

// A permutation of 0..N-1 drawn from seed, and its inverse.
std::pair<std::vector<int64_t>, std::vector<int64_t>> permutation(int64_t N, uint64_t seed) {
  Generator g(seed);
  const std::vector<double> key = rand({N}, {DType::f64}, &g).to_vector<double>();
  std::vector<int64_t> p(N), inv(N);
  std::iota(p.begin(), p.end(), int64_t{0});
  std::sort(p.begin(), p.end(), [&](int64_t a, int64_t b) { return key[a] < key[b]; });
  for (int64_t j = 0; j < N; ++j) inv[p[j]] = j;
  return {p, inv};
}

// What attention_qkv_rows replaces: put the rows in packed order, attend, put them back.
Tensor ref_rows(const Tensor& qkv, int64_t H, const Tensor& cu, const std::vector<int64_t>& rows,
                const std::vector<int64_t>& inv) {
  const int64_t N = qkv.size(0);
  Tensor packed = index_select(qkv, 0, from_vector<int64_t>(rows, {N}));
  return index_select(attention_qkv(packed, H, cu), 0, from_vector<int64_t>(inv, {N}));
}

Tensor vjp1(const Tensor& out, const Tensor& x, uint64_t seed) {
  Generator g(seed);
  return grad({out}, {x}, {randn(out.shape(), {out.dtype()}, &g)})[0];
}

}  // namespace

// Sizes around the kernel's query block (32).
TEST(AttentionQkv, DenseMatchesHeadsComposite) {
  struct Case {
    int64_t B, T, H, D;
  };
  for (Case c : {Case{2, 5, 3, 4}, Case{1, 37, 2, 8}, Case{2, 70, 1, 3}, Case{3, 1, 2, 5}}) {
    Tensor qkv = rand_input({c.B, c.T, 3 * c.H * c.D}, 100 + c.T, -2, 2);
    Tensor out = attention_qkv(qkv, c.H), ref = ref_dense(qkv, c.H);
    ASSERT_EQ(out.shape(), ref.shape());
    EXPECT_LT(max_abs_diff(out, ref), 1e-12) << "T " << c.T;
    EXPECT_LT(max_abs_diff(vjp1(out, qkv, 7), vjp1(ref, qkv, 7)), 1e-11) << "T " << c.T;
  }
}

TEST(AttentionQkv, PackedMatchesVarlen) {
  const std::vector<int64_t> lengths{3, 0, 40, 1, 7};
  const int64_t N = std::accumulate(lengths.begin(), lengths.end(), int64_t{0}), H = 2, D = 4;
  Tensor qkv = rand_input({N, 3 * H * D}, 200, -2, 2), cu = cu_of(lengths);
  Tensor out = attention_qkv(qkv, H, cu), ref = ref_packed(qkv, H, cu);
  EXPECT_LT(max_abs_diff(out, ref), 1e-12);
  EXPECT_LT(max_abs_diff(vjp1(out, qkv, 8), vjp1(ref, qkv, 8)), 1e-11);
}

TEST(AttentionQkv, ExplicitScaleAndStridedInput) {
  // A non-contiguous qkv (a transposed view) and an explicit scale.
  Tensor base = rand_input({6, 2, 12}, 300, -2, 2);
  Tensor qkv = transpose(base, 0, 1);  // (2, 6, 12)
  Tensor out = attention_qkv(qkv, 2, {}, 0.3);
  const int64_t B = 2, T = 6, C = 4, H = 2, D = 2;
  auto heads = [&](int64_t i) { return transpose(view(contiguous(slice(qkv, 2, i * C, (i + 1) * C)), {B, T, H, D}), 1, 2); };
  Tensor ref = reshape(transpose(scaled_dot_product_attention(heads(0), heads(1), heads(2), true, 0.3), 1, 2), {B, T, C});
  EXPECT_LT(max_abs_diff(out, ref), 1e-12);
}

TEST(AttentionQkv, Gradcheck) {
  Tensor qkv = rand_input({2, 4, 12}, 400, -2, 2);
  EXPECT_GRADCHECK([](const Tensors& in) { return attention_qkv(in[0], 2); }, {qkv});
  Tensor packed = rand_input({7, 18}, 401, -2, 2), cu = cu_of({3, 0, 4});
  EXPECT_GRADCHECK([cu](const Tensors& in) { return attention_qkv(in[0], 3, cu); }, {packed});
}

// Perturbing a later token's q, k and v leaves every earlier output bit for bit.
TEST(AttentionQkv, CausalityIsExact) {
  const int64_t T = 45, C3 = 3 * 2 * 8;
  Tensor qkv = rand_input({1, T, C3}, 500, -2, 2);
  std::vector<double> v = qkv.to_vector<double>();
  const int64_t j = 33;
  for (int64_t c = 0; c < C3; ++c) v[j * C3 + c] += 2.5;
  Tensor out = attention_qkv(qkv, 2), out2 = attention_qkv(from_vector<double>(v, qkv.shape()), 2);
  std::vector<double> a = out.to_vector<double>(), b = out2.to_vector<double>();
  const int64_t C = C3 / 3;
  for (int64_t i = 0; i < j * C; ++i) ASSERT_EQ(a[i], b[i]) << "position " << i / C;
  EXPECT_NE(a[j * C], b[j * C]);
}

TEST(AttentionQkv, F32MatchesF64) {
  Tensor qkv = rand_input({2, 50, 3 * 4 * 16}, 600, -2, 2);
  Tensor q32 = to_dtype(qkv, DType::f32).detach().set_requires_grad();
  Tensor out = attention_qkv(qkv, 4), out32 = attention_qkv(q32, 4);
  EXPECT_EQ(out32.dtype(), DType::f32);
  EXPECT_LT(max_abs_diff(out32, out), 1e-5);
  Tensor gy = randn(out.shape(), {DType::f64});
  EXPECT_LT(max_abs_diff(grad({out32}, {q32}, {to_dtype(gy, DType::f32)})[0], grad({out}, {qkv}, {gy})[0]), 1e-4);
}

TEST(AttentionQkv, NoDoubleBackward) {
  Tensor qkv = rand_input({1, 3, 6}, 700);
  Tensor g = grad({attention_qkv(qkv, 1)}, {qkv}, {rand_input({1, 3, 2}, 701).detach()}, false, true)[0];
  EXPECT_DG_ERROR(grad({g}, {qkv}, {ones(g.shape(), {DType::f64})}), "double backward of attention_qkv is not supported");
}

TEST(AttentionQkv, Errors) {
  const char* op = "attention_qkv";
  Tensor x = zeros({2, 5, 12}, {DType::f64});
  EXPECT_DG_ERROR(attention_qkv(zeros({2, 5, 10}, {DType::f64}), 2), op, "must be 3 * n_head * head_dim", "[2, 5, 10]");
  EXPECT_DG_ERROR(attention_qkv(x, 3), op, "must be 3 * n_head * head_dim", "n_head 3");
  EXPECT_DG_ERROR(attention_qkv(x, 0), op, "n_head 0");
  EXPECT_DG_ERROR(attention_qkv(zeros({2, 2, 5, 12}, {DType::f64}), 2), op, "(B, T, 3C) or packed (N, 3C)");
  EXPECT_DG_ERROR(attention_qkv(x, 2, cu_of({5, 5})), op, "cu_seqlens goes with packed");
  EXPECT_DG_ERROR(attention_qkv(zeros({5, 12}, {DType::f64}), 2), op, "cu_seqlens goes with packed");
  EXPECT_DG_ERROR(attention_qkv(zeros({5, 12}, {DType::f64}), 2, cu_of({2, 2})), op,
                  "must equal the token count N = 5");
  EXPECT_DG_ERROR(attention_qkv(zeros({2, 5, 12}, {DType::i64}), 2), op, "floating");
}

// Sequences of lengths around the query block (32), an empty one, rows in a
// random order: the same values and gradients as permuting, attending and
// permuting back, in f64 and f32.
TEST(AttentionQkvRows, MatchesPermutedPackedAttention) {
  const std::vector<int64_t> lengths{3, 0, 40, 1, 7, 33};
  const int64_t N = std::accumulate(lengths.begin(), lengths.end(), int64_t{0}), H = 2, D = 4;
  const Tensor cu = cu_of(lengths);
  const auto [rows, inv] = permutation(N, 900);
  for (DType dt : {DType::f64, DType::f32}) {
    Tensor qkv = to_dtype(rand_input({N, 3 * H * D}, 901, -2, 2), dt).detach().set_requires_grad();
    Tensor out = attention_qkv_rows(qkv, H, cu, from_vector<int64_t>(rows, {N}));
    Tensor ref = ref_rows(qkv, H, cu, rows, inv);
    ASSERT_EQ(out.shape(), ref.shape());
    const double tol = dt == DType::f64 ? 1e-12 : 1e-5;
    EXPECT_LT(max_abs_diff(out, ref), tol) << dtype_name(dt);
    EXPECT_LT(max_abs_diff(vjp1(out, qkv, 9), vjp1(ref, qkv, 9)), 10 * tol) << dtype_name(dt);
  }
}

// Rows in order: attention_qkv itself.
TEST(AttentionQkvRows, InOrderRowsAreAttentionQkv) {
  const Tensor qkv = rand_input({9, 12}, 902, -2, 2), cu = cu_of({4, 5});
  Tensor out = attention_qkv_rows(qkv, 2, cu, arange(9, {DType::i64}));
  EXPECT_LT(max_abs_diff(out, attention_qkv(qkv, 2, cu)), 1e-14);
}

TEST(AttentionQkvRows, Gradcheck) {
  const Tensor qkv = rand_input({7, 18}, 903, -2, 2), cu = cu_of({3, 0, 4});
  const Tensor rows = from_vector<int64_t>({5, 0, 3, 6, 1, 4, 2}, {7});
  EXPECT_GRADCHECK([&](const Tensors& in) { return attention_qkv_rows(in[0], 3, cu, rows); }, {qkv});
}

TEST(AttentionQkvRows, NoDoubleBackward) {
  Tensor qkv = rand_input({3, 6}, 904);
  const Tensor rows = from_vector<int64_t>({2, 0, 1}, {3});
  Tensor g = grad({attention_qkv_rows(qkv, 1, cu_of({3}), rows)}, {qkv}, {rand_input({3, 2}, 905).detach()}, false,
                  true)[0];
  EXPECT_DG_ERROR(grad({g}, {qkv}, {ones(g.shape(), {DType::f64})}),
                  "double backward of attention_qkv_rows is not supported");
}

TEST(AttentionQkvRows, Errors) {
  const char* op = "attention_qkv_rows";
  const Tensor qkv = zeros({5, 12}, {DType::f64}), cu = cu_of({2, 3});
  auto rows = [](std::vector<int64_t> r) { return from_vector<int64_t>(r, {static_cast<int64_t>(r.size())}); };
  EXPECT_DG_ERROR(attention_qkv_rows(qkv, 2, cu, rows({0, 1, 1, 3, 4})), op, "permutation of 0..4",
                  "a row is listed 1 extra time(s)");
  EXPECT_DG_ERROR(attention_qkv_rows(qkv, 2, cu, rows({0, 1, 2, 3, 5})), op, "permutation of 0..4", "got a row 5");
  EXPECT_DG_ERROR(attention_qkv_rows(qkv, 2, cu, rows({0, 1, 2, 3})), op, "rows must be i64 (N) with N = 5", "[4]");
  EXPECT_DG_ERROR(attention_qkv_rows(qkv, 2, cu, zeros({5}, {DType::f64})), op, "rows must be i64");
  EXPECT_DG_ERROR(attention_qkv_rows(qkv, 2, Tensor(), rows({0, 1, 2, 3, 4})), op, "cu_seqlens is required");
  EXPECT_DG_ERROR(attention_qkv_rows(zeros({1, 5, 12}, {DType::f64}), 2, cu, rows({0})), op, "packed (N, 3C)");
  EXPECT_DG_ERROR(attention_qkv_rows(qkv, 3, cu, rows({0, 1, 2, 3, 4})), op, "3 * n_head * head_dim");
  EXPECT_DG_ERROR(attention_qkv_rows(qkv, 2, cu_of({2, 2}), rows({0, 1, 2, 3, 4})), op,
                  "must equal the token count N = 5");
}
