// Scaled dot-product attention, forward and backward, on the CPU.
//
// Legend: B = batch, H = heads, Tq = queries, Tk = keys (Tq == Tk for
// self-attention; Tq < Tk for a KV-cached step), D = head dim.
// q (B, H, Tq, D), k and v (B, H, Tk, D), out (B, H, Tq, D), lse (B, H, Tq),
// all contiguous. Each (b, h) pair is one independent tile of row-major
// matrices Q (Tq, D), K, V (Tk, D), and the tiles are spread over OpenMP
// threads; inside a tile the work is blocked GEMMs (gemm_rows: single-
// threaded OpenBLAS when the matmul kernel uses it, 1.0-1.5x Eigen's speed on
// these (32 x D x kend) products, else Eigen) and row-wise softmax (Eigen).
//
// Causal mask, aligned to the end: query i sees keys j <= i + (Tk - Tq), so
// the last query sees every key (the usual mask when Tq == Tk). Queries are
// processed in blocks of kQueryBlock rows; a block only touches the keys up
// to its last row's limit, which skips most of the masked upper triangle
// (for Tq == Tk about half the GEMM work).
//
// Forward, per query block (rows i):  S = scale * Q_i K^T, P = softmax(S)
// (masked entries 0), lse_i = log sum_j exp(S_ij), O_i = P V.
// It saves lse so that backward recomputes P = exp(S - lse) instead of
// storing the (Tq, Tk) probabilities.
// Backward, per block, with dO the output gradient and Dl_i = sum_d dO_id O_id:
//   dV += P^T dO_i,  dP = dO_i V^T,  dS = P * (dP - Dl_i),
//   dQ_i = scale * dS K,  dK += scale * dS^T Q_i.
// Scratch is O(kQueryBlock * Tk) per thread.
//
// Packed variable-length (attention_varlen): q, k, v (H, N, D) hold S causal
// sequences back to back, sequence s owning rows [cu[s], cu[s+1]). Each
// (h, s) pair is a tile like the above with Tq = Tk = len_s, whose Q, K, V
// are contiguous row blocks of head h; nothing crosses a sequence boundary.
// Lengths differ, so tiles are scheduled dynamically; scratch is sized by the
// longest sequence.
//
// Determinism: Eigen evaluates a row's exp/max/sum with SIMD packets from the
// first 64-byte-aligned element and scalar code before it, and the two round
// differently in the last bit. Scratch rows therefore start 64-byte aligned
// (buffers from Eigen's aligned allocator, row stride padded to 64 bytes), so
// a query's probabilities depend only on its own visible keys: perturbing a
// later key leaves earlier outputs bit-identical (causality is exact).
#include <algorithm>
#include <cmath>
#include <vector>

#include "tensor/cpu/cpu_backend.h"
#include "tensor/cpu/eigen.h"
#include "tensor/cpu/loops.h"

