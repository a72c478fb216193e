#pragma once
// Eigen for the CPU kernels, included through this header only.
//
// GCC 12 reports false (maybe-)uninitialized warnings inside its own AVX-512
// intrinsic headers wherever Eigen's packet math is inlined (the `__Y = __Y`
// idiom of _mm*_undefined_*, GCC bug 105593). They fire where the templates
// are instantiated, in the including file, so they are silenced for the rest
// of that file, for GCC only: Clang has no such false positive (and no
// -Wmaybe-uninitialized), so Clang builds still check these files.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <Eigen/Core>
