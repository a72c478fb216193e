#pragma once
// Per-tile math of the tiled (flash-attention style) CUDA attention kernels
// (cuda/attention.cu), written once for the kernels and for the host
// emulation of their loops (tests/test_tile_math.cpp). Semantics are those of
// tensor/cpu/attention.cpp: S = scale * Q K^T, causal mask aligned to the end
// (query i sees keys j < i + 1 + Tk - Tq), lse_i = log sum_j exp(S_ij),
// O = softmax(S) V, and the backward
//   Dl_i = sum_d dO_id O_id,  P = exp(S - lse),  dP = dO V^T,
//   dS = P * (dP - Dl),  dQ = scale * dS K,  dK = scale * dS^T Q,  dV = P^T dO.
//
// Legend: a problem is `tiles` independent (Tq, Tk, D) attention tiles
// (dense: B*H; packed varlen and fused qkv: H*S, one per (head, sequence)).
// A warp of kLanes lanes works on a few rows; in the score phase lane j owns
// key (or query) j of the current 32-row tile, in the accumulate phase lane l
// owns the head dims d = l, l + 32, ... (DC of them, D <= 32 * DC).
//
// Forward, per query row, over key tiles (the online softmax):
//   s_j = scale * q . k_j (-inf where masked);  m' = max(m, max_j s_j)
//   alpha = exp(m - m');  l = alpha * l + sum_j exp(s_j - m');
//   acc = alpha * acc + sum_j exp(s_j - m') v_j;   at the end O = acc * (1/l),
//   lse = m + log(l). The T x T matrix is never stored.
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "tensor/functors.h"
#include "tensor/kernels/row_norm.h"

// Fully unrolled on the device, so that a lane's accumulators stay in
// registers (device pass only: the host compiler knows no such pragma).
#ifdef __CUDA_ARCH__
#define DG_UNROLL _Pragma("unroll")
#else
#define DG_UNROLL
#endif

namespace dg::kern {

inline constexpr int kLanes = 32;     // keys (forward, dq) or queries (dk, dv) per tile: one per lane
inline constexpr int kMaxHeadDim = 256;
inline constexpr int kRowsPerWarp = 4;  // query (or key) rows a warp carries through the tile loop

// ---------------------------------------------------------------- layouts
// One attention tile: element offsets of its first q, k, v rows (inputs and
// their gradients), of its first out / gout row, of its first lse entry; row
// strides; sizes.
struct AttnTile {
  int64_t q = 0, k = 0, v = 0, o = 0, lse = 0;
  int64_t ld_in = 0, ld_out = 0;  // row strides of q/k/v (and grads), of out/gout
  int64_t Tq = 0, Tk = 0;
  bool causal = false;
  // Keys visible to query i: [0, keys_for(i)).
  DG_HOST_DEVICE int64_t keys_for(int64_t i) const {
    if (!causal) return Tk;
    const int64_t e = i + 1 + (Tk - Tq);
    return e < Tk ? e : Tk;
  }
  // First query that sees key j (Tq when none does).
  DG_HOST_DEVICE int64_t first_query_for(int64_t j) const {
    if (!causal) return 0;
    const int64_t i = j - (Tk - Tq);
    return i < 0 ? 0 : (i > Tq ? Tq : i);
  }
};

// The three layouts of tensor/backend.h:
//   dense  q (B, H, Tq, D), k, v (B, H, Tk, D), lse (B, H, Tq); tile t = b*H + h
//   packed q, k, v (H, N, D), lse (H, N), cu (S + 1); tile t = h*S + s
//   qkv    qkv (N, 3C), out (N, C), lse (H, N), C = H*D; tile t = h*S + s
// (fused qkv: q, k, v of a token at columns h*D, C + h*D, 2C + h*D).
struct AttnProblem {
  enum class Kind : uint8_t { dense, packed, qkv };
  Kind kind = Kind::dense;
  int64_t tiles = 0, Tq = 0, Tk = 0, D = 0;  // Tq, Tk: dense only
  bool causal = true;
  int64_t H = 0, S = 0, N = 0;  // packed and qkv
  const int64_t* cu = nullptr;  // (S + 1), device memory in the kernels

  static AttnProblem dense(int64_t tiles, int64_t Tq, int64_t Tk, int64_t D, bool causal) {
    AttnProblem p;
    p.kind = Kind::dense;
    p.tiles = tiles;
    p.Tq = Tq;
    p.Tk = Tk;
    p.D = D;
    p.causal = causal;
    return p;
  }
  // kind packed or qkv; cu (S + 1)
  static AttnProblem packed(Kind kind, int64_t H, int64_t N, int64_t D, int64_t S, const int64_t* cu) {
    AttnProblem p;
    p.kind = kind;
    p.H = H;
    p.N = N;
    p.D = D;
    p.S = S;
    p.tiles = H * S;
    p.cu = cu;
    return p;
  }

