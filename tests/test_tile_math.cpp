// The tiled attention algorithm of the CUDA backend (cuda/attention.cu), run
// on the host: the same block schedule (kern::block_prefix, locate_block), the
// same tile loops (32 keys or queries per tile, kRowsPerWarp rows per warp, W
// warps per block), the same shared-memory layouts and per-tile functions
// (tensor/kernels/attention_tile.h), with each warp's 32 lanes stepped in turn
// and its shuffle reductions done as the same xor butterfly. Compared in f64
// with the CPU backend's attention, attention_varlen and attention_qkv
// (forward, lse and backward) to 1e-12; outputs start as NaN, so an element
// the schedule misses fails. No GPU is needed: this is what checks the CUDA
// kernels' math on a machine without one.
//
// Legend: B = batch, H = heads, T = tokens, D = head dim, W = warps per block,
// R = kRowsPerWarp, L = kLanes (32).
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <limits>
#include <vector>

#include "tensor/backend.h"
#include "tensor/creation.h"
#include "tensor/kernels/attention_tile.h"
#include "testing.h"

using namespace dg;
using kern::AttnProblem;
using kern::AttnTile;
using kern::kLanes;
using kern::kRowsPerWarp;
static_assert(kRowsPerWarp == 4, "the ones[] below list kRowsPerWarp entries");

