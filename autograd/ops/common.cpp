#include "autograd/ops/common.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace dg {

void check_anomaly_forward(const char* op, const Site& site, const Tensor& out) {
  if (!is_floating(out.dtype())) return;
  for (double v : out.to_vector<double>()) {
    DG_CHECK(std::isfinite(v), "anomaly: '{}' (called at {}:{}) produced a non-finite value ({}) in its output of "
             "shape {}", op, site.file_name(), site.line(), v, out.shape());
  }
}

void check_same_dtype(const char* op, const Tensor& a, const Tensor& b) {
  DG_CHECK(a.dtype() == b.dtype(), "{}: dtype mismatch: {} {} vs {} {} (convert one with dg::to)", op, a.dtype(),
           a.shape(), b.dtype(), b.shape());
}

void check_same_device(const char* op, const Tensor& a, const Tensor& b) {
  DG_CHECK(a.device() == b.device(), "{}: tensors on different devices: {} and {} (shapes {} and {}; move one "
           "with dg::to)", op, a.device(), b.device(), a.shape(), b.shape());
}

void check_floating(const char* op, const Tensor& x) {
  DG_CHECK(is_floating(x.dtype()), "{}: expected a floating tensor (f32 or f64), got {} of shape {}", op, x.dtype(),
           x.shape());
}

void check_defined(const char* op, const Tensor& x, const char* what) {
  DG_CHECK(x.defined(), "{}: the {} is an undefined tensor", op, what);
}

void check_index_tensor(const char* op, const Tensor& index) {
  DG_CHECK(index.defined(), "{}: the index is an undefined tensor", op);
  DG_CHECK(index.dtype() == DType::i64, "{}: index must be i64, got {} of shape {}", op, index.dtype(),
           index.shape());
}

HostIndex::HostIndex(const Tensor& index) {
  if (index.device().is_cpu() && index.is_contiguous()) {
    values_ = {index.data<int64_t>(), static_cast<size_t>(index.numel())};
  } else {
    copy_ = index.to_vector<int64_t>();
    values_ = copy_;
  }
}

Tensor broadcast_view(const Tensor& x, const Shape& shape) {
  if (x.shape() == shape) return x;
  Strides st;
  st.resize(shape.size());
  int64_t lead = shape.size() - x.dim();
  DG_ASSERT(lead >= 0, "broadcast_view {} -> {}", x.shape(), shape);
  for (int64_t i = 0; i < shape.size(); ++i) {
    int64_t j = i - lead;
    if (j < 0) st[i] = 0;
    else {
      DG_ASSERT(x.shape()[j] == shape[i] || x.shape()[j] == 1, "broadcast_view {} -> {}", x.shape(), shape);
      st[i] = x.shape()[j] == shape[i] ? x.strides()[j] : 0;
    }
  }
  return as_strided(x, shape, st, x.offset());
}

void check_group_offsets(const char* op, const std::vector<int64_t>& offsets, size_t groups, int64_t rows) {
  DG_CHECK(groups >= 1 && offsets.size() == groups + 1, "{}: {} weights need {} offsets, got {}", op, groups,
           groups + 1, offsets.size());
  DG_CHECK(offsets.front() == 0 && offsets.back() == rows,
           "{}: offsets must run from 0 to the input's {} rows, got {} .. {}", op, rows, offsets.front(),
           offsets.back());
  for (size_t k = 0; k < groups; ++k)
    DG_CHECK(offsets[k] <= offsets[k + 1], "{}: offsets decrease at group {} ({} > {})", op, k, offsets[k],
             offsets[k + 1]);
}

Tensors grouped_inputs(const Tensor& x, const Tensors& weights, const Tensors& biases) {
  Tensors inputs{x};
  inputs.insert(inputs.end(), weights.begin(), weights.end());
  inputs.insert(inputs.end(), biases.begin(), biases.end());
  return inputs;
}

std::vector<SavedTensor> save_all(const Tensors& ts) {
  std::vector<SavedTensor> saved;
  saved.reserve(ts.size());
  for (const Tensor& t : ts) saved.push_back(save(t));
  return saved;
}

}  // namespace dg
