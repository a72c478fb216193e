// Attention on the GPU: dense (B, H, T, D), packed varlen (H, N, D) and fused
// qkv (N, 3C), forward and backward, as tiled online-softmax kernels that
// never store the T x T scores (flash-attention style, on CUDA cores). The
// per-tile math is tensor/kernels/attention_tile.h, shared with the host
// emulation of these loops in tests/test_tile_math.cpp; results match
// tensor/cpu/attention.cpp (same scale, lse and causal alignment).
//
// Legend: a problem is a set of (Tq, Tk, D) tiles (kern::AttnProblem), W
// warps per block, R = kRowsPerWarp rows per warp, kLanes = 32 keys (or
// queries) per shared-memory tile, DC = ceil(D / 32) head dims per lane.
//
// forward     block = W*R query rows of one tile; loops over key tiles of 32
//             up to the causal limit of its last row (later tiles skipped):
//             lane j scores key j against the warp's R rows, the warp updates
//             each row's (m, l) and each lane its DC output dims of the R
//             rows. Writes out and lse.
// dq          the same loop, recomputing P = exp(S - lse) per tile:
//             dS = P * (dO V^T - Dl), dq = scale * dS K; Dl_i = dO_i . O_i is
//             computed here and kept (lse-shaped scratch) for the next kernel.
// dk, dv      block = W*R key rows; loops over query tiles of 32 from the first
//             query that sees its first key: lane i scores query i,
//             dv += P^T dO, dk += scale * dS^T Q.
// Every output row is written by exactly one warp: no atomics, deterministic.
//
// Tile sizes: 32 keys (queries) per tile, one per lane, so a score needs no
// cross-lane sum and a row's max and sum are one warp shuffle each; R = 4 rows
// per warp, so each key (query) element loaded from shared memory serves four
// rows while the accumulators (R*DC, twice in dk/dv) stay in registers; W = 4
// warps, so a K/V tile loaded from global memory serves 16 rows, with f32
// D <= 128 under the default 48 KB of shared memory (W drops to 2 or 1 where
// f64 D = 256 would pass the device's limit). Tiles read row-per-lane have
// row stride D + 1 (no bank conflicts). CUDA cores only: no tensor cores, so
// f32 is exact f32 like the CPU.
//
// fmt's shape formatting in the DG_ASSERT messages is constexpr, hence also
// compiled for the device under --expt-relaxed-constexpr, where nvcc warns that
// its long double is a double there; no device code formats anything.
#pragma nv_diag_suppress 20208
#include <algorithm>
#include <type_traits>

#include "cuda/row_reduce.cuh"
#include "tensor/dtype.h"
#include "tensor/kernels/attention_tile.h"

