// The guarded test device: CPU kernels on memory the host cannot touch.
#include "tensor/guarded_backend.h"

#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <initializer_list>

#include "tensor/cpu/cpu_backend.h"

namespace dg::guarded {

namespace {

size_t page_size() {
  static const size_t p = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  return p;
}
size_t mapped_size(size_t nbytes) {
  const size_t p = page_size();
  return nbytes == 0 ? p : (nbytes + p - 1) / p * p;
}

std::atomic<uint64_t> g_kernels{0}, g_to_host{0}, g_from_host{0};
std::atomic<size_t> g_in_use{0};

void protect(const Storage& s, int prot) {
  if (mprotect(s.data, mapped_size(s.nbytes), prot) != 0)
    throw Error(fmt::format("guarded device: mprotect of {} bytes failed", s.nbytes));
}

// Makes the storages of a kernel's tensors readable and writable for the
// kernel's duration, and inaccessible again afterwards (also when it throws).
class Open {
 public:
  Open(std::initializer_list<Tensor> ts) {
    ++g_kernels;
    for (const Tensor& t : ts) {
      if (!t.defined()) continue;
      DG_ASSERT(t.device() == Device::guarded(), "guarded device: a kernel got a tensor on {}", t.device());
      DG_ASSERT(n_ < 12, "guarded device: more than 12 tensors in one kernel");
      storages_[n_++] = &t.storage();
      protect(t.storage(), PROT_READ | PROT_WRITE);
    }
  }
  ~Open() {
    for (int i = 0; i < n_; ++i) protect(*storages_[i], PROT_NONE);
  }
  Open(const Open&) = delete;
  Open& operator=(const Open&) = delete;

 private:
  const Storage* storages_[12] = {};
  int n_ = 0;
};

cpu::CpuBackend& cpu() { return cpu::cpu_backend(); }

class GuardedBackend final : public Backend {
 public:
  Device device() const override { return Device::guarded(); }

