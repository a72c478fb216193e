// STUB: replaced by the real implementation.
#include "autograd/ops/common.h"

namespace dg {

Tensor add(const Tensor& a, const Tensor& b, Site site) { throw Error("add: not implemented yet"); }
Tensor sub(const Tensor& a, const Tensor& b, Site site) { throw Error("sub: not implemented yet"); }
Tensor mul(const Tensor& a, const Tensor& b, Site site) { throw Error("mul: not implemented yet"); }
Tensor div(const Tensor& a, const Tensor& b, Site site) { throw Error("div: not implemented yet"); }
Tensor pow(const Tensor& a, const Tensor& b, Site site) { throw Error("pow: not implemented yet"); }
Tensor maximum(const Tensor& a, const Tensor& b, Site site) { throw Error("maximum: not implemented yet"); }
Tensor minimum(const Tensor& a, const Tensor& b, Site site) { throw Error("minimum: not implemented yet"); }
Tensor add(const Tensor& a, double b, Site site) { throw Error("add: not implemented yet"); }
Tensor mul(const Tensor& a, double b, Site site) { throw Error("mul: not implemented yet"); }
Tensor eq(const Tensor& a, const Tensor& b, Site site) { throw Error("eq: not implemented yet"); }
Tensor ne(const Tensor& a, const Tensor& b, Site site) { throw Error("ne: not implemented yet"); }
Tensor lt(const Tensor& a, const Tensor& b, Site site) { throw Error("lt: not implemented yet"); }
Tensor le(const Tensor& a, const Tensor& b, Site site) { throw Error("le: not implemented yet"); }
Tensor gt(const Tensor& a, const Tensor& b, Site site) { throw Error("gt: not implemented yet"); }
Tensor ge(const Tensor& a, const Tensor& b, Site site) { throw Error("ge: not implemented yet"); }
Tensor gt(const Tensor& a, double b, Site site) { throw Error("gt: not implemented yet"); }
Tensor lt(const Tensor& a, double b, Site site) { throw Error("lt: not implemented yet"); }
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b, Site site) { throw Error("where: not implemented yet"); }

}  // namespace dg
