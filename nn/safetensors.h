#pragma once
// safetensors files: the checkpoint format of the Python ecosystem
// (https://github.com/huggingface/safetensors), read and written without any
// dependency beyond a JSON parser.
//
//   dg::nn::save_safetensors("ckpt.safetensors", {{"w", w}, {"step", step}}, {{"format", "pt"}});
//   dg::nn::TensorFile f = dg::nn::load_safetensors("ckpt.safetensors");
//   dg::nn::load_into(f, {{"w", model_w}}, /*strict=*/true, "ckpt.safetensors");
//
// Layout of a file:
//
//   [8 bytes]  N, little-endian u64: length of the JSON header
//   [N bytes]  UTF-8 JSON object (padded with spaces to a multiple of 8 here):
//                {"__metadata__": {"key": "value", ...},          (optional)
//                 "name": {"dtype": "F32", "shape": [2, 3],
//                          "data_offsets": [begin, end]}, ...}
//   [rest]     the data section: each tensor's row-major little-endian bytes at
//              [begin, end), offsets counted from the first byte after the header.
//
// Supported dtypes: F32, F64, I64, I32, BOOL (dyngrad's f32 f64 i64 i32 b8).
// Saving is atomic (temporary file, fsync, rename): a crash or an error never
// leaves a half-written file at the target path. Loading checks every field and
// every byte range before it trusts them; each problem is a dg::Error that
// names the file and the tensor or key at fault.
#include <map>
#include <string>

#include "tensor/tensor.h"

namespace dg::nn {

using NamedTensors = std::map<std::string, Tensor>;
using Metadata = std::map<std::string, std::string>;

// Writes `tensors` (any device, any strides: the file holds their row-major
// values) and `metadata` to `path`, replacing an existing file only once the
// new one is complete and flushed to disk. The name "__metadata__" is reserved.
// Before writing, it removes stale temporary files of `path` (see below).
void save_safetensors(const std::string& path, const NamedTensors& tensors, const Metadata& metadata = {});

// Removes the temporary files an interrupted save of `path` left behind:
// only names "<path>.tmp.<pid>.<n>" (the pattern save_safetensors writes)
// whose process <pid> no longer runs (a live writer's file is left alone).
// Returns how many were removed; an unreadable folder removes nothing.
int remove_stale_temp_files(const std::string& path);

struct TensorFile {
  NamedTensors tensors;  // CPU, contiguous
  Metadata metadata;
};

// Reads and validates a whole file (see safetensors.cpp for the rules).
TensorFile load_safetensors(const std::string& path);

// Copies each tensor of `f` into the same-named tensor of `targets`, in place
// (through the target's backend, so any device), after checking shape and
// dtype. strict: a name in only one of the two is an error (all listed);
// non-strict: extra file tensors are ignored and unmatched targets left as
// they are. Everything is checked before anything is written, so a failed load
// leaves every target untouched. `path_for_errors` names the file in errors.
void load_into(const TensorFile& f, const NamedTensors& targets, bool strict, const std::string& path_for_errors);

}  // namespace dg::nn
