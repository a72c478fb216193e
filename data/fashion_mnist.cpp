#include "data/fashion_mnist.h"

#include <fmt/ranges.h>
#include <zlib.h>

#include <filesystem>
#include <memory>

#include "tensor/creation.h"

namespace dg::data {

namespace {

// Whole file contents, decompressed if gzip. gzread passes a file that is not
// gzip through unchanged, so one path serves plain and .gz files.
std::vector<uint8_t> read_file_bytes(const std::string& path) {
  std::error_code ec;
  DG_CHECK(std::filesystem::exists(path, ec), "idx: file '{}' does not exist", path);
  DG_CHECK(std::filesystem::is_regular_file(path, ec), "idx: '{}' is not a regular file", path);
  std::unique_ptr<gzFile_s, int (*)(gzFile)> f(gzopen(path.c_str(), "rb"), gzclose);
  DG_CHECK(f != nullptr, "idx: cannot open '{}' for reading", path);
  std::vector<uint8_t> out;
  constexpr unsigned kChunk = 1 << 20;
  for (;;) {
    size_t at = out.size();
    out.resize(at + kChunk);
    int got = gzread(f.get(), out.data() + at, kChunk);
    if (got < 0) {
      int code = 0;
      const char* msg = gzerror(f.get(), &code);
      DG_CHECK(false, "idx: error reading '{}': {} (corrupt or truncated gzip data?)", path, msg ? msg : "?");
    }
    out.resize(at + static_cast<size_t>(got));
    if (got == 0) break;
  }
  // A gzip stream cut short reads as end-of-file with a pending error.
  int code = 0;
  const char* msg = gzerror(f.get(), &code);
  DG_CHECK(code == Z_OK || code == Z_STREAM_END, "idx: error reading '{}': {} (truncated gzip data?)", path,
           msg ? msg : "?");
  return out;
}

uint32_t read_be32(const std::vector<uint8_t>& b, size_t at) {
  return (uint32_t{b[at]} << 24) | (uint32_t{b[at + 1]} << 16) | (uint32_t{b[at + 2]} << 8) | uint32_t{b[at + 3]};
}

// Name of dimension i for messages: images are (count, rows, cols), labels (count).
const char* dim_name(int64_t i) {
  static const char* names[] = {"count", "rows", "cols"};
  return i < 3 ? names[i] : "dim";
}

}  // namespace

IdxFile read_idx(const std::string& path, int expected_dims) {
  std::vector<uint8_t> bytes = read_file_bytes(path);
  DG_CHECK(bytes.size() >= 4, "idx: '{}' is too short for the magic number ({} bytes)", path, bytes.size());
  uint32_t magic = read_be32(bytes, 0);
  uint32_t expected_magic = 0x800u | static_cast<uint32_t>(expected_dims);
  DG_CHECK(magic == expected_magic, "idx: '{}': magic number is 0x{:08x}, expected 0x{:08x} (uint8, {} dims)", path,
           magic, expected_magic, expected_dims);
  size_t header = 4 + 4 * static_cast<size_t>(expected_dims);
  DG_CHECK(bytes.size() >= header, "idx: '{}' is truncated inside the header: {} bytes, the header needs {}", path,
           bytes.size(), header);
  IdxFile idx;
  int64_t numel = 1;
  for (int i = 0; i < expected_dims; ++i) {
    int64_t d = read_be32(bytes, 4 + 4 * static_cast<size_t>(i));
    // Checked against the file length after every factor: numel stays <= the
    // file size and each dim is < 2^32, so the product never overflows int64.
    idx.dims.push_back(d);
    numel *= d;
    DG_CHECK(numel <= static_cast<int64_t>(bytes.size()), "idx: '{}' is truncated: header field '{}' = {} gives {} values "
             "but the file has {} bytes", path, dim_name(i), d, numel, bytes.size());
  }
  int64_t have = static_cast<int64_t>(bytes.size() - header);
  DG_CHECK(have == numel, "idx: '{}': header dims {} announce {} values but the file has {} bytes of data ({})", path,
           fmt::join(idx.dims, "x"), numel, have, have < numel ? "truncated" : "trailing bytes");
  idx.values.assign(bytes.begin() + static_cast<std::ptrdiff_t>(header), bytes.end());
  return idx;
}

Tensor read_idx_images(const std::string& path, int64_t rows, int64_t cols) {
  IdxFile idx = read_idx(path, 3);
  // Field by field, so the message says which one is wrong.
  const int64_t expected[] = {rows, cols};
  for (int i = 0; i < 2; ++i) {
    int64_t got = idx.dims[1 + i];
    DG_CHECK(got > 0, "idx: '{}': header field '{}' is {}, must be positive", path, dim_name(1 + i), got);
    DG_CHECK(expected[i] == 0 || got == expected[i], "idx: '{}': header field '{}' is {}, expected {}", path,
             dim_name(1 + i), got, expected[i]);
  }
  std::vector<float> pixels(idx.values.size());
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<float>(idx.values[i]) / 255.0f;
  return from_vector<float>(pixels, {idx.dims[0], idx.dims[1] * idx.dims[2]});
}

Tensor read_idx_labels(const std::string& path, int64_t num_classes) {
  IdxFile idx = read_idx(path, 1);
  std::vector<int64_t> labels(idx.values.begin(), idx.values.end());
  for (size_t i = 0; i < labels.size(); ++i)
    DG_CHECK(labels[i] < num_classes, "idx: '{}': label {} at index {} is outside 0..{}", path, labels[i], i,
             num_classes - 1);
  return from_vector<int64_t>(labels, {idx.dims[0]});
}

namespace {

// "<dir>/<name>.gz" if it exists, else "<dir>/<name>" if it exists, else an
// error that says how to install the data set.
std::string find_file(const std::string& dir, const std::string& name) {
  std::filesystem::path gz = std::filesystem::path(dir) / (name + ".gz"), plain = std::filesystem::path(dir) / name;
  std::error_code ec;
  if (std::filesystem::exists(gz, ec)) return gz.string();
  if (std::filesystem::exists(plain, ec)) return plain.string();
  DG_CHECK(false,
           "Fashion-MNIST: neither '{}' nor '{}' exists. Install the Debian package dataset-fashion-mnist: "
           "apt-get install dataset-fashion-mnist (files go to {}), or pass the folder holding the idx files",
           gz.string(), plain.string(), kFashionMnistDir);
  return {};
}

}  // namespace

FashionMnist load_fashion_mnist(const std::string& dir, Split split) {
  std::string prefix = split == Split::train ? "train" : "t10k";
  std::string images_path = find_file(dir, prefix + "-images-idx3-ubyte");
  std::string labels_path = find_file(dir, prefix + "-labels-idx1-ubyte");
  FashionMnist ds{read_idx_images(images_path, kFashionMnistSide, kFashionMnistSide), read_idx_labels(labels_path)};
  DG_CHECK(ds.images.size(0) == ds.labels.size(0),
           "Fashion-MNIST: count mismatch: '{}' has {} images but '{}' has {} labels", images_path,
           ds.images.size(0), labels_path, ds.labels.size(0));
  return ds;
}

}  // namespace dg::data
