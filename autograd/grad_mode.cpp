#include "autograd/grad_mode.h"

namespace dg {

namespace {
thread_local bool t_grad_enabled = true;
thread_local bool t_anomaly_enabled = false;
}  // namespace

bool is_grad_enabled() { return t_grad_enabled; }
void set_grad_enabled(bool enabled) { t_grad_enabled = enabled; }
bool is_anomaly_enabled() { return t_anomaly_enabled; }
void set_anomaly_enabled(bool enabled) { t_anomaly_enabled = enabled; }

}  // namespace dg
