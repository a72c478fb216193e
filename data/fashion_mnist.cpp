#include "data/fashion_mnist.h"

#include <zlib.h>

#include <algorithm>
#include <filesystem>
#include <memory>

#include "tensor/creation.h"

namespace dg::data {

namespace {

// A plain or gzip file read in pieces (gzread passes a file that is not gzip
// through unchanged, so one path serves both). Reading piece by piece lets the
// caller stop where the header says the data ends: a file that decompresses to
// far more (a gzip bomb) is never held in memory.
class GzInput {
 public:
  explicit GzInput(const std::string& path) : path_(path), f_(nullptr, gzclose) {
    std::error_code ec;
    DG_CHECK(std::filesystem::exists(path, ec), "idx: file '{}' does not exist", path);
    DG_CHECK(std::filesystem::is_regular_file(path, ec), "idx: '{}' is not a regular file", path);
    f_.reset(gzopen(path.c_str(), "rb"));
    DG_CHECK(f_ != nullptr, "idx: cannot open '{}' for reading", path);
  }

  // Up to n bytes into dst; fewer only at the end of the data.
  size_t read(uint8_t* dst, size_t n) {
    size_t done = 0;
    while (done < n) {
      const unsigned want = static_cast<unsigned>(std::min<size_t>(n - done, 1u << 20));
      const int got = gzread(f_.get(), dst + done, want);
      if (got < 0) fail("corrupt or truncated gzip data?");
      if (got == 0) break;
      done += static_cast<size_t>(got);
    }
    // A gzip stream cut short reads as end-of-file with a pending error.
    if (done < n) {
      int code = 0;
      gzerror(f_.get(), &code);
      if (code != Z_OK && code != Z_STREAM_END) fail("truncated gzip data?");
    }
    return done;
  }

 private:
  [[noreturn]] void fail(const char* hint) {
    int code = 0;
    const char* msg = gzerror(f_.get(), &code);
    throw Error(fmt::format("idx: error reading '{}': {} ({})", path_, msg ? msg : "?", hint));
  }

  std::string path_;
  std::unique_ptr<gzFile_s, int (*)(gzFile)> f_;
};

uint32_t read_be32(const uint8_t* b, size_t at) {
  return (uint32_t{b[at]} << 24) | (uint32_t{b[at + 1]} << 16) | (uint32_t{b[at + 2]} << 8) | uint32_t{b[at + 3]};
}

// Name of dimension i for messages: images are (count, rows, cols), labels (count).
const char* dim_name(int64_t i) {
  static const char* names[] = {"count", "rows", "cols"};
  return i < 3 ? names[i] : "dim";
}

}  // namespace

IdxFile read_idx(const std::string& path, int expected_dims) {
  DG_CHECK(expected_dims >= 1 && expected_dims <= 3, "idx: '{}': read_idx reads 1 to 3 dims, asked for {}", path,
           expected_dims);
  GzInput in(path);
  uint8_t head[4 + 4 * 3];
  const size_t got_magic = in.read(head, 4);
  DG_CHECK(got_magic == 4, "idx: '{}' is too short for the magic number ({} bytes)", path, got_magic);
  uint32_t magic = read_be32(head, 0);
  uint32_t expected_magic = 0x800u | static_cast<uint32_t>(expected_dims);
  DG_CHECK(magic == expected_magic, "idx: '{}': magic number is 0x{:08x}, expected 0x{:08x} (uint8, {} dims)", path,
           magic, expected_magic, expected_dims);
  const size_t header = 4 + 4 * static_cast<size_t>(expected_dims);
  const size_t got_header = 4 + in.read(head + 4, header - 4);
  DG_CHECK(got_header == header, "idx: '{}' is truncated inside the header: {} bytes, the header needs {}", path,
           got_header, header);
  IdxFile idx;
  std::string fields;
  // The product of the non-zero dims is checked after every factor: it stays
  // <= kMaxIdxValues = 2^30 and each dim is < 2^32, so no product of dims
  // (here or in the callers: rows * cols) can overflow int64, even when a zero
  // count makes the file empty.
  int64_t numel = 1, nonzero = 1;
  for (int i = 0; i < expected_dims; ++i) {
    int64_t d = read_be32(head, 4 + 4 * static_cast<size_t>(i));
    idx.dims.push_back(d);
    fields += fmt::format("{}'{}' = {}", i ? ", " : "", dim_name(i), d);
    numel *= d;
    nonzero *= std::max<int64_t>(d, 1);
    DG_CHECK(nonzero <= kMaxIdxValues, "idx: '{}': header {} announces more than the limit of {} values", path,
             fields, kMaxIdxValues);
  }
  // The values, piece by piece as they arrive (memory follows the data the
  // file really has, not the header's claim), then one byte more to detect
  // trailing data.
  constexpr size_t kPiece = size_t{1} << 20;
  while (static_cast<int64_t>(idx.values.size()) < numel) {
    const size_t at = idx.values.size(), want = std::min(kPiece, static_cast<size_t>(numel) - at);
    idx.values.resize(at + want);
    const size_t got = in.read(idx.values.data() + at, want);
    idx.values.resize(at + got);
    if (got < want) break;
  }
  const auto have = static_cast<int64_t>(idx.values.size());
  DG_CHECK(have == numel, "idx: '{}': header {} announces {} values but the file has {} bytes of data (truncated)",
           path, fields, numel, have);
  uint8_t extra = 0;
  DG_CHECK(in.read(&extra, 1) == 0, "idx: '{}': header {} announces {} values but the file has trailing bytes after "
           "them", path, fields, numel);
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
