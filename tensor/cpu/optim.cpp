// Fused optimizer kernels: the AdamW step.
//
// Legend: n = number of elements; p (param), g (grad), m (exp_avg) and
// v (exp_avg_sq) are contiguous arrays of n elements of one dtype (f32/f64).
//
// Why fused: written with elementwise kernels, one AdamW step is about ten
// passes over memory (p*=, m*=, m+=, v*=, g*g, v+=, sqrt, /, +eps, p+=) and
// several temporaries of n elements; here it is one pass. The arrays are
// walked in blocks of kBlock elements (p, g, m, v of one block fit in L1),
// each block going through the four statements of adamw_update on Eigen
// array maps, which vectorise; blocks are spread over OpenMP threads above
// worth_parallel. Every element is independent, so the result does not
// depend on the thread count.
//
// The update (order of operations as torch.optim.AdamW) is adamw_update of
// tensor/optim_math.h, shared with the CUDA backend.
#include <algorithm>

#include "tensor/cpu/cpu_backend.h"
#include "tensor/cpu/eigen.h"
#include "tensor/cpu/loops.h"
#include "tensor/optim_math.h"

namespace dg::cpu {

namespace {

template <class T>
using Block = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
template <class T>
using ConstBlock = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;

// 4 arrays x 2048 x 8 bytes = 64 KiB at most: L1/L2-resident between the statements.
constexpr int64_t kBlock = 2048;

template <class T>
void adamw_blocks(T* p, const T* g, T* m, T* v, int64_t n, const AdamWCoeffs<T>& c) {
  parallel_chunks(n, n, [&](int64_t begin, int64_t end, int) {
    for (int64_t b = begin; b < end; b += kBlock) {
      const int64_t len = std::min(kBlock, end - b);
      Block<T> pb(p + b, len), mb(m + b, len), vb(v + b, len);
      ConstBlock<T> gb(g + b, len);
      adamw_update(pb, gb, mb, vb, c);
    }
  });
}

}  // namespace

void CpuBackend::adamw_step(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq,
                            double lr, double beta1, double beta2, double eps, double weight_decay, int64_t step) {
  assert_adamw_args(param, grad, exp_avg, exp_avg_sq, step);
  const int64_t n = param.numel();
  visit_floating(param.dtype(), "adamw_step", [&](auto tag) {
    using T = decltype(tag);
    adamw_blocks(param.data<T>(), grad.data<T>(), exp_avg.data<T>(), exp_avg_sq.data<T>(), n,
                 adamw_coeffs<T>(lr, beta1, beta2, eps, weight_decay, step));
  });
}

}  // namespace dg::cpu