namespace {

using dg::testing::max_rel_diff;

using T = double;
using Lanes = std::array<T, kLanes>;
const T kNaN = std::numeric_limits<T>::quiet_NaN();

// warp_allreduce: the xor butterfly of __shfl_xor_sync (every lane ends with
// the same value; lane 0's is returned).
template <class Op>
T butterfly(Lanes v, Op op) {
  for (int o = kLanes / 2; o > 0; o >>= 1) {
    const Lanes prev = v;
    for (int l = 0; l < kLanes; ++l) v[l] = op(prev[l], prev[l ^ o]);
  }
  return v[0];
}
T lane_max(const Lanes& v) { return butterfly(v, [](T a, T b) { return a > b ? a : b; }); }
T lane_sum(const Lanes& v) { return butterfly(v, [](T a, T b) { return a + b; }); }

// load_rows: `rows` rows of D values to a buffer of row stride lds, zero past
// n. (The kernels load only the n rows of a tile and leave the rest of its 32
// stale: every lane computes its dot products, the masked ones are discarded.
// Here those rows are zero, so that the emulation reads inside its buffers.)
void load_rows(std::vector<T>& dst, int64_t lds, const T* src, int64_t ld, int64_t rows, int64_t n, int64_t D) {
  dst.assign(static_cast<size_t>(rows * lds), T(0));
  for (int64_t r = 0; r < n; ++r)
    for (int64_t d = 0; d < D; ++d) dst[r * lds + d] = src[r * ld + d];
}

// The Schedule of a launch: prefix (packed problems) and the block count bound.
struct Schedule {
  std::vector<int64_t> prefix{0};
  int64_t blocks = 0;
  Schedule(const AttnProblem& p, int64_t rows, bool over_keys) {
    blocks = kern::blocks_bound(p, rows, over_keys);
    if (p.kind == AttnProblem::Kind::dense) return;
    prefix.resize(static_cast<size_t>(p.S + 1));
    kern::block_prefix(p.cu, p.S, rows, prefix.data());
  }
};

constexpr int R = kRowsPerWarp;

// One lane's accumulators for the R rows of its warp (the kernels' T acc[R][DC]).
template <int DC>
struct LaneAcc {
  T v[R][DC] = {};
};
// Per warp of a block, per lane.
template <int DC>
using BlockAcc = std::vector<std::array<LaneAcc<DC>, kLanes>>;

// Per lane, its dot_rows_scaled results for the R rows of the warp.
using LaneRows = std::array<std::array<T, R>, kLanes>;

// attention_forward_kernel, block by block, warp by warp, lane by lane.
template <int DC>
void emulate_forward(const AttnProblem& p, int W, const T* q, const T* k, const T* v, T* o, T* lse, T scale) {
  const int64_t rows = W * R, D = p.D;
  const Schedule sched(p, rows, false);
  for (int64_t blk = 0; blk < std::max<int64_t>(sched.blocks, 1); ++blk) {
    const kern::BlockWork bw = kern::locate_block(p, blk, rows, sched.prefix.data(), false);
    if (bw.tile < 0) continue;
    const AttnTile a = p.tile(bw.tile);
    const int64_t nq = std::min<int64_t>(rows, a.Tq - bw.row0);
    std::vector<T> Qs, Ks, Vs, Ws(static_cast<size_t>(rows * kLanes));
    load_rows(Qs, D, q + a.q + bw.row0 * a.ld_in, a.ld_in, rows, nq, D);
    std::vector<std::array<kern::OnlineRow<T>, R>> st(static_cast<size_t>(W));
    BlockAcc<DC> acc(static_cast<size_t>(W));
    const int64_t kend = a.keys_for(bw.row0 + nq - 1);
    for (int64_t j0 = 0; j0 < kend; j0 += kLanes) {
      const int nk = static_cast<int>(std::min<int64_t>(kLanes, kend - j0));
      load_rows(Ks, D + 1, k + a.k + j0 * a.ld_in, a.ld_in, kLanes, nk, D);
      load_rows(Vs, D, v + a.v + j0 * a.ld_in, a.ld_in, kLanes, nk, D);
      for (int warp = 0; warp < W; ++warp) {
        const int64_t r0 = warp * R;
        const int nr = kern::rows_of_warp(nq, r0, R);
        if (nr == 0) continue;
        LaneRows s{};
        for (int lane = 0; lane < kLanes; ++lane)
          kern::dot_rows_scaled<T, R>(s[lane].data(), &Qs[r0 * D], D, nr, &Ks[lane * (D + 1)], D, scale);
        T alpha[R] = {};
        for (int r = 0; r < nr; ++r) {
          Lanes sr{}, w{};
          for (int lane = 0; lane < kLanes; ++lane)
            sr[lane] = lane >= nk || j0 + lane >= a.keys_for(bw.row0 + r0 + r) ? kern::neg_inf<T>() : s[lane][r];
          alpha[r] = kern::online_rescale(st[warp][r], lane_max(sr));
          for (int lane = 0; lane < kLanes; ++lane) w[lane] = kern::online_weight(st[warp][r], sr[lane]);
          st[warp][r].l += lane_sum(w);
          std::copy(w.begin(), w.end(), &Ws[(r0 + r) * kLanes]);
        }
        for (int lane = 0; lane < kLanes; ++lane)
          kern::accumulate_rows<T, R, DC>(acc[warp][lane].v, alpha, &Ws[r0 * kLanes], Vs.data(), D, nk, nr, lane, D);
      }
    }
    for (int warp = 0; warp < W; ++warp)
      for (int r = 0; r < kern::rows_of_warp(nq, warp * R, R); ++r) {
        const int64_t i = bw.row0 + warp * R + r;
        for (int lane = 0; lane < kLanes; ++lane)
          kern::store_lane_dims<T, DC>(o + a.o + i * a.ld_out, acc[warp][lane].v[r], T(1) / st[warp][r].l, lane, D);
        lse[a.lse + i] = kern::online_lse(st[warp][r]);
      }
  }
}

// attention_dq_kernel then attention_dkv_kernel, block by block.
template <int DC>
void emulate_backward(const AttnProblem& p, int W, const T* q, const T* k, const T* v, const T* o, const T* go,
                      const T* lse, T* gq, T* gk, T* gv, int64_t lse_count, T scale) {
  const int64_t rows = W * R, D = p.D;
  const T ones[R] = {T(1), T(1), T(1), T(1)};
  std::vector<T> dl(static_cast<size_t>(lse_count), kNaN);
  const Schedule sq(p, rows, false);
  for (int64_t blk = 0; blk < std::max<int64_t>(sq.blocks, 1); ++blk) {
    const kern::BlockWork bw = kern::locate_block(p, blk, rows, sq.prefix.data(), false);
    if (bw.tile < 0) continue;
    const AttnTile a = p.tile(bw.tile);
    const int64_t nq = std::min<int64_t>(rows, a.Tq - bw.row0);
    std::vector<T> Qs, dOs, Ks, Vs, dSs(static_cast<size_t>(rows * kLanes));
    load_rows(Qs, D, q + a.q + bw.row0 * a.ld_in, a.ld_in, rows, nq, D);
    load_rows(dOs, D, go + a.o + bw.row0 * a.ld_out, a.ld_out, rows, nq, D);
    std::vector<T> row_dl(static_cast<size_t>(rows)), row_lse(static_cast<size_t>(rows));
    for (int64_t row = 0; row < nq; ++row) {
      const int64_t i = bw.row0 + row;
      const T* orow = o + a.o + i * a.ld_out;
      Lanes part{};
      for (int lane = 0; lane < kLanes; ++lane)
        part[lane] = kern::strided_sum<T>(D, lane, kLanes, [&](int64_t d) { return dOs[row * D + d] * orow[d]; });
      row_dl[row] = lane_sum(part);
      row_lse[row] = lse[a.lse + i];
      dl[a.lse + i] = row_dl[row];
    }
    BlockAcc<DC> acc(static_cast<size_t>(W));
    const int64_t kend = a.keys_for(bw.row0 + nq - 1);
    for (int64_t j0 = 0; j0 < kend; j0 += kLanes) {
      const int nk = static_cast<int>(std::min<int64_t>(kLanes, kend - j0));
      load_rows(Ks, D + 1, k + a.k + j0 * a.ld_in, a.ld_in, kLanes, nk, D);
      load_rows(Vs, D + 1, v + a.v + j0 * a.ld_in, a.ld_in, kLanes, nk, D);
      for (int warp = 0; warp < W; ++warp) {
        const int64_t r0 = warp * R;
        const int nr = kern::rows_of_warp(nq, r0, R);
        if (nr == 0) continue;
        for (int lane = 0; lane < kLanes; ++lane) {
          T s[R], dp[R];
          kern::dot_rows_scaled<T, R>(s, &Qs[r0 * D], D, nr, &Ks[lane * (D + 1)], D, scale);
          kern::dot_rows_scaled<T, R>(dp, &dOs[r0 * D], D, nr, &Vs[lane * (D + 1)], D, T(1));
          for (int r = 0; r < nr; ++r) {
            const bool visible = lane < nk && j0 + lane < a.keys_for(bw.row0 + r0 + r);
            dSs[(r0 + r) * kLanes + lane] =
                visible ? kern::score_grad(kern::prob_from_lse(s[r], row_lse[r0 + r], true), dp[r], row_dl[r0 + r])
                        : T(0);
          }
        }
        for (int lane = 0; lane < kLanes; ++lane)
          kern::accumulate_rows<T, R, DC>(acc[warp][lane].v, ones, &dSs[r0 * kLanes], Ks.data(), D + 1, nk, nr, lane,
                                          D);
      }
    }
    for (int warp = 0; warp < W; ++warp)
      for (int r = 0; r < kern::rows_of_warp(nq, warp * R, R); ++r)
        for (int lane = 0; lane < kLanes; ++lane)
          kern::store_lane_dims<T, DC>(gq + a.q + (bw.row0 + warp * R + r) * a.ld_in, acc[warp][lane].v[r], scale,
                                       lane, D);
  }

  const Schedule sk(p, rows, true);
  for (int64_t blk = 0; blk < std::max<int64_t>(sk.blocks, 1); ++blk) {
    const kern::BlockWork bw = kern::locate_block(p, blk, rows, sk.prefix.data(), true);
    if (bw.tile < 0) continue;
    const AttnTile a = p.tile(bw.tile);
    const int64_t nk = std::min<int64_t>(rows, a.Tk - bw.row0);
    std::vector<T> Qs, dOs, Ks, Vs, Ps(static_cast<size_t>(rows * kLanes)), dSs(Ps.size());
    load_rows(Ks, D, k + a.k + bw.row0 * a.ld_in, a.ld_in, rows, nk, D);
    load_rows(Vs, D, v + a.v + bw.row0 * a.ld_in, a.ld_in, rows, nk, D);
    BlockAcc<DC> dk(static_cast<size_t>(W)), dv(static_cast<size_t>(W));
    for (int64_t i0 = a.first_query_for(bw.row0); i0 < a.Tq; i0 += kLanes) {
      const int nq = static_cast<int>(std::min<int64_t>(kLanes, a.Tq - i0));
      load_rows(Qs, D + 1, q + a.q + i0 * a.ld_in, a.ld_in, kLanes, nq, D);
      load_rows(dOs, D + 1, go + a.o + i0 * a.ld_out, a.ld_out, kLanes, nq, D);
      Lanes lse_s{}, dl_s{};
      for (int lane = 0; lane < nq; ++lane) {
        lse_s[lane] = lse[a.lse + i0 + lane];
        dl_s[lane] = dl[a.lse + i0 + lane];
      }
      for (int warp = 0; warp < W; ++warp) {
        const int64_t r0 = warp * R;
        const int nr = kern::rows_of_warp(nk, r0, R);
        if (nr == 0) continue;
        for (int lane = 0; lane < kLanes; ++lane) {
          T s[R], dp[R];
          kern::dot_rows_scaled<T, R>(s, &Ks[r0 * D], D, nr, &Qs[lane * (D + 1)], D, scale);
          kern::dot_rows_scaled<T, R>(dp, &Vs[r0 * D], D, nr, &dOs[lane * (D + 1)], D, T(1));
          for (int r = 0; r < nr; ++r) {
            const bool visible = lane < nq && bw.row0 + r0 + r < a.keys_for(i0 + lane);
            const T pr = kern::prob_from_lse(s[r], lse_s[lane], visible);
            Ps[(r0 + r) * kLanes + lane] = pr;
            dSs[(r0 + r) * kLanes + lane] = visible ? kern::score_grad(pr, dp[r], dl_s[lane]) : T(0);
          }
        }
        for (int lane = 0; lane < kLanes; ++lane) {
          kern::accumulate_rows<T, R, DC>(dv[warp][lane].v, ones, &Ps[r0 * kLanes], dOs.data(), D + 1, nq, nr, lane,
                                          D);
          kern::accumulate_rows<T, R, DC>(dk[warp][lane].v, ones, &dSs[r0 * kLanes], Qs.data(), D + 1, nq, nr, lane,
                                          D);
        }
      }
    }
    for (int warp = 0; warp < W; ++warp)
      for (int r = 0; r < kern::rows_of_warp(nk, warp * R, R); ++r)
        for (int lane = 0; lane < kLanes; ++lane) {
          const int64_t j = bw.row0 + warp * R + r;
          kern::store_lane_dims<T, DC>(gk + a.k + j * a.ld_in, dk[warp][lane].v[r], scale, lane, D);
          kern::store_lane_dims<T, DC>(gv + a.v + j * a.ld_in, dv[warp][lane].v[r], T(1), lane, D);
        }
  }
}

std::vector<T> random_values(int64_t n, uint64_t seed) {
  Generator g(seed);
  std::vector<T> v = rand({n}, {DType::f64}, &g).to_vector<T>();
  for (T& x : v) x = 4 * x - 2;
  return v;
}

Tensor as_tensor(const std::vector<T>& v, const Shape& shape) { return from_vector<T>(v, shape); }

constexpr double kTol = 1e-12;

// Forward (out, lse) and backward (gq, gk, gv) of the emulation against the
// CPU backend's, for W warps per block. For qkv, q, k, v are the one (N, 3C)
// buffer and cpu_gq is gqkv.
void check_emulation(const AttnProblem& p, int W, const Tensor& q, const Tensor& k, const Tensor& v,
                     const Tensor& cpu_out, const Tensor& cpu_lse, const Tensor& gout, const Tensor& cpu_gq,
                     const Tensor& cpu_gk, const Tensor& cpu_gv, T scale) {
  std::vector<T> out(static_cast<size_t>(cpu_out.numel()), kNaN), lse(static_cast<size_t>(cpu_lse.numel()), kNaN);
  std::vector<T> gq(static_cast<size_t>(cpu_gq.numel()), kNaN), gk(static_cast<size_t>(cpu_gk.numel()), kNaN),
      gv(static_cast<size_t>(cpu_gv.numel()), kNaN);
  const bool fused = p.kind == AttnProblem::Kind::qkv;
  T* gkp = fused ? gq.data() : gk.data();
  T* gvp = fused ? gq.data() : gv.data();
  ASSERT_NE(kern::head_chunks(p.D), 0) << p.D;
  kern::visit_head_chunks(p.D, [&](auto dc) {
    constexpr int DC = decltype(dc)::value;
    emulate_forward<DC>(p, W, q.data<T>(), k.data<T>(), v.data<T>(), out.data(), lse.data(), scale);
    emulate_backward<DC>(p, W, q.data<T>(), k.data<T>(), v.data<T>(), cpu_out.data<T>(), gout.data<T>(),
                         cpu_lse.data<T>(), gq.data(), gkp, gvp, static_cast<int64_t>(lse.size()), scale);
  });
  EXPECT_LE(max_rel_diff(out, cpu_out), kTol) << "out, W " << W;
  EXPECT_LE(max_rel_diff(lse, cpu_lse), kTol) << "lse, W " << W;
  EXPECT_LE(max_rel_diff(gq, cpu_gq), kTol) << (fused ? "gqkv" : "gq") << ", W " << W;
  if (!fused) {
    EXPECT_LE(max_rel_diff(gk, cpu_gk), kTol) << "gk, W " << W;
    EXPECT_LE(max_rel_diff(gv, cpu_gv), kTol) << "gv, W " << W;
  }
}

void check_dense(int64_t B, int64_t H, int64_t Tq, int64_t Tk, int64_t D, bool causal, uint64_t seed) {
  SCOPED_TRACE(::testing::Message() << "dense B " << B << " H " << H << " Tq " << Tq << " Tk " << Tk << " D " << D
                                  << (causal ? " causal" : ""));
  const T scale = 1 / std::sqrt(T(D));
  const Tensor q = as_tensor(random_values(B * H * Tq * D, seed), {B, H, Tq, D});
  const Tensor k = as_tensor(random_values(B * H * Tk * D, seed + 1), {B, H, Tk, D});
  const Tensor v = as_tensor(random_values(B * H * Tk * D, seed + 2), {B, H, Tk, D});
  const Tensor gout = as_tensor(random_values(B * H * Tq * D, seed + 3), {B, H, Tq, D});
  Tensor out = zeros({B, H, Tq, D}, {DType::f64}), lse = zeros({B, H, Tq}, {DType::f64});
  Tensor gq = zeros(q.shape(), {DType::f64}), gk = zeros(k.shape(), {DType::f64}), gv = zeros(k.shape(), {DType::f64});
  Backend& cpu = backend_for(Device::cpu());
  if (Tq > 0) cpu.attention(q, k, v, scale, causal, out, lse);
  cpu.attention_backward(q, k, v, out, lse, gout, scale, causal, gq, gk, gv);
  const AttnProblem p = AttnProblem::dense(B * H, Tq, Tk, D, causal);
  for (int W : {4, 1}) check_emulation(p, W, q, k, v, out, lse, gout, gq, gk, gv, scale);
}

Tensor cu_from_lengths(const std::vector<int64_t>& lengths) {
  std::vector<int64_t> cu{0};
  for (int64_t len : lengths) cu.push_back(cu.back() + len);
  return from_vector<int64_t>(cu, {static_cast<int64_t>(cu.size())});
}

AttnProblem packed(AttnProblem::Kind kind, int64_t H, int64_t N, int64_t D, const Tensor& cu) {
  return AttnProblem::packed(kind, H, N, D, cu.numel() - 1, cu.data<int64_t>());
}

void check_varlen(int64_t H, int64_t D, const std::vector<int64_t>& lengths, uint64_t seed) {
  const Tensor cu = cu_from_lengths(lengths);
  const int64_t N = cu.to_vector<int64_t>().back();
  SCOPED_TRACE(::testing::Message() << "varlen H " << H << " N " << N << " D " << D);
  const T scale = 1 / std::sqrt(T(D));
  const Tensor q = as_tensor(random_values(H * N * D, seed), {H, N, D});
  const Tensor k = as_tensor(random_values(H * N * D, seed + 1), {H, N, D});
  const Tensor v = as_tensor(random_values(H * N * D, seed + 2), {H, N, D});
  const Tensor gout = as_tensor(random_values(H * N * D, seed + 3), {H, N, D});
  Tensor out = zeros(q.shape(), {DType::f64}), lse = zeros({H, N}, {DType::f64});
  Tensor gq = zeros(q.shape(), {DType::f64}), gk = zeros(q.shape(), {DType::f64}), gv = zeros(q.shape(), {DType::f64});
  Backend& cpu = backend_for(Device::cpu());
  cpu.attention_varlen(q, k, v, cu, scale, out, lse);
  cpu.attention_varlen_backward(q, k, v, cu, out, lse, gout, scale, gq, gk, gv);
  for (int W : {4, 2}) check_emulation(packed(AttnProblem::Kind::packed, H, N, D, cu), W, q, k, v, out, lse, gout,
                                       gq, gk, gv, scale);
}

void check_qkv(int64_t H, int64_t D, const std::vector<int64_t>& lengths, uint64_t seed) {
  const Tensor cu = cu_from_lengths(lengths);
  const int64_t N = cu.to_vector<int64_t>().back(), C = H * D;
  SCOPED_TRACE(::testing::Message() << "qkv H " << H << " N " << N << " D " << D);
  const T scale = 1 / std::sqrt(T(D));
  const Tensor qkv = as_tensor(random_values(N * 3 * C, seed), {N, 3 * C});
  const Tensor gout = as_tensor(random_values(N * C, seed + 3), {N, C});
  Tensor out = zeros({N, C}, {DType::f64}), lse = zeros({H, N}, {DType::f64}), gqkv = zeros(qkv.shape(), {DType::f64});
  Backend& cpu = backend_for(Device::cpu());
  cpu.attention_qkv(qkv, cu, H, scale, out, lse);
  cpu.attention_qkv_backward(qkv, cu, H, out, lse, gout, scale, gqkv);
  for (int W : {4, 1})
    check_emulation(packed(AttnProblem::Kind::qkv, H, N, D, cu), W, qkv, qkv, qkv, out, lse, gout, gqkv, gqkv, gqkv,
                    scale);
}

}  // namespace

