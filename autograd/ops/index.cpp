// STUB: replaced by the real implementation.
#include "autograd/ops/common.h"

namespace dg {

Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index, Site site) { throw Error("index_select: not implemented yet"); }
Tensor index_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src, double alpha, Site site) { throw Error("index_add: not implemented yet"); }
Tensor gather(const Tensor& x, int64_t dim, const Tensor& index, Site site) { throw Error("gather: not implemented yet"); }
Tensor scatter_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src, Site site) { throw Error("scatter_add: not implemented yet"); }
Tensor embedding(const Tensor& weight, const Tensor& index, Site site) { throw Error("embedding: not implemented yet"); }
Tensor masked_fill(const Tensor& x, const Tensor& mask, double value, Site site) { throw Error("masked_fill: not implemented yet"); }
ValuesIndices topk(const Tensor& x, int64_t k, int64_t dim, bool largest, bool sorted, Site site) { throw Error("topk: not implemented yet"); }

}  // namespace dg
