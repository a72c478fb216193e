#pragma once
// The cuBLAS handle of a tensor's device (interim home: the lead may move it to
// common.cuh / backend.cu, next to the stream it is bound to).
//
//   cublasHandle_t h = cublas_handle(out);   // bound to stream_of(out)
//   check_cublas(cublasGemmEx(h, ...), "cublasGemmEx", "matmul");
#include <cublas_v2.h>

#include "tensor/tensor.h"

namespace dg::cuda {

// One handle per device, created on first use, set to stream_of(t) on every
// call (which also makes t's device current).
cublasHandle_t cublas_handle(const Tensor& t);

// Throws a dg::Error naming the cuBLAS call, what it was doing, and the status.
void check_cublas(cublasStatus_t status, const char* call, const char* what);

}  // namespace dg::cuda