  DG_HOST_DEVICE AttnTile tile(int64_t t) const {
    AttnTile a;
    if (kind == Kind::dense) {
      a.q = a.o = t * Tq * D;
      a.k = a.v = t * Tk * D;
      a.lse = t * Tq;
      a.ld_in = a.ld_out = D;
      a.Tq = Tq;
      a.Tk = Tk;
      a.causal = causal;
      return a;
    }
    const int64_t h = t / S, s = t % S, n0 = cu[s], len = cu[s + 1] - cu[s];
    a.Tq = a.Tk = len;
    a.causal = true;
    a.lse = h * N + n0;
    if (kind == Kind::packed) {
      a.q = a.k = a.v = a.o = (h * N + n0) * D;
      a.ld_in = a.ld_out = D;
    } else {
      const int64_t C = H * D;
      a.q = n0 * 3 * C + h * D;
      a.k = a.q + C;
      a.v = a.q + 2 * C;
      a.o = n0 * C + h * D;
      a.ld_in = 3 * C;
      a.ld_out = C;
    }
    return a;
  }
};

// ---------------------------------------------------------------- scheduling
// Thread blocks cover `rows` consecutive query (or key) rows of one tile.
// Dense tiles all have ceil(T / rows) blocks; packed tiles differ, so
// prefix[s] = sum over s' < s of ceil(len_s' / rows) (S + 1 entries) maps a
// block number to its (tile, first row) without reading cu_seqlens on the host.
DG_HOST_DEVICE inline void block_prefix(const int64_t* cu, int64_t S, int64_t rows, int64_t* prefix) {
  prefix[0] = 0;
  for (int64_t s = 0; s < S; ++s) prefix[s + 1] = prefix[s] + (cu[s + 1] - cu[s] + rows - 1) / rows;
}

// Blocks to launch for `rows` rows per block: exact for dense problems, an
// upper bound for packed ones (sum_s ceil(len_s / rows) <= ceil(N / rows) + S).
inline int64_t blocks_bound(const AttnProblem& p, int64_t rows, bool over_keys) {
  if (p.kind == AttnProblem::Kind::dense) return p.tiles * (((over_keys ? p.Tk : p.Tq) + rows - 1) / rows);
  return p.H * ((p.N + rows - 1) / rows + p.S);
}

struct BlockWork {
  int64_t tile = -1, row0 = 0;  // tile -1: nothing to do
};
// Block w of a launch over query rows (or, with over_keys, key rows).
DG_HOST_DEVICE inline BlockWork locate_block(const AttnProblem& p, int64_t w, int64_t rows, const int64_t* prefix,
                                             bool over_keys) {
  BlockWork b;
  if (p.kind == AttnProblem::Kind::dense) {
    const int64_t T = over_keys ? p.Tk : p.Tq, per_tile = (T + rows - 1) / rows;
    if (per_tile == 0 || w >= p.tiles * per_tile) return b;
    b.tile = w / per_tile;
    b.row0 = w % per_tile * rows;
    return b;
  }
  const int64_t per_head = prefix[p.S];
  if (per_head == 0 || w >= p.H * per_head) return b;
  const int64_t h = w / per_head, r = w % per_head;
  int64_t lo = 0, hi = p.S;  // last s with prefix[s] <= r (a non-empty sequence)
  while (hi - lo > 1) {
    const int64_t mid = (lo + hi) / 2;
    if (prefix[mid] <= r) lo = mid; else hi = mid;
  }
  b.tile = h * p.S + lo;
  b.row0 = (r - prefix[lo]) * rows;
  return b;
}

// Head dims per lane (DC) for head dim D: 1, 2, 4 or 8 (D <= 32 * DC); 0 past kMaxHeadDim.
constexpr int head_chunks(int64_t D) {
  return D < 1 || D > kMaxHeadDim ? 0 : D <= 32 ? 1 : D <= 64 ? 2 : D <= 128 ? 4 : 8;
}
// f(std::integral_constant<int, DC>) for the DC of D (which must be supported).
template <class F>
void visit_head_chunks(int64_t D, const F& f) {
  switch (head_chunks(D)) {
    case 1: return f(std::integral_constant<int, 1>{});
    case 2: return f(std::integral_constant<int, 2>{});
    case 4: return f(std::integral_constant<int, 4>{});
    default: return f(std::integral_constant<int, 8>{});
  }
}

// ---------------------------------------------------------------- scores
// s[r] = scale * rows_r . x over D for the nr (<= R) rows of a warp (row
// stride ld): the score (or dO . v) of one lane's key (or query) x against
// each row; x[d] is read once for all rows, each row sums over d in order.
template <class T, int R>
DG_HOST_DEVICE void dot_rows_scaled(T* s, const T* rows, int64_t ld, int nr, const T* x, int64_t D, T scale) {
  T acc[R];
  DG_UNROLL
  for (int r = 0; r < R; ++r) acc[r] = T(0);
  for (int64_t d = 0; d < D; ++d) {
    const T xd = x[d];
    DG_UNROLL
    for (int r = 0; r < R; ++r)
      if (r < nr) acc[r] += rows[r * ld + d] * xd;
  }
  DG_UNROLL
  for (int r = 0; r < R; ++r) s[r] = acc[r] * scale;
}
// The rows (of R) that the warp starting at block row r0 carries when the
// block has n valid rows.
DG_HOST_DEVICE inline int rows_of_warp(int64_t n, int64_t r0, int R) {
  const int64_t left = n - r0;
  return left <= 0 ? 0 : (left < R ? static_cast<int>(left) : R);
}

// ---------------------------------------------------------------- online softmax
template <class T>
struct OnlineRow {
  T m = neg_inf<T>();  // running max of the scores seen
  T l = T(0);          // running sum of exp(s - m)
};
// A tile with maximum score tile_max arrives: moves m to the new max, rescales
// l, and returns alpha = exp(m_old - m_new), the factor for the accumulator
// (0 while no score was finite).
template <class T>
DG_HOST_DEVICE T online_rescale(OnlineRow<T>& r, T tile_max) {
  const T m_new = max_of(r.m, tile_max);
  const T alpha = r.m == neg_inf<T>() ? T(0) : std::exp(r.m - m_new);
  r.m = m_new;
  r.l *= alpha;
  return alpha;
}
// The weight exp(s - m) of a score under the current max (0 for a masked one).
template <class T>
DG_HOST_DEVICE T online_weight(const OnlineRow<T>& r, T s) {
  return s == neg_inf<T>() ? T(0) : std::exp(s - r.m);
}
template <class T>
DG_HOST_DEVICE T online_lse(const OnlineRow<T>& r) {
  return r.m + std::log(r.l);
}

// For the nr (<= R) rows a warp carries, this lane's share of the products
// with the nk rows of a tile (the P V of the forward, dS K of dq, P^T dO and
// dS^T Q of dk, dv): for each of its dims d = lane + kLanes*c < D,
//   acc[r][c] = alpha[r] * acc[r][c] + sum_j w[r*kLanes + j] * vals[j*ld + d]
// (j in order). vals[j*ld + d] is read once for all the rows.
template <class T, int R, int DC>
DG_HOST_DEVICE void accumulate_rows(T (&acc)[R][DC], const T* alpha, const T* w, const T* vals, int64_t ld, int nk,
                                    int nr, int lane, int64_t D) {
  DG_UNROLL
  for (int c = 0; c < DC; ++c) {
    const int64_t d = lane + int64_t{kLanes} * c;
    if (d >= D) break;
    T a[R];
    DG_UNROLL
    for (int r = 0; r < R; ++r) a[r] = r < nr ? acc[r][c] * alpha[r] : T(0);
    for (int j = 0; j < nk; ++j) {
      const T v = vals[j * ld + d];
      DG_UNROLL
      for (int r = 0; r < R; ++r)
        if (r < nr) a[r] += w[r * kLanes + j] * v;
    }
    DG_UNROLL
    for (int r = 0; r < R; ++r)
      if (r < nr) acc[r][c] = a[r];
  }
}

// dst[d] = factor * acc[c] for this lane's dims d = lane + kLanes*c < D (dst:
// an output row).
template <class T, int DC>
DG_HOST_DEVICE void store_lane_dims(T* dst, const T* acc, T factor, int lane, int64_t D) {
  DG_UNROLL
  for (int c = 0; c < DC; ++c) {
    const int64_t d = lane + int64_t{kLanes} * c;
    if (d >= D) break;
    dst[d] = factor * acc[c];
  }
}

// ---------------------------------------------------------------- backward
// P_ij recomputed from the saved lse (0 where masked).
template <class T>
DG_HOST_DEVICE T prob_from_lse(T s, T lse, bool visible) {
  return visible ? std::exp(s - lse) : T(0);
}
// dS_ij = P_ij * (dP_ij - Dl_i)
template <class T>
DG_HOST_DEVICE T score_grad(T p, T dp, T dl) {
  return p * (dp - dl);
}

}  // namespace dg::kern
