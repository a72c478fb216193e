#pragma once
// DG_HOST_DEVICE marks a function shared by the CPU code and the CUDA kernels
// (the functors of tensor/functors.h, the random transforms of tensor/rng.h,
// the AdamW update of tensor/optim_math.h): __host__ __device__ under nvcc,
// nothing for the host compiler.
#ifdef __CUDACC__
#define DG_HOST_DEVICE __host__ __device__
#else
#define DG_HOST_DEVICE
#endif