namespace dg::cuda {

namespace {

using kern::AttnProblem;
using kern::AttnTile;
using kern::kLanes;

using kern::kRowsPerWarp;

// Dynamic shared memory, aligned for double.
template <class T>
__device__ T* shared_buffer() {
  extern __shared__ double dg_attention_smem[];
  return reinterpret_cast<T*>(dg_attention_smem);
}

// Copies `rows` rows of D values (source row stride ld) to shared memory with
// row stride lds; rows past `n` are zero.
template <class T>
__device__ void load_rows(T* dst, int64_t lds, const T* src, int64_t ld, int rows, int n, int64_t D) {
  for (int64_t idx = threadIdx.x; idx < rows * D; idx += blockDim.x) {
    const int64_t r = idx / D, d = idx % D;
    dst[r * lds + d] = r < n ? src[r * ld + d] : T(0);
  }
}

// This thread's warp and lane, the rows per block, and the block's work: its
// tile (bw.tile < 0: none) and first row.
struct BlockPlace {
  int warp, lane, rows;
  kern::BlockWork bw;
  AttnTile a;
};
__device__ BlockPlace place_block(const AttnProblem& p, const int64_t* prefix, bool over_keys) {
  BlockPlace b;
  b.warp = threadIdx.x / 32;
  b.lane = threadIdx.x % 32;
  b.rows = blockDim.x / 32 * kRowsPerWarp;
  b.bw = kern::locate_block(p, blockIdx.x, b.rows, prefix, over_keys);
  if (b.bw.tile >= 0) b.a = p.tile(b.bw.tile);
  return b;
}

__global__ void block_prefix_kernel(const int64_t* cu, int64_t S, int64_t rows, int64_t* prefix) {
  kern::block_prefix(cu, S, rows, prefix);
}

// ---------------------------------------------------------------- kernels

// Shared memory: K tile (32, D+1), V tile (32, D), Q rows (W*R, D), weights (W*R, 32).
template <class T, int DC>
__global__ void attention_forward_kernel(AttnProblem p, const int64_t* prefix, const T* q, const T* k, const T* v,
                                         T* o, T* lse, T scale) {
  constexpr int R = kRowsPerWarp;
  const auto [warp, lane, rows, bw, a] = place_block(p, prefix, false);
  if (bw.tile < 0) return;  // the whole block
  const int64_t D = p.D, nq = std::min<int64_t>(rows, a.Tq - bw.row0), r0 = warp * R;
  const int nr = kern::rows_of_warp(nq, r0, R);  // warp-uniform; 0: the warp only helps load
  T* Ks = shared_buffer<T>();
  T* Vs = Ks + kLanes * (D + 1);
  T* Qs = Vs + kLanes * D;
  T* Ws = Qs + rows * D;
  load_rows(Qs, D, q + a.q + bw.row0 * a.ld_in, a.ld_in, rows, static_cast<int>(nq), D);

  kern::OnlineRow<T> st[R];
  T acc[R][DC] = {};
  const int64_t kend = a.keys_for(bw.row0 + nq - 1);  // causal: later key tiles are skipped
  for (int64_t j0 = 0; j0 < kend; j0 += kLanes) {
    const int nk = static_cast<int>(std::min<int64_t>(kLanes, kend - j0));
    __syncthreads();  // the previous tile is consumed
    load_rows(Ks, D + 1, k + a.k + j0 * a.ld_in, a.ld_in, nk, nk, D);
    load_rows(Vs, D, v + a.v + j0 * a.ld_in, a.ld_in, nk, nk, D);
    __syncthreads();
    if (nr == 0) continue;
    T s[R], alpha[R];
    kern::dot_rows_scaled<T, R>(s, Qs + r0 * D, D, nr, Ks + lane * (D + 1), D, scale);  // lane j: key j0 + j
#pragma unroll
    for (int r = 0; r < R; ++r) {
      if (r >= nr) break;
      if (lane >= nk || j0 + lane >= a.keys_for(bw.row0 + r0 + r)) s[r] = kern::neg_inf<T>();  // masked
      alpha[r] = kern::online_rescale(st[r], warp_allreduce(s[r], MaxOp{}));
      const T w = kern::online_weight(st[r], s[r]);
      st[r].l += warp_allreduce(w, SumOp{});
      Ws[(r0 + r) * kLanes + lane] = w;
    }
    __syncwarp();
    kern::accumulate_rows<T, R, DC>(acc, alpha, Ws + r0 * kLanes, Vs, D, nk, nr, lane, D);
    __syncwarp();
  }
#pragma unroll
  for (int r = 0; r < R; ++r) {
    if (r >= nr) break;
    const int64_t i = bw.row0 + r0 + r;
    kern::store_lane_dims<T, DC>(o + a.o + i * a.ld_out, acc[r], T(1) / st[r].l, lane, D);
    if (lane == 0) lse[a.lse + i] = kern::online_lse(st[r]);
  }
}

// Shared memory: K tile (32, D+1), V tile (32, D+1), Q and dO rows (W*R, D)
// each, dS (W*R, 32). Writes gq and Dl (lse-shaped).
template <class T, int DC>
__global__ void attention_dq_kernel(AttnProblem p, const int64_t* prefix, const T* q, const T* k, const T* v,
                                    const T* o, const T* go, const T* lse, T* gq, T* dl, T scale) {
  constexpr int R = kRowsPerWarp;
  const auto [warp, lane, rows, bw, a] = place_block(p, prefix, false);
  if (bw.tile < 0) return;  // the whole block
  const int64_t D = p.D, nq = std::min<int64_t>(rows, a.Tq - bw.row0), r0 = warp * R;
  const int nr = kern::rows_of_warp(nq, r0, R);
  T* Ks = shared_buffer<T>();
  T* Vs = Ks + kLanes * (D + 1);
  T* Qs = Vs + kLanes * (D + 1);
  T* dOs = Qs + rows * D;
  T* dSs = dOs + rows * D;
  load_rows(Qs, D, q + a.q + bw.row0 * a.ld_in, a.ld_in, rows, static_cast<int>(nq), D);
  load_rows(dOs, D, go + a.o + bw.row0 * a.ld_out, a.ld_out, rows, static_cast<int>(nq), D);
  __syncthreads();

  // Dl_i = dO_i . O_i (lane partials over its dims, then the warp's sum).
  T row_dl[R], row_lse[R];
  T ones[R];
#pragma unroll
  for (int r = 0; r < R; ++r) ones[r] = T(1);
#pragma unroll
  for (int r = 0; r < R; ++r) {
    row_dl[r] = row_lse[r] = T(0);
    if (r >= nr) break;
    const int64_t row = r0 + r, i = bw.row0 + row;
    const T* orow = o + a.o + i * a.ld_out;
    row_dl[r] = warp_allreduce(
        kern::strided_sum<T>(D, lane, kLanes, [&](int64_t d) { return dOs[row * D + d] * orow[d]; }), SumOp{});
    row_lse[r] = lse[a.lse + i];
    if (lane == 0) dl[a.lse + i] = row_dl[r];
  }

  T acc[R][DC] = {};
  const int64_t kend = a.keys_for(bw.row0 + nq - 1);
  for (int64_t j0 = 0; j0 < kend; j0 += kLanes) {
    const int nk = static_cast<int>(std::min<int64_t>(kLanes, kend - j0));
    __syncthreads();
    load_rows(Ks, D + 1, k + a.k + j0 * a.ld_in, a.ld_in, nk, nk, D);
    load_rows(Vs, D + 1, v + a.v + j0 * a.ld_in, a.ld_in, nk, nk, D);
    __syncthreads();
    if (nr == 0) continue;
    T s[R], dp[R];
    kern::dot_rows_scaled<T, R>(s, Qs + r0 * D, D, nr, Ks + lane * (D + 1), D, scale);
    kern::dot_rows_scaled<T, R>(dp, dOs + r0 * D, D, nr, Vs + lane * (D + 1), D, T(1));
#pragma unroll
    for (int r = 0; r < R; ++r) {
      if (r >= nr) break;
      const bool visible = lane < nk && j0 + lane < a.keys_for(bw.row0 + r0 + r);
      dSs[(r0 + r) * kLanes + lane] =
          visible ? kern::score_grad(kern::prob_from_lse(s[r], row_lse[r], true), dp[r], row_dl[r]) : T(0);
    }
    __syncwarp();
    kern::accumulate_rows<T, R, DC>(acc, ones, dSs + r0 * kLanes, Ks, D + 1, nk, nr, lane, D);
    __syncwarp();
  }
#pragma unroll
  for (int r = 0; r < R; ++r) {
    if (r >= nr) break;
    kern::store_lane_dims<T, DC>(gq + a.q + (bw.row0 + r0 + r) * a.ld_in, acc[r], scale, lane, D);
  }
}

// Shared memory: Q tile (32, D+1), dO tile (32, D+1), K and V rows (W*R, D)
// each, P and dS (W*R, 32) each, lse and Dl (32) each. Writes gk and gv.
template <class T, int DC>
__global__ void attention_dkv_kernel(AttnProblem p, const int64_t* prefix, const T* q, const T* k, const T* v,
                                     const T* go, const T* lse, const T* dl, T* gk, T* gv, T scale) {
  constexpr int R = kRowsPerWarp;
  const auto [warp, lane, rows, bw, a] = place_block(p, prefix, true);
  if (bw.tile < 0) return;  // the whole block
  const int64_t D = p.D, nk = std::min<int64_t>(rows, a.Tk - bw.row0), r0 = warp * R;
  const int nr = kern::rows_of_warp(nk, r0, R);
  T* Qs = shared_buffer<T>();
  T* dOs = Qs + kLanes * (D + 1);
  T* Ks = dOs + kLanes * (D + 1);
  T* Vs = Ks + rows * D;
  T* Ps = Vs + rows * D;
  T* dSs = Ps + rows * kLanes;
  T* lse_s = dSs + rows * kLanes;
  T* dl_s = lse_s + kLanes;
  load_rows(Ks, D, k + a.k + bw.row0 * a.ld_in, a.ld_in, rows, static_cast<int>(nk), D);
  load_rows(Vs, D, v + a.v + bw.row0 * a.ld_in, a.ld_in, rows, static_cast<int>(nk), D);

  T ones[R], dk[R][DC] = {}, dv[R][DC] = {};
#pragma unroll
  for (int r = 0; r < R; ++r) ones[r] = T(1);
  // Queries before first_query_for(first key) see none of this block's keys.
  for (int64_t i0 = a.first_query_for(bw.row0); i0 < a.Tq; i0 += kLanes) {
    const int nq = static_cast<int>(std::min<int64_t>(kLanes, a.Tq - i0));
    __syncthreads();
    load_rows(Qs, D + 1, q + a.q + i0 * a.ld_in, a.ld_in, nq, nq, D);
    load_rows(dOs, D + 1, go + a.o + i0 * a.ld_out, a.ld_out, nq, nq, D);
    if (threadIdx.x < kLanes) {
      lse_s[threadIdx.x] = threadIdx.x < nq ? lse[a.lse + i0 + threadIdx.x] : T(0);
      dl_s[threadIdx.x] = threadIdx.x < nq ? dl[a.lse + i0 + threadIdx.x] : T(0);
    }
    __syncthreads();
    if (nr == 0) continue;
    T s[R], dp[R];  // lane i: query i0 + i against each of the warp's keys
    kern::dot_rows_scaled<T, R>(s, Ks + r0 * D, D, nr, Qs + lane * (D + 1), D, scale);
    kern::dot_rows_scaled<T, R>(dp, Vs + r0 * D, D, nr, dOs + lane * (D + 1), D, T(1));
#pragma unroll
    for (int r = 0; r < R; ++r) {
      if (r >= nr) break;
      const bool visible = lane < nq && bw.row0 + r0 + r < a.keys_for(i0 + lane);
      const T pr = kern::prob_from_lse(s[r], lse_s[lane], visible);
      Ps[(r0 + r) * kLanes + lane] = pr;
      dSs[(r0 + r) * kLanes + lane] = visible ? kern::score_grad(pr, dp[r], dl_s[lane]) : T(0);
    }
    __syncwarp();
    kern::accumulate_rows<T, R, DC>(dv, ones, Ps + r0 * kLanes, dOs, D + 1, nq, nr, lane, D);
    kern::accumulate_rows<T, R, DC>(dk, ones, dSs + r0 * kLanes, Qs, D + 1, nq, nr, lane, D);
    __syncwarp();
  }
#pragma unroll
  for (int r = 0; r < R; ++r) {
    if (r >= nr) break;
    const int64_t j = bw.row0 + r0 + r;
    kern::store_lane_dims<T, DC>(gk + a.k + j * a.ld_in, dk[r], scale, lane, D);
    kern::store_lane_dims<T, DC>(gv + a.v + j * a.ld_in, dv[r], T(1), lane, D);
  }
}

// ---------------------------------------------------------------- launchers

// Shared-memory bytes of each kernel for W warps.
int64_t forward_smem(int64_t D, int W, size_t elem) {
  const int64_t rows = W * kRowsPerWarp;
  return (kLanes * (D + 1) + kLanes * D + rows * D + rows * kLanes) * static_cast<int64_t>(elem);
}
int64_t dq_smem(int64_t D, int W, size_t elem) {
  const int64_t rows = W * kRowsPerWarp;
  return (2 * kLanes * (D + 1) + 2 * rows * D + rows * kLanes) * static_cast<int64_t>(elem);
}
int64_t dkv_smem(int64_t D, int W, size_t elem) {
  const int64_t rows = W * kRowsPerWarp;
  return (2 * kLanes * (D + 1) + 2 * rows * D + 2 * rows * kLanes + 2 * kLanes) * static_cast<int64_t>(elem);
}

// The most warps (4, 2 or 1) whose shared memory fits the device.
using SmemBytes = int64_t (*)(int64_t D, int W, size_t elem);
int warps_that_fit(const CudaBackend& be, int64_t D, size_t elem, SmemBytes bytes) {
  int limit = 0;
  DG_CUDA_CHECK(cudaDeviceGetAttribute(&limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, be.index()),
                "attention: shared memory limit");
  for (int W : {4, 2, 1})
    if (bytes(D, W, elem) <= limit) return W;
  throw Error(fmt::format("cuda attention: head dim {} needs {} bytes of shared memory, the device has {}", D,
                          bytes(D, 1, elem), limit));
}

// Launches kernel<<<blocks, 32*W, smem>>> after raising its shared-memory cap.
template <class Kernel, class... Args>
void launch_attention(Kernel kernel, int64_t blocks, int W, int64_t smem, cudaStream_t st, const char* what,
                      Args... args) {
  DG_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)),
                what);
  kernel<<<static_cast<unsigned>(std::max<int64_t>(blocks, 1)), 32 * W, static_cast<size_t>(smem), st>>>(args...);
  DG_CUDA_LAUNCHED(what);
}

