#pragma once
// --device for the example programs and benchmarks: cpu, cuda (= cuda:0),
// cuda:N, or guarded (the test device of tensor/guarded_backend.h). The text
// is parsed and the device opened before any model is built or any step
// runs, so a device that does not exist (cuda without a GPU, cuda:7 on a
// one-GPU machine, a build without CUDA) stops the program at once with the
// dg::Error that names it.
//
//   std::string device = "cpu";
//   examples::add_device_flag(app, device);
//   CLI11_PARSE(app, argc, argv);
//   Device d = examples::open_device(device);   // throws dg::Error naming the device
//   model->to(d);
#include <CLI/CLI.hpp>
#include <string>

#include "tensor/backend.h"

namespace dg::examples {

inline void add_device_flag(CLI::App& app, std::string& device) {
  app.add_option("--device", device, "where tensors live: cpu | cuda | cuda:N")->capture_default_str();
}

// The device `text` names, after checking that this build and machine have it.
inline Device open_device(const std::string& text) {
  const Device d = parse_device(text);
  (void)backend_for(d);  // a dg::Error naming the device when it does not exist here
  return d;
}

}  // namespace dg::examples