TEST(TileMath, DenseCausalAndNotOddSizes) {
  for (bool causal : {true, false}) {
    check_dense(2, 3, 37, 37, 5, causal, 10);   // T not a multiple of 32 or of the 16-row blocks
    check_dense(1, 2, 70, 70, 33, causal, 20);  // D just past one lane chunk
    check_dense(1, 1, 1, 1, 1, causal, 30);
  }
}

TEST(TileMath, DenseFewerQueriesThanKeys) {
  // KV-cached steps: the causal mask is aligned to the end (query i sees keys <= i + Tk - Tq).
  for (bool causal : {true, false}) {
    check_dense(2, 2, 20, 45, 16, causal, 40);
    check_dense(1, 3, 1, 33, 8, causal, 50);
  }
}

TEST(TileMath, DenseWideHeads) {
  check_dense(1, 1, 40, 40, 129, true, 60);  // DC = 8, one chunk partly used
  check_dense(1, 2, 9, 9, 256, false, 70);   // the largest head dim
  check_dense(1, 1, 33, 33, 64, true, 80);   // DC = 2 exactly full
}

TEST(TileMath, DenseNoQueriesGivesZeroKeyGradients) {
  check_dense(2, 1, 0, 7, 4, false, 90);
}

TEST(TileMath, VarlenEmptyAndLengthOneSequences) {
  check_varlen(3, 7, {5, 0, 1, 37, 0, 16, 33}, 100);
  check_varlen(2, 64, {0, 1, 1, 70, 0}, 110);
  check_varlen(1, 3, {1}, 120);
}