// Block schedule of a launch over query (or key) rows, `rows` per block: for
// packed problems the per-sequence prefix (kern::block_prefix), computed on
// the device; `blocks` is an upper bound (blocks past the work return).
struct Schedule {
  Scratch<int64_t> prefix;
  int64_t blocks;
  Schedule(CudaBackend& be, cudaStream_t st, const AttnProblem& p, int64_t rows, bool over_keys)
      : prefix(be, p.kind == AttnProblem::Kind::dense ? 1 : p.S + 1) {
    blocks = kern::blocks_bound(p, rows, over_keys);
    if (p.kind == AttnProblem::Kind::dense) return;
    block_prefix_kernel<<<1, 1, 0, st>>>(p.cu, p.S, rows, prefix.ptr);
    DG_CUDA_LAUNCHED("attention: block prefix");
  }
};

// kern::visit_head_chunks, or a dg::Error for a head dim the kernels do not handle.
template <class F>
void with_head_chunks(int64_t D, const F& f) {
  if (kern::head_chunks(D) == 0)
    throw Error(fmt::format("cuda attention: head dim D = {} is not supported (1 to {})", D, kern::kMaxHeadDim));
  kern::visit_head_chunks(D, f);
}

template <class T>
void run_attention_forward(CudaBackend& be, cudaStream_t st, const AttnProblem& p, const T* q, const T* k,
                           const T* v, T* o, T* lse, T scale) {
  with_head_chunks(p.D, [&](auto dc) {
    const int W = warps_that_fit(be, p.D, sizeof(T), forward_smem);
    const Schedule sched(be, st, p, W * kRowsPerWarp, false);
    launch_attention(attention_forward_kernel<T, decltype(dc)::value>, sched.blocks, W,
                     forward_smem(p.D, W, sizeof(T)), st, "attention forward", p,
                     static_cast<const int64_t*>(sched.prefix.ptr), q, k, v, o, lse, scale);
  });
}

