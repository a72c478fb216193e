// STUB: replaced by the real implementation.
#include "autograd/ops/common.h"

namespace dg {

Tensor softmax(const Tensor& x, int64_t dim, Site site) { throw Error("softmax: not implemented yet"); }
Tensor log_softmax(const Tensor& x, int64_t dim, Site site) { throw Error("log_softmax: not implemented yet"); }
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps, Site site) { throw Error("layer_norm: not implemented yet"); }
Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps, Site site) { throw Error("rms_norm: not implemented yet"); }

Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v, bool causal, double scale, Site site) { throw Error("sdpa: not implemented yet"); }

}  // namespace dg