TEST(TileMath, FusedQkvMatchesCpu) {
  check_qkv(2, 12, {5, 0, 1, 37, 0, 16, 33}, 130);
  check_qkv(4, 33, {17, 1, 0, 40}, 140);
}

TEST(TileMath, BlockScheduleCoversEveryRowOnce) {
  // locate_block over the bound of blocks hits each (tile, row block) exactly once.
  const Tensor cu = cu_from_lengths({3, 0, 40, 16, 0, 17});
  const AttnProblem p = packed(AttnProblem::Kind::packed, 2, 76, 8, cu);
  const int64_t rows = 16;
  const Schedule s(p, rows, false);
  std::vector<int> hits(static_cast<size_t>(p.H * p.N), 0);
  for (int64_t blk = 0; blk < s.blocks; ++blk) {
    const kern::BlockWork bw = kern::locate_block(p, blk, rows, s.prefix.data(), false);
    if (bw.tile < 0) continue;
    const AttnTile a = p.tile(bw.tile);
    ASSERT_LT(bw.row0, a.Tq);
    for (int64_t i = bw.row0; i < std::min(a.Tq, bw.row0 + rows); ++i) ++hits[static_cast<size_t>(a.lse + i)];
  }
  for (size_t i = 0; i < hits.size(); ++i) EXPECT_EQ(hits[i], 1) << "row " << i;
}