namespace dg::cpu {

namespace {

inline constexpr int64_t kQueryBlock = 32;

template <class T>
using Mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using ConstRows = Eigen::Map<const Mat<T>, 0, Eigen::OuterStride<>>;
template <class T>
using Row = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
template <class T>
using StridedMat = Eigen::Map<Mat<T>, 0, Eigen::OuterStride<>>;
template <class T>
using Scratch = std::vector<T, Eigen::aligned_allocator<T>>;

// Row stride of the scratch matrices: n rounded up to 64 bytes.
template <class T>
int64_t padded(int64_t n) {
  constexpr int64_t per_line = 64 / sizeof(T);
  return (n + per_line - 1) / per_line * per_line;
}

struct AttnDims {
  int64_t tiles, Tq, Tk, D;
  bool causal;
  // Keys visible to query i: [0, keys_for(i)).
  int64_t keys_for(int64_t i) const { return causal ? std::min(Tk, i + 1 + (Tk - Tq)) : Tk; }
  int64_t flops() const { return tiles * Tq * Tk * D; }
};

// Row strides of a tile's matrices: `in` for Q, K, V (and dQ, dK, dV), `out`
// for O and dO. Contiguous (·, D) tiles have both equal to D; tiles read
// straight from fused projections (N, 3C) have in = 3C, out = C.
struct RowStrides {
  int64_t in, out;
};

// S (nq, kend) = scale * Q_i K^T for the query rows [i0, i0 + nq), then, row
// by row, P = exp(S - lse) over the visible keys and 0 over the masked ones.
// With `lse_out`, lse is computed here (forward); otherwise read from lse_in.
template <class T>
void block_probabilities(const ConstRows<T>& Q, const ConstRows<T>& K, T scale, const AttnDims& d, int64_t i0,
                         int64_t nq, int64_t kend, T* s_buf, T* lse_out, const T* lse_in) {
  const int64_t ld = padded<T>(kend);
  gemm_rows<T>(false, true, nq, kend, d.D, scale, Q.data() + i0 * Q.outerStride(), Q.outerStride(), K.data(),
               K.outerStride(), T(0), s_buf, ld);
  for (int64_t r = 0; r < nq; ++r) {
    const int64_t len = d.keys_for(i0 + r);
    Row<T> s(s_buf + r * ld, len);
    T lse;
    if (lse_out) {
      const T m = s.maxCoeff();
      s = (s - m).exp();
      const T sum = s.sum();
      s *= T(1) / sum;
      lse = m + std::log(sum);
      lse_out[i0 + r] = lse;
    } else {
      lse = lse_in[i0 + r];
      s = (s - lse).exp();
    }
    Row<T>(s_buf + r * ld + len, kend - len).setZero();
  }
}

template <class T>
void attention_tile(const T* q, const T* k, const T* v, T* o, T* lse, T scale, const AttnDims& d, T* s_buf,
                    RowStrides ld) {
  const Eigen::OuterStride<> in(ld.in);
  ConstRows<T> Q(q, d.Tq, d.D, in), K(k, d.Tk, d.D, in);
  for (int64_t i0 = 0; i0 < d.Tq; i0 += kQueryBlock) {
    const int64_t nq = std::min(kQueryBlock, d.Tq - i0), kend = d.keys_for(i0 + nq - 1);
    block_probabilities<T>(Q, K, scale, d, i0, nq, kend, s_buf, lse, nullptr);
    gemm_rows<T>(false, false, nq, d.D, kend, T(1), s_buf, padded<T>(kend), v, ld.in, T(0), o + i0 * ld.out, ld.out);
  }
}

template <class T>
void attention_backward_tile(const T* q, const T* k, const T* v, const T* o, const T* lse, const T* go, T* gq, T* gk,
                             T* gv, T scale, const AttnDims& d, T* p_buf, T* dp_buf, T* dl_buf, RowStrides ld) {
  const Eigen::OuterStride<> in(ld.in), out(ld.out);
  ConstRows<T> Q(q, d.Tq, d.D, in), K(k, d.Tk, d.D, in), O(o, d.Tq, d.D, out), dO(go, d.Tq, d.D, out);
  StridedMat<T> dK(gk, d.Tk, d.D, in), dV(gv, d.Tk, d.D, in);
  dK.setZero();
  dV.setZero();
  // Dl_i = sum_d dO_id O_id = sum_j P_ij dP_ij (the softmax backward's row dot).
  Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>> dl(dl_buf, d.Tq);
  dl = (dO.array() * O.array()).rowwise().sum();
  for (int64_t i0 = 0; i0 < d.Tq; i0 += kQueryBlock) {
    const int64_t nq = std::min(kQueryBlock, d.Tq - i0), kend = d.keys_for(i0 + nq - 1);
    block_probabilities<T>(Q, K, scale, d, i0, nq, kend, p_buf, nullptr, lse);
    const int64_t ldp = padded<T>(kend);
    StridedMat<T> P(p_buf, nq, kend, Eigen::OuterStride<>(ldp)), dS(dp_buf, nq, kend, Eigen::OuterStride<>(ldp));
    const T* go_i = go + i0 * ld.out;
    gemm_rows<T>(true, false, kend, d.D, nq, T(1), p_buf, ldp, go_i, ld.out, T(1), gv, ld.in);         // dV += P^T dO_i
    gemm_rows<T>(false, true, nq, kend, d.D, T(1), go_i, ld.out, v, ld.in, T(0), dp_buf, ldp);         // dP = dO_i V^T
    dS.array() = P.array() * (dS.array().colwise() - dl.segment(i0, nq));
    gemm_rows<T>(false, false, nq, d.D, kend, scale, dp_buf, ldp, k, ld.in, T(0), gq + i0 * ld.in, ld.in);  // dQ_i
    gemm_rows<T>(true, false, kend, d.D, nq, scale, dp_buf, ldp, q + i0 * ld.in, ld.in, T(1), gk, ld.in);   // dK
  }
}

AttnDims attn_dims(const Tensor& q, const Tensor& k, bool causal) {
  DG_ASSERT(q.dim() == 4 && k.dim() == 4 && q.is_contiguous() && k.is_contiguous(), "attention q {} k {}",
            q.shape(), k.shape());
  return {q.size(0) * q.size(1), q.size(2), k.size(2), q.size(3), causal};
}

// The (h, s) tiles of a packed varlen batch, read from cu_seqlens (S + 1),
// which the caller has checked (first 0, non-decreasing, last N).
struct VarlenTiles {
  const int64_t* cu;
  int64_t H, S, N, D, max_len = 0, flops = 0;
  VarlenTiles(int64_t H_, int64_t N_, int64_t D_, const Tensor& cu_seqlens)
      : cu(cu_seqlens.data<int64_t>()), H(H_), S(cu_seqlens.numel() - 1), N(N_), D(D_) {
    DG_ASSERT(cu_seqlens.dim() == 1 && cu_seqlens.is_contiguous() && S >= 0 && cu[0] == 0 && cu[S] == N,
              "attention_varlen: N {} cu_seqlens {}", N, cu_seqlens.shape());
    for (int64_t s = 0; s < S; ++s) {
      const int64_t len = cu[s + 1] - cu[s];
      DG_ASSERT(len >= 0, "attention_varlen: cu_seqlens decreases at {}", s + 1);
      max_len = std::max(max_len, len);
      flops += H * len * len * D;
    }
  }
  // q (H, N, D)
  VarlenTiles(const Tensor& q, const Tensor& cu_seqlens) : VarlenTiles(q.size(0), q.size(1), q.size(2), cu_seqlens) {
    DG_ASSERT(q.dim() == 3 && q.is_contiguous(), "attention_varlen q {}", q.shape());
  }
  int64_t count() const { return H * S; }
  // Tile t = (h, s): its dims and the offset of its first row in (H, N, ·).
  AttnDims dims(int64_t t) const {
    const int64_t s = t % S, len = cu[s + 1] - cu[s];
    return {1, len, len, D, true};
  }
  int64_t row(int64_t t) const { return t / S * N + cu[t % S]; }
  int64_t head(int64_t t) const { return t / S; }
  int64_t first_token(int64_t t) const { return cu[t % S]; }
};

// Per-thread scratch of a tile: probabilities (kQueryBlock rows of the
// longest sequence, 64-byte padded), and for backward dS and the row dots.
// With row_width > 0 (attention over rows in any order), also room for the
// longest sequence's rows, row_width values per token, gathered there.
template <class T>
struct TileScratch {
  Scratch<T> p, dp, dl, rows;
  TileScratch(const VarlenTiles& tiles, bool backward, int64_t row_width = 0)
      : p(kQueryBlock * padded<T>(tiles.max_len)),
        dp(backward ? kQueryBlock * padded<T>(tiles.max_len) : 0),
        dl(backward ? tiles.max_len : 0),
        rows(row_width * tiles.max_len) {}
};

// body(t, dims, scratch) for every non-empty tile of a packed batch, spread
// over threads dynamically (lengths differ); one scratch per thread.
template <class T, class Body>
void for_each_varlen_tile(const VarlenTiles& tiles, bool backward, const Body& body) {
#pragma omp parallel if (worth_parallel(tiles.flops))
  {
    TileScratch<T> scratch(tiles, backward);
#pragma omp for schedule(dynamic)
    for (int64_t t = 0; t < tiles.count(); ++t) {
      const AttnDims d = tiles.dims(t);
      if (d.Tq > 0) body(t, d, scratch);
    }
  }
}

// body(s, dims, scratch) for every non-empty sequence s of a packed batch,
// all of its heads at once, spread over threads dynamically; the scratch has
// room for the sequence's rows, row_width values per token.
template <class T, class Body>
void for_each_varlen_sequence(const VarlenTiles& tiles, bool backward, int64_t row_width, const Body& body) {
#pragma omp parallel if (worth_parallel(tiles.flops))
  {
    TileScratch<T> scratch(tiles, backward, row_width);
#pragma omp for schedule(dynamic)
    for (int64_t s = 0; s < tiles.S; ++s) {
      const int64_t len = tiles.cu[s + 1] - tiles.cu[s];
      if (len > 0) body(s, AttnDims{1, len, len, tiles.D, true}, scratch);
    }
  }
}

// Rows rows[0..L) of a (·, width) matrix into the dense (L, width) block
// dst, and back.
template <class T>
void gather_rows_to(const T* src, int64_t width, const int64_t* rows, int64_t L, T* dst) {
  for (int64_t i = 0; i < L; ++i) std::copy_n(src + rows[i] * width, width, dst + i * width);
}
template <class T>
void scatter_rows_from(const T* src, int64_t L, int64_t width, const int64_t* rows, T* dst) {
  for (int64_t i = 0; i < L; ++i) std::copy_n(src + i * width, width, dst + rows[i] * width);
}

// Every tensor in `others` has a's shape and is contiguous.
bool contiguous_like(const Tensor& a, std::initializer_list<const Tensor*> others) {
  for (const Tensor* t : others)
    if (t->shape() != a.shape() || !t->is_contiguous()) return false;
  return true;
}

}  // namespace

void CpuBackend::attention(const Tensor& q, const Tensor& k, const Tensor& v, double scale, bool causal,
                           const Tensor& out, const Tensor& lse) {
  const AttnDims d = attn_dims(q, k, causal);
  DG_ASSERT(v.shape() == k.shape() && v.is_contiguous() && out.shape() == q.shape() && out.is_contiguous() &&
                lse.numel() == d.tiles * d.Tq,
            "attention q {} k {} v {} out {} lse {}", q.shape(), k.shape(), v.shape(), out.shape(), lse.shape());
  if (d.tiles == 0 || d.Tq == 0) return;
  visit_floating(q.dtype(), "attention", [&](auto tag) {
    using T = decltype(tag);
    const T *qp = q.data<T>(), *kp = k.data<T>(), *vp = v.data<T>();
    T *op = out.data<T>(), *lp = lse.data<T>();
    const int64_t qs = d.Tq * d.D, ks = d.Tk * d.D;
#pragma omp parallel if (worth_parallel(d.flops()))
    {
      Scratch<T> s_buf(kQueryBlock * padded<T>(d.Tk));
#pragma omp for schedule(static)
      for (int64_t t = 0; t < d.tiles; ++t)
        attention_tile<T>(qp + t * qs, kp + t * ks, vp + t * ks, op + t * qs, lp + t * d.Tq, T(scale), d,
                          s_buf.data(), {d.D, d.D});
    }
  });
}

void CpuBackend::attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                                    const Tensor& lse, const Tensor& gout, double scale, bool causal,
                                    const Tensor& gq, const Tensor& gk, const Tensor& gv) {
  const AttnDims d = attn_dims(q, k, causal);
  DG_ASSERT(v.shape() == k.shape() && out.shape() == q.shape() && gout.shape() == q.shape() &&
                gq.shape() == q.shape() && gk.shape() == k.shape() && gv.shape() == k.shape() &&
                gout.is_contiguous() && out.is_contiguous() && v.is_contiguous() && gq.is_contiguous() &&
                gk.is_contiguous() && gv.is_contiguous(),
            "attention_backward q {} k {} v {} gout {}", q.shape(), k.shape(), v.shape(), gout.shape());
  visit_floating(q.dtype(), "attention_backward", [&](auto tag) {
    using T = decltype(tag);
    if (d.tiles == 0) return;
    if (d.Tq == 0) {  // no query: nothing flows back to the keys and values
      Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>(gk.data<T>(), gk.numel()).setZero();
      Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>(gv.data<T>(), gv.numel()).setZero();
      return;
    }
    const T *qp = q.data<T>(), *kp = k.data<T>(), *vp = v.data<T>(), *op = out.data<T>(), *lp = lse.data<T>(),
            *gop = gout.data<T>();
    T *gqp = gq.data<T>(), *gkp = gk.data<T>(), *gvp = gv.data<T>();
    const int64_t qs = d.Tq * d.D, ks = d.Tk * d.D;
#pragma omp parallel if (worth_parallel(d.flops()))
    {
      Scratch<T> p_buf(kQueryBlock * padded<T>(d.Tk)), dp_buf(kQueryBlock * padded<T>(d.Tk)), dl_buf(d.Tq);
#pragma omp for schedule(static)
      for (int64_t t = 0; t < d.tiles; ++t)
        attention_backward_tile<T>(qp + t * qs, kp + t * ks, vp + t * ks, op + t * qs, lp + t * d.Tq, gop + t * qs,
                                   gqp + t * qs, gkp + t * ks, gvp + t * ks, T(scale), d, p_buf.data(),
                                   dp_buf.data(), dl_buf.data(), {d.D, d.D});
    }
  });
}

