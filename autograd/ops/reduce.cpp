// STUB: replaced by the real implementation.
#include "autograd/ops/common.h"

namespace dg {

Tensor sum(const Tensor& x, const Dims& dims, bool keepdim, Site site) { throw Error("sum: not implemented yet"); }
Tensor mean(const Tensor& x, const Dims& dims, bool keepdim, Site site) { throw Error("mean: not implemented yet"); }
ValuesIndices max(const Tensor& x, int64_t dim, bool keepdim, Site site) { throw Error("max: not implemented yet"); }
ValuesIndices min(const Tensor& x, int64_t dim, bool keepdim, Site site) { throw Error("min: not implemented yet"); }
Tensor max(const Tensor& x, Site site) { throw Error("max: not implemented yet"); }
Tensor min(const Tensor& x, Site site) { throw Error("min: not implemented yet"); }
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim, Site site) { throw Error("argmax: not implemented yet"); }
Tensor argmin(const Tensor& x, int64_t dim, bool keepdim, Site site) { throw Error("argmin: not implemented yet"); }
Tensor logsumexp(const Tensor& x, const Dims& dims, bool keepdim, Site site) { throw Error("logsumexp: not implemented yet"); }
Tensor var(const Tensor& x, const Dims& dims, bool keepdim, int64_t correction, Site site) { throw Error("var: not implemented yet"); }

}  // namespace dg
