// STUB: replaced by the real implementation.
#include "autograd/ops/common.h"

namespace dg {

Tensor neg(const Tensor& x, Site site) { throw Error("neg: not implemented yet"); }
Tensor exp(const Tensor& x, Site site) { throw Error("exp: not implemented yet"); }
Tensor log(const Tensor& x, Site site) { throw Error("log: not implemented yet"); }
Tensor sqrt(const Tensor& x, Site site) { throw Error("sqrt: not implemented yet"); }
Tensor rsqrt(const Tensor& x, Site site) { throw Error("rsqrt: not implemented yet"); }
Tensor abs(const Tensor& x, Site site) { throw Error("abs: not implemented yet"); }
Tensor tanh(const Tensor& x, Site site) { throw Error("tanh: not implemented yet"); }
Tensor sigmoid(const Tensor& x, Site site) { throw Error("sigmoid: not implemented yet"); }
Tensor relu(const Tensor& x, Site site) { throw Error("relu: not implemented yet"); }
Tensor gelu(const Tensor& x, bool tanh_approx, Site site) { throw Error("gelu: not implemented yet"); }
Tensor silu(const Tensor& x, Site site) { throw Error("silu: not implemented yet"); }
Tensor square(const Tensor& x, Site site) { throw Error("square: not implemented yet"); }
Tensor pow(const Tensor& x, double exponent, Site site) { throw Error("pow: not implemented yet"); }
Tensor clamp(const Tensor& x, double lo, double hi, Site site) { throw Error("clamp: not implemented yet"); }
Tensor unary_grad(UnaryOp op, const Tensor& g, const Tensor& x, const Tensor& y, double a, double b, Site site) { throw Error("unary_grad: not implemented yet"); }

}  // namespace dg