  // Each allocation is its own mapping, so protecting one never touches another.
  void* allocate(size_t nbytes) override {
    void* p = mmap(nullptr, mapped_size(nbytes), PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw Error(fmt::format("guarded device: out of memory allocating {} bytes", nbytes));
    g_in_use += nbytes;
    return p;
  }
  void deallocate(void* ptr, size_t nbytes) override {
    munmap(ptr, mapped_size(nbytes));
    g_in_use -= nbytes;
  }
  void empty_cache() override {}
  size_t bytes_in_use() const override { return g_in_use; }
  void copy_from_host(const void* src, const Tensor& dst) override {
    ++g_from_host;
    Open open{dst};
    cpu().copy_from_host(src, dst);
  }
  void copy_to_host(const Tensor& src, void* dst) override {
    ++g_to_host;
    Open open{src};
    cpu().copy_to_host(src, dst);
  }
  void synchronize() override {}

  void fill(const Tensor& out, double value) override {
    Open open{out};
    cpu().fill(out, value);
  }
  void arange(const Tensor& out, double start, double step) override {
    Open open{out};
    cpu().arange(out, start, step);
  }
  void copy(const Tensor& src, const Tensor& dst) override {
    Open open{src, dst};
    cpu().copy(src, dst);
  }
  void unary(UnaryOp op, const Tensor& x, const Tensor& out, UnaryParams p) override {
    Open open{x, out};
    cpu().unary(op, x, out, p);
  }
  void unary_grad(UnaryOp op, const Tensor& g, const Tensor& x, const Tensor& y, const Tensor& out, UnaryParams p) override {
    Open open{g, x, y, out};
    cpu().unary_grad(op, g, x, y, out, p);
  }
  void unary_grad2(UnaryOp op, const Tensor& x, const Tensor& y, const Tensor& out, UnaryParams p) override {
    Open open{x, y, out};
    cpu().unary_grad2(op, x, y, out, p);
  }
  void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) override {
    Open open{a, b, out};
    cpu().binary(op, a, b, out);
  }
  void where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) override {
    Open open{cond, a, b, out};
    cpu().where(cond, a, b, out);
  }
  void reduce(ReduceOp op, const Tensor& x, const Tensor& out) override {
    Open open{x, out};
    cpu().reduce(op, x, out);
  }
  void reduce_arg(ReduceOp op, const Tensor& x, int64_t dim, const Tensor& values, const Tensor& indices) override {
    Open open{x, values, indices};
    cpu().reduce_arg(op, x, dim, values, indices);
  }
  void matmul(const Tensor& a, const Tensor& b, const Tensor& out, bool trans_a, bool trans_b, double alpha, double beta) override {
    Open open{a, b, out};
    cpu().matmul(a, b, out, trans_a, trans_b, alpha, beta);
  }
  void index_select(const Tensor& x, int64_t dim, const Tensor& idx, const Tensor& out) override {
    Open open{x, idx, out};
    cpu().index_select(x, dim, idx, out);
  }
  void index_add(const Tensor& out, int64_t dim, const Tensor& idx, const Tensor& src, double alpha) override {
    Open open{out, idx, src};
    cpu().index_add(out, dim, idx, src, alpha);
  }
  void gather(const Tensor& x, int64_t dim, const Tensor& idx, const Tensor& out) override {
    Open open{x, idx, out};
    cpu().gather(x, dim, idx, out);
  }
  void scatter_add(const Tensor& out, int64_t dim, const Tensor& idx, const Tensor& src) override {
    Open open{out, idx, src};
    cpu().scatter_add(out, dim, idx, src);
  }
  void check_indices(const Tensor& idx, int64_t size, std::string_view message, std::optional<int64_t> skip) override {
    Open open{idx};
    cpu().check_indices(idx, size, message, skip);
  }
  void topk(const Tensor& x, int64_t k, int64_t dim, bool largest, bool sorted, const Tensor& values, const Tensor& indices) override {
    Open open{x, values, indices};
    cpu().topk(x, k, dim, largest, sorted, values, indices);
  }
  void fill_uniform(const Tensor& out, double lo, double hi, uint64_t seed, uint64_t offset) override {
    Open open{out};
    cpu().fill_uniform(out, lo, hi, seed, offset);
  }
  void fill_normal(const Tensor& out, double mean, double std, uint64_t seed, uint64_t offset) override {
    Open open{out};
    cpu().fill_normal(out, mean, std, seed, offset);
  }
  void fill_bernoulli(const Tensor& out, double p, uint64_t seed, uint64_t offset) override {
    Open open{out};
    cpu().fill_bernoulli(out, p, seed, offset);
  }
  void softmax(const Tensor& x, const Tensor& out, bool log) override {
    Open open{x, out};
    cpu().softmax(x, out, log);
  }
  void softmax_backward(const Tensor& y, const Tensor& gy, const Tensor& gx, bool log) override {
    Open open{y, gy, gx};
    cpu().softmax_backward(y, gy, gx, log);
  }
  void layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps, const Tensor& y, const Tensor& mean, const Tensor& rstd) override {
    Open open{x, weight, bias, y, mean, rstd};
    cpu().layer_norm(x, weight, bias, eps, y, mean, rstd);
  }
  void layer_norm_backward(const Tensor& gy, const Tensor& x, const Tensor& weight, const Tensor& mean, const Tensor& rstd, const Tensor& gx, const Tensor& gweight, const Tensor& gbias, bool add_to_gx) override {
    Open open{gy, x, weight, mean, rstd, gx, gweight, gbias};
    cpu().layer_norm_backward(gy, x, weight, mean, rstd, gx, gweight, gbias, add_to_gx);
  }
  void rms_norm(const Tensor& x, const Tensor& weight, double eps, const Tensor& y, const Tensor& rstd) override {
    Open open{x, weight, y, rstd};
    cpu().rms_norm(x, weight, eps, y, rstd);
  }
  void rms_norm_backward(const Tensor& gy, const Tensor& x, const Tensor& weight, const Tensor& rstd, const Tensor& gx, const Tensor& gweight) override {
    Open open{gy, x, weight, rstd, gx, gweight};
    cpu().rms_norm_backward(gy, x, weight, rstd, gx, gweight);
  }
  void cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index, double label_smoothing, const Tensor& loss, const Tensor& lse) override {
    Open open{logits, target, loss, lse};
    cpu().cross_entropy(logits, target, ignore_index, label_smoothing, loss, lse);
  }
  void cross_entropy_backward(const Tensor& logits, const Tensor& target, const Tensor& lse, const Tensor& gloss, int64_t ignore_index, double label_smoothing, const Tensor& glogits) override {
    Open open{logits, target, lse, gloss, glogits};
    cpu().cross_entropy_backward(logits, target, lse, gloss, ignore_index, label_smoothing, glogits);
  }
  void attention(const Tensor& q, const Tensor& k, const Tensor& v, double scale, bool causal, const Tensor& out, const Tensor& lse) override {
    Open open{q, k, v, out, lse};
    cpu().attention(q, k, v, scale, causal, out, lse);
  }
  void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse, const Tensor& gout, double scale, bool causal, const Tensor& gq, const Tensor& gk, const Tensor& gv) override {
    Open open{q, k, v, out, lse, gout, gq, gk, gv};
    cpu().attention_backward(q, k, v, out, lse, gout, scale, causal, gq, gk, gv);
  }
  void attention_varlen(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& cu_seqlens, double scale, const Tensor& out, const Tensor& lse) override {
    Open open{q, k, v, cu_seqlens, out, lse};
    cpu().attention_varlen(q, k, v, cu_seqlens, scale, out, lse);
  }
  void attention_varlen_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& cu_seqlens, const Tensor& out, const Tensor& lse, const Tensor& gout, double scale, const Tensor& gq, const Tensor& gk, const Tensor& gv) override {
    Open open{q, k, v, cu_seqlens, out, lse, gout, gq, gk, gv};
    cpu().attention_varlen_backward(q, k, v, cu_seqlens, out, lse, gout, scale, gq, gk, gv);
  }
  void attention_qkv(const Tensor& qkv, const Tensor& cu_seqlens, int64_t H, double scale, const Tensor& out, const Tensor& lse) override {
    Open open{qkv, cu_seqlens, out, lse};
    cpu().attention_qkv(qkv, cu_seqlens, H, scale, out, lse);
  }
  void attention_qkv_backward(const Tensor& qkv, const Tensor& cu_seqlens, int64_t H, const Tensor& out, const Tensor& lse, const Tensor& gout, double scale, const Tensor& gqkv) override {
    Open open{qkv, cu_seqlens, out, lse, gout, gqkv};
    cpu().attention_qkv_backward(qkv, cu_seqlens, H, out, lse, gout, scale, gqkv);
  }
  bool index_add_rows(const Tensor& out, const Tensor& idx, const Tensor& src, const Tensor& w) override {
    Open open{out, idx, src, w};
    return cpu().index_add_rows(out, idx, src, w);
  }
  bool index_add_rows_backward(const Tensor& g, const Tensor& idx, const Tensor& src, const Tensor& w, const Tensor& gsrc, const Tensor& gw) override {
    Open open{g, idx, src, w, gsrc, gw};
    return cpu().index_add_rows_backward(g, idx, src, w, gsrc, gw);
  }
  bool attention_qkv_rows(const Tensor& qkv, const Tensor& cu_seqlens, const Tensor& rows, int64_t H, double scale, const Tensor& out, const Tensor& lse) override {
    Open open{qkv, cu_seqlens, rows, out, lse};
    return cpu().attention_qkv_rows(qkv, cu_seqlens, rows, H, scale, out, lse);
  }
  bool attention_qkv_rows_backward(const Tensor& qkv, const Tensor& cu_seqlens, const Tensor& rows, int64_t H, const Tensor& out, const Tensor& lse, const Tensor& gout, double scale, const Tensor& gqkv) override {
    Open open{qkv, cu_seqlens, rows, out, lse, gout, gqkv};
    return cpu().attention_qkv_rows_backward(qkv, cu_seqlens, rows, H, out, lse, gout, scale, gqkv);
  }
  void adamw_step(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq, double lr, double beta1, double beta2, double eps, double weight_decay, int64_t step) override {
    Open open{param, grad, exp_avg, exp_avg_sq};
    cpu().adamw_step(param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay, step);
  }
};

}  // namespace

Backend& guarded_backend() {
  static GuardedBackend* b = new GuardedBackend;  // never destroyed, like the CPU's
  return *b;
}

Counters counters() { return {g_kernels.load(), g_to_host.load(), g_from_host.load()}; }

}  // namespace dg::guarded