template <class T>
void run_attention_backward(CudaBackend& be, cudaStream_t st, const AttnProblem& p, const T* q, const T* k,
                            const T* v, const T* o, const T* go, const T* lse, T* gq, T* gk, T* gv, int64_t lse_count,
                            T scale) {
  with_head_chunks(p.D, [&](auto dc) {
    Scratch<T> dl(be, lse_count);
    const int Wq = warps_that_fit(be, p.D, sizeof(T), dq_smem);
    const Schedule sq(be, st, p, Wq * kRowsPerWarp, false);
    launch_attention(attention_dq_kernel<T, decltype(dc)::value>, sq.blocks, Wq, dq_smem(p.D, Wq, sizeof(T)), st,
                     "attention backward (dq)", p, static_cast<const int64_t*>(sq.prefix.ptr), q, k, v, o, go, lse,
                     gq, dl.ptr, scale);
    const int Wk = warps_that_fit(be, p.D, sizeof(T), dkv_smem);
    const Schedule sk(be, st, p, Wk * kRowsPerWarp, true);
    launch_attention(attention_dkv_kernel<T, decltype(dc)::value>, sk.blocks, Wk, dkv_smem(p.D, Wk, sizeof(T)), st,
                     "attention backward (dk, dv)", p, static_cast<const int64_t*>(sk.prefix.ptr), q, k, v, go,
                     static_cast<const T*>(lse), static_cast<const T*>(dl.ptr), gk, gv, scale);
  });
}