void CpuBackend::attention_varlen(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& cu_seqlens,
                                  double scale, const Tensor& out, const Tensor& lse) {
  const VarlenTiles tiles(q, cu_seqlens);
  DG_ASSERT(contiguous_like(q, {&k, &v, &out}) && lse.numel() == tiles.H * tiles.N,
            "attention_varlen q {} k {} v {} out {} lse {}", q.shape(), k.shape(), v.shape(), out.shape(),
            lse.shape());
  if (tiles.max_len == 0 || tiles.H == 0) return;
  visit_floating(q.dtype(), "attention_varlen", [&](auto tag) {
    using T = decltype(tag);
    const T *qp = q.data<T>(), *kp = k.data<T>(), *vp = v.data<T>();
    T *op = out.data<T>(), *lp = lse.data<T>();
    const int64_t D = tiles.D;
    for_each_varlen_tile<T>(tiles, false, [&](int64_t t, const AttnDims& d, TileScratch<T>& sc) {
      const int64_t r = tiles.row(t), x = r * D;
      attention_tile<T>(qp + x, kp + x, vp + x, op + x, lp + r, T(scale), d, sc.p.data(), {D, D});
    });
  });
}

void CpuBackend::attention_varlen_backward(const Tensor& q, const Tensor& k, const Tensor& v,
                                           const Tensor& cu_seqlens, const Tensor& out, const Tensor& lse,
                                           const Tensor& gout, double scale, const Tensor& gq, const Tensor& gk,
                                           const Tensor& gv) {
  const VarlenTiles tiles(q, cu_seqlens);
  DG_ASSERT(contiguous_like(q, {&k, &v, &out, &gout, &gq, &gk, &gv}) && lse.numel() == tiles.H * tiles.N,
            "attention_varlen_backward q {} k {} v {} gout {} lse {}", q.shape(), k.shape(), v.shape(),
            gout.shape(), lse.shape());
  // Every row of (H, N) belongs to one non-empty sequence, whose tile writes
  // its rows of gq, gk and gv: no zero fill needed.
  if (tiles.max_len == 0 || tiles.H == 0) return;
  visit_floating(q.dtype(), "attention_varlen_backward", [&](auto tag) {
    using T = decltype(tag);
    const T *qp = q.data<T>(), *kp = k.data<T>(), *vp = v.data<T>(), *op = out.data<T>(), *lp = lse.data<T>(),
            *gop = gout.data<T>();
    T *gqp = gq.data<T>(), *gkp = gk.data<T>(), *gvp = gv.data<T>();
    const int64_t D = tiles.D;
    for_each_varlen_tile<T>(tiles, true, [&](int64_t t, const AttnDims& d, TileScratch<T>& sc) {
      const int64_t r = tiles.row(t), x = r * D;
      attention_backward_tile<T>(qp + x, kp + x, vp + x, op + x, lp + r, gop + x, gqp + x, gkp + x, gvp + x,
                                 T(scale), d, sc.p.data(), sc.dp.data(), sc.dl.data(), {D, D});
    });
  });
}

