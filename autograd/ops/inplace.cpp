// STUB: replaced by the real implementation.
#include "autograd/ops/common.h"

namespace dg {

Tensor& add_(Tensor& x, const Tensor& y, double alpha) { throw Error("add_: not implemented yet"); }
Tensor& mul_(Tensor& x, const Tensor& y) { throw Error("mul_: not implemented yet"); }
Tensor& mul_(Tensor& x, double y) { throw Error("mul_: not implemented yet"); }
Tensor& zero_(Tensor& x) { throw Error("zero_: not implemented yet"); }
Tensor& fill_(Tensor& x, double value) { throw Error("fill_: not implemented yet"); }
Tensor& copy_(Tensor& dst, const Tensor& src) { throw Error("copy_: not implemented yet"); }

}  // namespace dg