AttnProblem dense_problem(const Tensor& q, const Tensor& k, bool causal) {
  DG_ASSERT(q.dim() == 4 && k.dim() == 4 && q.is_contiguous() && k.is_contiguous(), "attention q {} k {}", q.shape(),
            k.shape());
  return AttnProblem::dense(q.size(0) * q.size(1), q.size(2), k.size(2), q.size(3), causal);
}

AttnProblem packed_problem(AttnProblem::Kind kind, int64_t H, int64_t N, int64_t D, const Tensor& cu_seqlens) {
  DG_ASSERT(cu_seqlens.dim() == 1 && cu_seqlens.is_contiguous() && cu_seqlens.numel() >= 1 &&
                cu_seqlens.dtype() == DType::i64,
            "attention_varlen: cu_seqlens {}", cu_seqlens.shape());
  return AttnProblem::packed(kind, H, N, D, cu_seqlens.numel() - 1, dptr<int64_t>(cu_seqlens));
}

// Every tensor in `others` has a's shape and is contiguous.
bool contiguous_like(const Tensor& a, std::initializer_list<const Tensor*> others) {
  for (const Tensor* t : others)
    if (t->shape() != a.shape() || !t->is_contiguous()) return false;
  return true;
}

}  // namespace

void CudaBackend::attention(const Tensor& q, const Tensor& k, const Tensor& v, double scale, bool causal,
                            const Tensor& out, const Tensor& lse) {
  const AttnProblem p = dense_problem(q, k, causal);
  DG_ASSERT(v.shape() == k.shape() && v.is_contiguous() && out.shape() == q.shape() && out.is_contiguous() &&
                lse.numel() == p.tiles * p.Tq,
            "attention q {} k {} v {} out {} lse {}", q.shape(), k.shape(), v.shape(), out.shape(), lse.shape());
  if (p.tiles == 0 || p.Tq == 0) return;
  visit_floating(q.dtype(), "attention", [&](auto tag) {
    using T = decltype(tag);
    run_attention_forward<T>(*this, stream_of(q), p, dptr<T>(q), dptr<T>(k), dptr<T>(v), dptr<T>(out), dptr<T>(lse),
                             T(scale));
  });
}

