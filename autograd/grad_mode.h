#pragma once
// Grad mode (thread-local) and anomaly mode.
//
//   { dg::NoGradGuard g; y = model(x); }   // records nothing
//   dg::AnomalyGuard a;                    // NaN/Inf raise errors naming op and site

namespace dg {

bool is_grad_enabled();
void set_grad_enabled(bool enabled);

class GradModeGuard {
 public:
  explicit GradModeGuard(bool enabled) : prev_(is_grad_enabled()) { set_grad_enabled(enabled); }
  ~GradModeGuard() { set_grad_enabled(prev_); }
  GradModeGuard(const GradModeGuard&) = delete;
  GradModeGuard& operator=(const GradModeGuard&) = delete;

 private:
  bool prev_;
};

struct NoGradGuard : GradModeGuard {
  NoGradGuard() : GradModeGuard(false) {}
};
struct EnableGradGuard : GradModeGuard {
  EnableGradGuard() : GradModeGuard(true) {}
};

// Anomaly mode: every forward output and backward gradient is checked for
// NaN/Inf, and an error names the op and the line that created its node.
bool is_anomaly_enabled();
void set_anomaly_enabled(bool enabled);

class AnomalyGuard {
 public:
  explicit AnomalyGuard(bool enabled = true) : prev_(is_anomaly_enabled()) { set_anomaly_enabled(enabled); }
  ~AnomalyGuard() { set_anomaly_enabled(prev_); }
  AnomalyGuard(const AnomalyGuard&) = delete;
  AnomalyGuard& operator=(const AnomalyGuard&) = delete;

 private:
  bool prev_;
};

}  // namespace dg