// qkv (N, 3C): token n's q, k, v at columns [0, C), [C, 2C), [2C, 3C), head h
// at h*D within each; out (N, C); lse (H, N). Tile (h, s) reads rows
// cu[s].. of qkv with stride 3C and writes out with stride C.
void CpuBackend::attention_qkv(const Tensor& qkv, const Tensor& cu_seqlens, int64_t H, double scale,
                               const Tensor& out, const Tensor& lse) {
  DG_ASSERT(qkv.dim() == 2 && qkv.is_contiguous() && H > 0 && qkv.size(1) % (3 * H) == 0 && out.dim() == 2 &&
                out.is_contiguous() && out.size(0) == qkv.size(0) && 3 * out.size(1) == qkv.size(1) &&
                lse.numel() == H * qkv.size(0),
            "attention_qkv qkv {} out {} lse {} H {}", qkv.shape(), out.shape(), lse.shape(), H);
  const int64_t N = qkv.size(0), C = out.size(1), D = C / H;
  const VarlenTiles tiles(H, N, D, cu_seqlens);
  if (tiles.max_len == 0) return;
  visit_floating(qkv.dtype(), "attention_qkv", [&](auto tag) {
    using T = decltype(tag);
    const T* base = qkv.data<T>();
    T *op = out.data<T>(), *lp = lse.data<T>();
    for_each_varlen_tile<T>(tiles, false, [&](int64_t t, const AttnDims& d, TileScratch<T>& sc) {
      const int64_t h = tiles.head(t), n0 = tiles.first_token(t);
      const T* q = base + n0 * 3 * C + h * D;
      attention_tile<T>(q, q + C, q + 2 * C, op + n0 * C + h * D, lp + h * N + n0, T(scale), d, sc.p.data(),
                        {3 * C, C});
    });
  });
}