void CudaBackend::attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                                     const Tensor& lse, const Tensor& gout, double scale, bool causal,
                                     const Tensor& gq, const Tensor& gk, const Tensor& gv) {
  const AttnProblem p = dense_problem(q, k, causal);
  DG_ASSERT(contiguous_like(q, {&out, &gout, &gq}) && contiguous_like(k, {&v, &gk, &gv}),
            "attention_backward q {} k {} v {} gout {}", q.shape(), k.shape(), v.shape(), gout.shape());
  if (p.tiles == 0 || p.Tk == 0) return;  // with Tq == 0 the dk, dv kernel writes zeros
  visit_floating(q.dtype(), "attention_backward", [&](auto tag) {
    using T = decltype(tag);
    run_attention_backward<T>(*this, stream_of(q), p, dptr<T>(q), dptr<T>(k), dptr<T>(v), dptr<T>(out), dptr<T>(gout),
                              dptr<T>(lse), dptr<T>(gq), dptr<T>(gk), dptr<T>(gv), lse.numel(), T(scale));
  });
}

void CudaBackend::attention_varlen(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& cu_seqlens,
                                   double scale, const Tensor& out, const Tensor& lse) {
  DG_ASSERT(q.dim() == 3 && contiguous_like(q, {&q, &k, &v, &out}) && lse.numel() == q.size(0) * q.size(1),
            "attention_varlen q {} k {} v {} out {} lse {}", q.shape(), k.shape(), v.shape(), out.shape(),
            lse.shape());
  const AttnProblem p = packed_problem(AttnProblem::Kind::packed, q.size(0), q.size(1), q.size(2), cu_seqlens);
  if (p.tiles == 0 || p.N == 0) return;
  visit_floating(q.dtype(), "attention_varlen", [&](auto tag) {
    using T = decltype(tag);
    run_attention_forward<T>(*this, stream_of(q), p, dptr<T>(q), dptr<T>(k), dptr<T>(v), dptr<T>(out), dptr<T>(lse),
                             T(scale));
  });
}

