// libFuzzer target: the safetensors reader (nn/safetensors.h).
// Any input must load or give a dg::Error. A file that loads must also
// round-trip: written back and read again it holds the same metadata, names,
// dtypes, shapes and bytes; and load_into copies it into same-shaped targets.
#include <cstring>
#include <filesystem>

#include "fuzz_file.h"
#include "nn/safetensors.h"
#include "tensor/creation.h"

namespace {

bool same_bytes(const dg::Tensor& a, const dg::Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != b.dtype()) return false;
  const dg::Tensor ca = dg::to_contiguous(a), cb = dg::to_contiguous(b);
  return ca.nbytes() == 0 || std::memcmp(ca.raw_data(), cb.raw_data(), ca.nbytes()) == 0;
}

bool same_file(const dg::nn::TensorFile& a, const dg::nn::TensorFile& b) {
  if (a.metadata != b.metadata || a.tensors.size() != b.tensors.size()) return false;
  for (const auto& [name, t] : a.tensors) {
    auto it = b.tensors.find(name);
    if (it == b.tensors.end() || !same_bytes(t, it->second)) return false;
  }
  return true;
}

std::string scratch_path() {
  namespace fs = std::filesystem;
  const fs::path dir = fs::exists("/dev/shm") ? fs::path("/dev/shm") : fs::temp_directory_path();  // tmpfs: no disk
  return (dir / ("dg_fuzz_safetensors_" + std::to_string(::getpid()) + ".safetensors")).string();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static dg::fuzz::InputFile input;
  static const std::string scratch = scratch_path();
  dg::nn::TensorFile f;
  try {
    f = dg::nn::load_safetensors(input.hold(data, size));
  } catch (const dg::Error&) {
    return 0;
  }
  dg::nn::save_safetensors(scratch, f.tensors, f.metadata);
  const dg::nn::TensorFile again = dg::nn::load_safetensors(scratch);
  std::filesystem::remove(scratch);
  dg::fuzz::require(same_file(f, again));

  dg::nn::NamedTensors targets;
  for (const auto& [name, t] : f.tensors) targets.emplace(name, dg::zeros(t.shape(), {t.dtype()}));
  dg::nn::load_into(f, targets, /*strict=*/true, "fuzz input");
  for (const auto& [name, t] : f.tensors) dg::fuzz::require(same_bytes(t, targets.at(name)));
  return 0;
}