void CpuBackend::attention_qkv_backward(const Tensor& qkv, const Tensor& cu_seqlens, int64_t H, const Tensor& out,
                                        const Tensor& lse, const Tensor& gout, double scale, const Tensor& gqkv) {
  DG_ASSERT(qkv.dim() == 2 && qkv.is_contiguous() && gqkv.shape() == qkv.shape() && gqkv.is_contiguous() &&
                out.is_contiguous() && gout.is_contiguous() && gout.shape() == out.shape() &&
                out.size(0) == qkv.size(0) && 3 * out.size(1) == qkv.size(1) && lse.numel() == H * qkv.size(0),
            "attention_qkv_backward qkv {} out {} gout {} lse {}", qkv.shape(), out.shape(), gout.shape(),
            lse.shape());
  const int64_t N = qkv.size(0), C = out.size(1), D = C / H;
  const VarlenTiles tiles(H, N, D, cu_seqlens);
  // Every row belongs to one non-empty sequence, whose (h, s) tiles write all
  // of its columns of gqkv: no zero fill needed.
  if (tiles.max_len == 0) return;
  visit_floating(qkv.dtype(), "attention_qkv_backward", [&](auto tag) {
    using T = decltype(tag);
    const T *base = qkv.data<T>(), *op = out.data<T>(), *lp = lse.data<T>(), *gop = gout.data<T>();
    T* gbase = gqkv.data<T>();
    for_each_varlen_tile<T>(tiles, true, [&](int64_t t, const AttnDims& d, TileScratch<T>& sc) {
      const int64_t h = tiles.head(t), n0 = tiles.first_token(t), xi = n0 * 3 * C + h * D, xo = n0 * C + h * D;
      attention_backward_tile<T>(base + xi, base + xi + C, base + xi + 2 * C, op + xo, lp + h * N + n0, gop + xo,
                                 gbase + xi, gbase + xi + C, gbase + xi + 2 * C, T(scale), d, sc.p.data(),
                                 sc.dp.data(), sc.dl.data(), {3 * C, C});
    });
  });
}