void CudaBackend::attention_varlen_backward(const Tensor& q, const Tensor& k, const Tensor& v,
                                            const Tensor& cu_seqlens, const Tensor& out, const Tensor& lse,
                                            const Tensor& gout, double scale, const Tensor& gq, const Tensor& gk,
                                            const Tensor& gv) {
  DG_ASSERT(q.dim() == 3 && contiguous_like(q, {&q, &k, &v, &out, &gout, &gq, &gk, &gv}) &&
                lse.numel() == q.size(0) * q.size(1),
            "attention_varlen_backward q {} k {} v {} gout {} lse {}", q.shape(), k.shape(), v.shape(), gout.shape(),
            lse.shape());
  const AttnProblem p = packed_problem(AttnProblem::Kind::packed, q.size(0), q.size(1), q.size(2), cu_seqlens);
  // Every row of (H, N) belongs to one non-empty sequence, whose blocks write it.
  if (p.tiles == 0 || p.N == 0) return;
  visit_floating(q.dtype(), "attention_varlen_backward", [&](auto tag) {
    using T = decltype(tag);
    run_attention_backward<T>(*this, stream_of(q), p, dptr<T>(q), dptr<T>(k), dptr<T>(v), dptr<T>(out), dptr<T>(gout),
                              dptr<T>(lse), dptr<T>(gq), dptr<T>(gk), dptr<T>(gv), lse.numel(), T(scale));
  });
}

// qkv (N, 3C): q, k, v of token n at columns h*D, C + h*D, 2C + h*D; out (N, C).
void CudaBackend::attention_qkv(const Tensor& qkv, const Tensor& cu_seqlens, int64_t H, double scale,
                                const Tensor& out, const Tensor& lse) {
  DG_ASSERT(qkv.dim() == 2 && qkv.is_contiguous() && H > 0 && qkv.size(1) % (3 * H) == 0 && out.dim() == 2 &&
                out.is_contiguous() && out.size(0) == qkv.size(0) && 3 * out.size(1) == qkv.size(1) &&
                lse.numel() == H * qkv.size(0),
            "attention_qkv qkv {} out {} lse {} H {}", qkv.shape(), out.shape(), lse.shape(), H);
  const int64_t N = qkv.size(0), D = out.size(1) / H;
  const AttnProblem p = packed_problem(AttnProblem::Kind::qkv, H, N, D, cu_seqlens);
  if (p.tiles == 0 || N == 0) return;
  visit_floating(qkv.dtype(), "attention_qkv", [&](auto tag) {
    using T = decltype(tag);
    const T* base = dptr<T>(qkv);
    run_attention_forward<T>(*this, stream_of(qkv), p, base, base, base, dptr<T>(out), dptr<T>(lse), T(scale));
                             });
}

void CudaBackend::attention_qkv_backward(const Tensor& qkv, const Tensor& cu_seqlens, int64_t H, const Tensor& out,
                                         const Tensor& lse, const Tensor& gout, double scale, const Tensor& gqkv) {
  DG_ASSERT(qkv.dim() == 2 && qkv.is_contiguous() && H > 0 && gqkv.shape() == qkv.shape() && gqkv.is_contiguous() &&
                out.is_contiguous() && gout.is_contiguous() && gout.shape() == out.shape() &&
                out.size(0) == qkv.size(0) && 3 * out.size(1) == qkv.size(1) && lse.numel() == H * qkv.size(0),
            "attention_qkv_backward qkv {} out {} gout {} lse {}", qkv.shape(), out.shape(), gout.shape(),
            lse.shape());
  const int64_t N = qkv.size(0), D = out.size(1) / H;
  const AttnProblem p = packed_problem(AttnProblem::Kind::qkv, H, N, D, cu_seqlens);
  // Every token belongs to one non-empty sequence, whose (h, s) tiles write all its columns.
  if (p.tiles == 0 || N == 0) return;
  visit_floating(qkv.dtype(), "attention_qkv_backward", [&](auto tag) {
    using T = decltype(tag);
    const T* base = dptr<T>(qkv);
    T* gbase = dptr<T>(gqkv);
    run_attention_backward<T>(*this, stream_of(qkv), p, base, base, base, dptr<T>(out), dptr<T>(gout), dptr<T>(lse),
                              gbase, gbase, gbase, lse.numel(), T(scale));
  });
}

}  // namespace dg::cuda
