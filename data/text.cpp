#include "data/text.h"

#include <cmath>
#include <filesystem>
#include <fstream>

#include "tensor/error.h"

namespace dg::data {

TextCorpus TextCorpus::from_file(const std::string& path, double val_fraction) {
  std::error_code ec;
  DG_CHECK(std::filesystem::exists(path, ec), "TextCorpus: file '{}' does not exist", path);
  DG_CHECK(!std::filesystem::is_directory(path, ec), "TextCorpus: '{}' is a directory, not a text file", path);
  // Only regular files: a FIFO, a terminal or /dev/zero has no end (or no size) to read to.
  DG_CHECK(std::filesystem::is_regular_file(path, ec), "TextCorpus: '{}' is not a regular file", path);
  const uintmax_t size = std::filesystem::file_size(path, ec);
  DG_CHECK(!ec, "TextCorpus: cannot get the size of '{}': {}", path, ec.message());
  std::ifstream in(path, std::ios::binary);
  DG_CHECK(in.is_open(), "TextCorpus: cannot open '{}' for reading (permissions?)", path);
  std::string text;
  try {
    text.resize(size);
  } catch (const std::exception&) {  // bad_alloc, length_error
    throw Error(fmt::format("TextCorpus: '{}' ({} bytes) does not fit in memory", path, size));
  }
  in.read(text.data(), static_cast<std::streamsize>(size));
  DG_CHECK(!in.bad() && static_cast<uintmax_t>(in.gcount()) == size,
           "TextCorpus: error while reading '{}': got {} of its {} bytes (changed while reading?)", path, in.gcount(),
           size);
  DG_CHECK(!text.empty(), "TextCorpus: file '{}' is empty", path);
  return from_string(std::move(text), val_fraction, path);
}

TextCorpus TextCorpus::from_string(std::string text, double val_fraction, std::string name) {
  DG_CHECK(!text.empty(), "TextCorpus: '{}' is empty", name);
  DG_CHECK(val_fraction >= 0.0 && val_fraction <= 1.0, "TextCorpus: '{}': val_fraction must be in [0, 1], got {}",
           name, val_fraction);
  auto n = static_cast<int64_t>(text.size());
  auto n_val = static_cast<int64_t>(std::llround(static_cast<double>(n) * val_fraction));
  TextCorpus c;
  c.source_ = std::move(name);
  c.bytes_[index(Split::val)] = text.substr(n - n_val);
  text.resize(n - n_val);
  c.bytes_[index(Split::train)] = std::move(text);
  return c;
}

}  // namespace dg::data