// attention_qkv with the tokens in any row order: packed position j (the
// order cu_seqlens counts in) is row rows[j] of qkv and of out; lse (H, N)
// stays in packed order. Each sequence gathers its q|k|v rows into a
// per-thread scratch, attends there head by head with the tile kernels of
// attention_qkv, and writes its output rows back: the rows are never
// permuted as a whole.
bool CpuBackend::attention_qkv_rows(const Tensor& qkv, const Tensor& cu_seqlens, const Tensor& rows, int64_t H,
                                    double scale, const Tensor& out, const Tensor& lse) {
  DG_ASSERT(qkv.dim() == 2 && qkv.is_contiguous() && H > 0 && qkv.size(1) % (3 * H) == 0 && out.dim() == 2 &&
                out.is_contiguous() && out.size(0) == qkv.size(0) && 3 * out.size(1) == qkv.size(1) &&
                lse.numel() == H * qkv.size(0) && rows.dtype() == DType::i64 && rows.is_contiguous() &&
                rows.numel() == qkv.size(0),
            "attention_qkv_rows qkv {} rows {} out {} lse {} H {}", qkv.shape(), rows.shape(), out.shape(),
            lse.shape(), H);
  const int64_t N = qkv.size(0), C = out.size(1), D = C / H;
  const VarlenTiles tiles(H, N, D, cu_seqlens);
  if (tiles.max_len == 0) return true;
  const int64_t* rp = rows.data<int64_t>();
  visit_floating(qkv.dtype(), "attention_qkv_rows", [&](auto tag) {
    using T = decltype(tag);
    const T* base = qkv.data<T>();
    T *op = out.data<T>(), *lp = lse.data<T>();
    for_each_varlen_sequence<T>(tiles, false, 4 * C, [&](int64_t s, const AttnDims& d, TileScratch<T>& sc) {
      const int64_t n0 = tiles.cu[s], L = d.Tq;
      T *q = sc.rows.data(), *o = q + L * 3 * C;  // the sequence's qkv rows (L, 3C), its output (L, C)
      gather_rows_to(base, 3 * C, rp + n0, L, q);
      for (int64_t h = 0; h < H; ++h)
        attention_tile<T>(q + h * D, q + C + h * D, q + 2 * C + h * D, o + h * D, lp + h * N + n0, T(scale), d,
                          sc.p.data(), {3 * C, C});
      scatter_rows_from(o, L, C, rp + n0, op);
    });
  });
  return true;
}

