// STUB: replaced by the real implementation.
#include "autograd/ops/common.h"

namespace dg {

Tensor reshape(const Tensor& x, const Shape& shape, Site site) { throw Error("reshape: not implemented yet"); }
Tensor view(const Tensor& x, const Shape& shape, Site site) { throw Error("view: not implemented yet"); }
Tensor flatten(const Tensor& x, int64_t start_dim, int64_t end_dim, Site site) { throw Error("flatten: not implemented yet"); }
Tensor permute(const Tensor& x, const Dims& dims, Site site) { throw Error("permute: not implemented yet"); }
Tensor transpose(const Tensor& x, int64_t d0, int64_t d1, Site site) { throw Error("transpose: not implemented yet"); }
Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end, int64_t step, Site site) { throw Error("slice: not implemented yet"); }
Tensor narrow(const Tensor& x, int64_t dim, int64_t start, int64_t length, Site site) { throw Error("narrow: not implemented yet"); }
Tensor select(const Tensor& x, int64_t dim, int64_t index, Site site) { throw Error("select: not implemented yet"); }
Tensor expand(const Tensor& x, const Shape& shape, Site site) { throw Error("expand: not implemented yet"); }
Tensor squeeze(const Tensor& x, int64_t dim, Site site) { throw Error("squeeze: not implemented yet"); }
Tensor unsqueeze(const Tensor& x, int64_t dim, Site site) { throw Error("unsqueeze: not implemented yet"); }
Tensor contiguous(const Tensor& x, Site site) { throw Error("contiguous: not implemented yet"); }
Tensor clone(const Tensor& x, Site site) { throw Error("clone: not implemented yet"); }
Tensor to(const Tensor& x, DType dtype, Site site) { throw Error("to: not implemented yet"); }
Tensor cat(const Tensors& xs, int64_t dim, Site site) { throw Error("cat: not implemented yet"); }
Tensor stack(const Tensors& xs, int64_t dim, Site site) { throw Error("stack: not implemented yet"); }
Tensors split(const Tensor& x, int64_t split_size, int64_t dim, Site site) { throw Error("split: not implemented yet"); }
Tensors split(const Tensor& x, const Dims& sizes, int64_t dim, Site site) { throw Error("split: not implemented yet"); }
Tensor sum_to(const Tensor& g, const Shape& shape, Site site) { throw Error("sum_to: not implemented yet"); }

}  // namespace dg
