// STUB: replaced by the real implementation.
#include "tensor/cpu/cpu_backend.h"

namespace dg::cpu {

void CpuBackend::unary(UnaryOp op, const Tensor& x, const Tensor& out, UnaryParams p) { throw Error("cpu unary: not implemented yet"); }
void CpuBackend::unary_grad(UnaryOp op, const Tensor& g, const Tensor& x, const Tensor& y, const Tensor& out,
                  UnaryParams p) { throw Error("cpu unary_grad: not implemented yet"); }
void CpuBackend::unary_grad2(UnaryOp op, const Tensor& x, const Tensor& y, const Tensor& out, UnaryParams p) { throw Error("cpu unary_grad2: not implemented yet"); }
void CpuBackend::binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) { throw Error("cpu binary: not implemented yet"); }
void CpuBackend::where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) { throw Error("cpu where: not implemented yet"); }
}  // namespace dg::cpu

namespace dg {
std::string_view unary_op_name(UnaryOp) { return "?"; }
std::string_view binary_op_name(BinaryOp) { return "?"; }
}  // namespace dg