bool CpuBackend::attention_qkv_rows_backward(const Tensor& qkv, const Tensor& cu_seqlens, const Tensor& rows,
                                             int64_t H, const Tensor& out, const Tensor& lse, const Tensor& gout,
                                             double scale, const Tensor& gqkv) {
  DG_ASSERT(qkv.dim() == 2 && qkv.is_contiguous() && gqkv.shape() == qkv.shape() && gqkv.is_contiguous() &&
                out.is_contiguous() && gout.is_contiguous() && gout.shape() == out.shape() &&
                out.size(0) == qkv.size(0) && 3 * out.size(1) == qkv.size(1) && lse.numel() == H * qkv.size(0) &&
                rows.dtype() == DType::i64 && rows.is_contiguous() && rows.numel() == qkv.size(0),
            "attention_qkv_rows_backward qkv {} rows {} out {} gout {} lse {}", qkv.shape(), rows.shape(),
            out.shape(), gout.shape(), lse.shape());
  const int64_t N = qkv.size(0), C = out.size(1), D = C / H, C3 = 3 * C;
  const VarlenTiles tiles(H, N, D, cu_seqlens);
  // rows is a permutation (the op checks): every row of gqkv is written.
  if (tiles.max_len == 0) return true;
  const int64_t* rp = rows.data<int64_t>();
  visit_floating(qkv.dtype(), "attention_qkv_rows_backward", [&](auto tag) {
    using T = decltype(tag);
    const T *base = qkv.data<T>(), *op = out.data<T>(), *lp = lse.data<T>(), *gop = gout.data<T>();
    T* gbase = gqkv.data<T>();
    for_each_varlen_sequence<T>(tiles, true, 8 * C, [&](int64_t s, const AttnDims& d, TileScratch<T>& sc) {
      const int64_t n0 = tiles.cu[s], L = d.Tq;
      const int64_t* r = rp + n0;
      // The sequence's qkv (L, 3C), out and its gradient (L, C) each, and gqkv (L, 3C).
      T *q = sc.rows.data(), *o = q + L * C3, *go = o + L * C, *gq = go + L * C;
      gather_rows_to(base, C3, r, L, q);
      gather_rows_to(op, C, r, L, o);
      gather_rows_to(gop, C, r, L, go);
      for (int64_t h = 0; h < H; ++h) {
        const int64_t x = h * D;
        attention_backward_tile<T>(q + x, q + C + x, q + 2 * C + x, o + x, lp + h * N + n0, go + x, gq + x,
                                   gq + C + x, gq + 2 * C + x, T(scale), d, sc.p.data(), sc.dp.data(),
                                   sc.dl.data(), {C3, C});
      }
      scatter_rows_from(gq, L, C3, r, gbase);
    });
  });
  return true;
}

}  // namespace dg::cpu
