// safetensors reader and writer; the layout is described in safetensors.h.
//
// Writing: tensors are laid out by itemsize (largest first), then by name, so
// every tensor's begin offset is a multiple of its itemsize; the header is
// padded with spaces to a multiple of 8, so the data is aligned in the file
// too (what the reference implementation does, and what mmap readers want).
//
// Reading: nothing in the file is trusted. The rules, each a dg::Error naming
// the file and the offending tensor or key:
//  - the file opens, is a regular file, and holds at least the 8-byte length N;
//  - N <= 100 MB (the reference bound) and 8 + N <= file size;
//  - the header is valid UTF-8 JSON, an object, without duplicate keys, that
//    nests at most kMaxJsonDepth arrays/objects deep (the format needs 3) and
//    lists at most kMaxTensors tensors;
//  - "__metadata__", if present, is an object of string values;
//  - every other key is a tensor: an object with "dtype" (a string naming a
//    dtype dyngrad has), "shape" (at most kMaxDims non-negative integers) and
//    "data_offsets" ([begin, end] integers, begin <= end <= data size), where
//    end - begin == numel * itemsize, computed without overflow;
//  - sorted by offset, the tensors tile the data section exactly: no overlap,
//    no gap, no trailing bytes (the reference implementation's rule);
//  - BOOL bytes are 0 or 1.
// Errors quote the file's text (names, values) through dg::excerpt (bounded,
// control characters escaped), so a hostile file cannot make a message huge,
// and nothing recursive ever runs over the file's JSON beyond the depth bound
// (see HeaderScan).
#include "nn/safetensors.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <system_error>
#include <vector>

#include "tensor/backend.h"
#include "tensor/creation.h"

namespace dg::nn {
namespace {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; a big-endian host would need byte swaps here");

using json = nlohmann::json;

constexpr uint64_t kMaxHeaderBytes = 100'000'000;  // the reference implementation's bound
constexpr int kMaxJsonDepth = 16;                   // arrays/objects inside each other; the format needs 3
constexpr size_t kMaxTensors = 100'000;             // far above any model's tensor count (GPT-2: 150)

// A JSON value of the header for an error message, cut like dg::excerpt().
// Safe to serialise: parse_header bounds its depth.
std::string json_excerpt(const json& v) { return excerpt(v.dump(-1, ' ', false, json::error_handler_t::replace)); }

std::string errno_text(int err) { return std::error_code(err, std::generic_category()).message(); }

// --- dtypes -----------------------------------------------------------------

struct DTypeName {
  DType dtype;
  std::string_view name;
};
constexpr DTypeName kSupported[] = {
    {DType::f32, "F32"}, {DType::f64, "F64"}, {DType::i64, "I64"}, {DType::i32, "I32"}, {DType::b8, "BOOL"}};
// Valid safetensors dtypes that dyngrad has no tensor type for.
constexpr std::string_view kUnsupported[] = {"F16",     "BF16",    "I8",      "U8",      "I16", "U16",
                                             "U32",     "U64",     "F8_E4M3", "F8_E5M2", "F8_E8M0",
                                             "F6_E2M3", "F6_E3M2", "F4",      "C64",     "E8M0"};

std::string_view file_dtype_name(DType t) {
  for (const DTypeName& d : kSupported)
    if (d.dtype == t) return d.name;
  DG_ASSERT(false, "save_safetensors: no safetensors name for dtype {}", t);
  return {};
}

// --- writing ----------------------------------------------------------------

// A temporary file next to the target (same directory, so rename() is
// atomic): created exclusively, removed on destruction unless committed.
class TempFile {
 public:
  explicit TempFile(const std::string& target) : target_(target) {
    static std::atomic<uint64_t> counter{0};
    // A name taken (a stale file of an earlier process that had our pid): the next one.
    for (int tries = 0; tries < 1000; ++tries) {
      path_ = fmt::format("{}.tmp.{}.{}", target, ::getpid(), counter++);
      fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
      if (fd_ >= 0 || errno != EEXIST) break;
    }
    DG_CHECK(fd_ >= 0, "save_safetensors '{}': cannot create temporary file '{}': {}", target_, path_,
             errno_text(errno));
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  ~TempFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(path_.c_str());
  }

  void write(const void* data, size_t n, std::string_view what) {
    const char* p = static_cast<const char*>(data);
    while (n > 0) {
      ssize_t w = ::write(fd_, p, n);
      if (w < 0 && errno == EINTR) continue;
      DG_CHECK(w > 0, "save_safetensors '{}': writing {} to '{}' failed: {}", target_, what, path_,
               w < 0 ? errno_text(errno) : std::string("no progress"));
      p += w;
      n -= static_cast<size_t>(w);
    }
  }

  // fsync, close, rename over the target, then fsync the directory so the
  // rename itself survives a power cut.
  void commit() {
    DG_CHECK(::fsync(fd_) == 0, "save_safetensors '{}': fsync of '{}' failed: {}", target_, path_, errno_text(errno));
    const int fd = fd_;
    fd_ = -1;
    DG_CHECK(::close(fd) == 0, "save_safetensors '{}': close of '{}' failed: {}", target_, path_, errno_text(errno));
    DG_CHECK(::rename(path_.c_str(), target_.c_str()) == 0, "save_safetensors '{}': rename from '{}' failed: {}",
             target_, path_, errno_text(errno));
    committed_ = true;
    const std::filesystem::path parent = std::filesystem::path(target_).parent_path();
    const std::string dir = parent.empty() ? std::string(".") : parent.string();
    const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DG_CHECK(dfd >= 0, "save_safetensors '{}': saved, but opening directory '{}' to fsync it failed: {}", target_,
             dir, errno_text(errno));
    // Some file systems cannot fsync a directory (EINVAL); the file is in place.
    const bool synced = ::fsync(dfd) == 0 || errno == EINVAL;
    const int err = errno;
    ::close(dfd);
    DG_CHECK(synced, "save_safetensors '{}': saved, but fsync of directory '{}' failed: {}", target_, dir,
             errno_text(err));
  }

 private:
  std::string target_, path_;
  int fd_ = -1;
  bool committed_ = false;
};

// --- reading ----------------------------------------------------------------

// A read-only regular file that closes itself; reads are exact or an error.
class InputFile {
 public:
  explicit InputFile(const std::string& path) : path_(path) {
    // O_NONBLOCK: opening a FIFO would otherwise wait for a writer before the
    // regular-file check below can refuse it (reads of a regular file ignore it).
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    DG_CHECK(fd_ >= 0, "load_safetensors '{}': cannot open: {}", path, errno_text(errno));
    struct stat st {};
    const bool stat_ok = ::fstat(fd_, &st) == 0;
    const int err = errno;
    if (!stat_ok || !S_ISREG(st.st_mode)) ::close(fd_);  // the destructor does not run when the constructor throws
    DG_CHECK(stat_ok, "load_safetensors '{}': cannot stat: {}", path, errno_text(err));
    DG_CHECK(S_ISREG(st.st_mode), "load_safetensors '{}': not a regular file", path);
    size_ = static_cast<uint64_t>(st.st_size);
  }
  InputFile(const InputFile&) = delete;
  InputFile& operator=(const InputFile&) = delete;
  ~InputFile() { ::close(fd_); }
  uint64_t size() const { return size_; }

  void read_at(void* dst, uint64_t n, uint64_t offset, std::string_view what) const {
    char* p = static_cast<char*>(dst);
    while (n > 0) {
      ssize_t r = ::pread(fd_, p, n, static_cast<off_t>(offset));
      if (r < 0 && errno == EINTR) continue;
      DG_CHECK(r > 0, "load_safetensors '{}': reading {} failed: {}", path_, what,
               r < 0 ? errno_text(errno) : std::string("unexpected end of file (was it truncated while loading?)"));
      p += r;
      n -= static_cast<uint64_t>(r);
      offset += static_cast<uint64_t>(r);
    }
  }

 private:
  std::string path_;
  int fd_ = -1;
  uint64_t size_ = 0;
};

// One tensor entry of the header, validated.
struct Entry {
  std::string name;
  DType dtype;
  Shape shape;
  uint64_t begin, end;
};

// A first pass over the header text that keeps no values (nlohmann's SAX
// interface, an iterative parser): the syntax, nesting deeper than
// kMaxJsonDepth (the root is depth 1), and duplicate keys, which the DOM
// would silently collapse to the last one. It stops at the first problem,
// before a deep value exists to be built, destroyed or printed (recursively).
// (nlohmann's parser callback could check the same while building the DOM,
// but it scans the parent object at every object's end: quadratic in the
// tensor count, 100 s for 100,000 tensors.)
class HeaderScan : public json::json_sax_t {
 public:
  std::string problem;  // empty: the text is fine

  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }
  bool start_object(std::size_t) override {
    keys_.emplace_back();
    return open();
  }
  bool end_object() override {
    keys_.pop_back();
    --depth_;
    return true;
  }
  bool start_array(std::size_t) override { return open(); }
  bool end_array() override {
    --depth_;
    return true;
  }
  bool key(string_t& k) override {
    if (keys_.back().insert(k).second) return true;
    problem = fmt::format("has the key '{}' more than once", excerpt(k));
    return false;
  }
  bool parse_error(std::size_t, const std::string&, const json::exception& e) override {
    problem = fmt::format("is not valid JSON: {}", e.what());
    return false;
  }

 private:
  bool open() {
    if (++depth_ <= kMaxJsonDepth) return true;
    problem = fmt::format("nests JSON arrays/objects more than {} deep (a safetensors header needs 3)", kMaxJsonDepth);
    return false;
  }
  int depth_ = 0;
  std::vector<std::set<std::string>> keys_;  // of each open object
};

// The header as JSON, once HeaderScan has passed it.
json parse_header(const std::string& where, const std::string& text) {
  HeaderScan scan;
  const bool ok = json::sax_parse(text, &scan);
  DG_CHECK(ok && scan.problem.empty(), "{}: header {}", where, scan.problem.empty() ? "is not valid JSON" : scan.problem);
  json header;
  try {
    header = json::parse(text);
  } catch (const json::exception& e) {  // not expected after the scan
    throw Error(fmt::format("{}: header is not valid JSON: {}", where, e.what()));
  }
  DG_CHECK(header.is_object(), "{}: header must be a JSON object, got {}", where, header.type_name());
  return header;
}

Metadata parse_metadata(const std::string& where, const json& value) {
  DG_CHECK(value.is_object(), "{}: '__metadata__' must be an object of strings, got {}", where, value.type_name());
  Metadata out;
  for (const auto& [key, v] : value.items()) {
    DG_CHECK(v.is_string(), "{}: '__metadata__' key '{}' must be a string, got {}", where, excerpt(key), v.type_name());
    out.emplace(key, v.get<std::string>());
  }
  return out;
}

// A non-negative JSON integer; `field` names it in errors.
uint64_t non_negative_integer(const std::string& where, const json& v, const std::string& field) {
  DG_CHECK(v.is_number_integer(), "{}: {} must be an integer, got {} {}", where, field, v.type_name(), json_excerpt(v));
  DG_CHECK(v.is_number_unsigned(), "{}: {} is {}, must be non-negative", where, field, json_excerpt(v));
  return v.get<uint64_t>();
}

Entry parse_entry(const std::string& where_file, const std::string& name, const json& value, uint64_t data_size) {
  const std::string where = fmt::format("{}: tensor '{}'", where_file, excerpt(name));
  DG_CHECK(value.is_object(), "{}: entry must be a JSON object, got {}", where, value.type_name());
  for (const char* field : {"dtype", "shape", "data_offsets"})
    DG_CHECK(value.contains(field), "{}: missing field '{}'", where, field);
  Entry e{name, DType::f32, {}, 0, 0};

  const json& dtype = value["dtype"];
  DG_CHECK(dtype.is_string(), "{}: 'dtype' must be a string, got {}", where, dtype.type_name());
  const std::string dname = dtype.get<std::string>();
  auto supported = std::find_if(std::begin(kSupported), std::end(kSupported),
                                [&](const DTypeName& d) { return d.name == dname; });
  DG_CHECK(supported != std::end(kSupported) ||
               std::find(std::begin(kUnsupported), std::end(kUnsupported), dname) == std::end(kUnsupported),
           "{}: dtype '{}' is unsupported by dyngrad (supported: F32, F64, I64, I32, BOOL)", where, dname);
  DG_CHECK(supported != std::end(kSupported), "{}: unknown dtype '{}'", where, excerpt(dname));
  e.dtype = supported->dtype;

  // Shape: numel is computed in u64 with overflow checks; the product of the
  // non-zero dims must fit int64 too, so Shape::numel() can never overflow.
  const json& shape = value["shape"];
  DG_CHECK(shape.is_array(), "{}: 'shape' must be an array, got {}", where, shape.type_name());
  DG_CHECK(shape.size() <= static_cast<size_t>(kMaxDims), "{}: 'shape' has {} dims, dyngrad tensors have at most {}",
           where, shape.size(), kMaxDims);
  uint64_t nonzero_product = 1;
  bool has_zero = false;
  for (size_t i = 0; i < shape.size(); ++i) {
    const uint64_t d = non_negative_integer(where, shape[i], fmt::format("'shape'[{}]", i));
    DG_CHECK(d <= static_cast<uint64_t>(INT64_MAX), "{}: 'shape'[{}] = {} is too large", where, i, d);
    has_zero |= d == 0;
    DG_CHECK(d == 0 || (!__builtin_mul_overflow(nonzero_product, d, &nonzero_product) &&
                            nonzero_product <= static_cast<uint64_t>(INT64_MAX)),
             "{}: 'shape' {} overflows 64-bit element counts", where, json_excerpt(shape));
    e.shape.push_back(static_cast<int64_t>(d));
  }
  uint64_t nbytes = 0;
  DG_CHECK(!__builtin_mul_overflow(has_zero ? 0 : nonzero_product, itemsize(e.dtype), &nbytes),
           "{}: 'shape' {} overflows 64-bit byte counts", where, json_excerpt(shape));

  const json& offsets = value["data_offsets"];
  DG_CHECK(offsets.is_array() && offsets.size() == 2, "{}: 'data_offsets' must be [begin, end], got {}", where,
           json_excerpt(offsets));
  e.begin = non_negative_integer(where, offsets[0], "'data_offsets' begin");
  e.end = non_negative_integer(where, offsets[1], "'data_offsets' end");
  DG_CHECK(e.begin <= e.end, "{}: 'data_offsets' [{}, {}] has begin > end", where, e.begin, e.end);
  DG_CHECK(e.end <= data_size, "{}: 'data_offsets' [{}, {}] run past the data section of {} bytes", where, e.begin,
           e.end, data_size);
  DG_CHECK(e.end - e.begin == nbytes, "{}: 'shape' {} of {} needs {} bytes but 'data_offsets' [{}, {}] span {}",
           where, e.shape, dname, nbytes, e.begin, e.end, e.end - e.begin);
  return e;
}

// Sorted by offset, the tensors must tile [0, data_size) exactly.
void check_layout(const std::string& where, std::vector<Entry>& entries, uint64_t data_size) {
  std::sort(entries.begin(), entries.end(),
            [](const Entry& a, const Entry& b) { return std::tie(a.begin, a.end) < std::tie(b.begin, b.end); });
  uint64_t covered = 0;
  const Entry* prev = nullptr;
  for (const Entry& e : entries) {
    DG_CHECK(e.begin >= covered, "{}: tensor '{}': 'data_offsets' [{}, {}] overlap tensor '{}' [{}, {}]", where,
             excerpt(e.name), e.begin, e.end, prev ? excerpt(prev->name) : "", prev ? prev->begin : 0,
             prev ? prev->end : 0);
    DG_CHECK(e.begin == covered, "{}: bytes [{}, {}) of the data section are not covered by any tensor (gap before "
             "tensor '{}')", where, covered, e.begin, excerpt(e.name));
    covered = e.end;
    if (e.end > e.begin) prev = &e;
  }
  DG_CHECK(covered == data_size, "{}: data section has {} trailing bytes not covered by any tensor", where,
           data_size - covered);
}

// 'a', 'b', ... for an error: the first kMaxListed names, each excerpt(), then a count.
std::string quoted_list(const std::vector<std::string>& names) {
  constexpr size_t kMaxListed = 20;
  std::string out;
  for (size_t i = 0; i < names.size() && i < kMaxListed; ++i) out += (i == 0 ? "'" : ", '") + excerpt(names[i]) + "'";
  if (names.size() > kMaxListed) out += fmt::format(" and {} more", names.size() - kMaxListed);
  return out;
}

}  // namespace

int remove_stale_temp_files(const std::string& path) {
  namespace fs = std::filesystem;
  const fs::path target(path);
  const std::string prefix = target.filename().string() + ".tmp.";
  const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  auto digits = [](std::string_view s) {
    return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
  };
  int removed = 0;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.rfind(prefix, 0) != 0) continue;
    const std::string_view rest = std::string_view(name).substr(prefix.size());  // "<pid>.<n>"
    const size_t dot = rest.find('.');
    if (dot == std::string_view::npos || !digits(rest.substr(0, dot)) || !digits(rest.substr(dot + 1)) ||
        dot > 9)
      continue;
    const pid_t pid = static_cast<pid_t>(std::stol(std::string(rest.substr(0, dot))));
    const bool dead = pid != ::getpid() && ::kill(pid, 0) != 0 && errno == ESRCH;
    std::error_code rm_ec;
    if (dead && it->is_regular_file(rm_ec) && fs::remove(it->path(), rm_ec)) ++removed;
  }
  return removed;
}

void save_safetensors(const std::string& path, const NamedTensors& tensors, const Metadata& metadata) {
  remove_stale_temp_files(path);
  // Layout order: itemsize descending, then name (see the top of this file).
  std::vector<NamedTensors::const_iterator> order;
  for (auto it = tensors.begin(); it != tensors.end(); ++it) {
    DG_CHECK(it->first != "__metadata__", "save_safetensors '{}': '__metadata__' is reserved, not a tensor name", path);
    DG_CHECK(it->second.defined(), "save_safetensors '{}': tensor '{}' is undefined", path, it->first);
    order.push_back(it);
  }
  std::stable_sort(order.begin(), order.end(),
                   [](auto a, auto b) { return itemsize(a->second.dtype()) > itemsize(b->second.dtype()); });

  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (auto it : order) {
    const Tensor& t = it->second;
    header[it->first] = {{"dtype", file_dtype_name(t.dtype())},
                         {"shape", t.shape().vec()},
                         {"data_offsets", {offset, offset + t.nbytes()}}};
    offset += t.nbytes();
  }
  std::string text;
  try {
    text = header.dump();  // throws on names or values that are not UTF-8
  } catch (const json::exception& e) {
    throw Error(fmt::format("save_safetensors '{}': cannot encode the header: {}", path, e.what()));
  }
  text.append((8 - text.size() % 8) % 8, ' ');
  const uint64_t header_len = text.size();  // little-endian on this host (static_assert above)

  TempFile tmp(path);
  tmp.write(&header_len, sizeof header_len, "the header length");
  tmp.write(text.data(), text.size(), "the header");
  for (auto it : order) {
    if (it->second.numel() == 0) continue;
    const std::string what = fmt::format("tensor '{}'", it->first);
    // Row-major values of any view; device memory goes through the host, one
    // tensor at a time. An error here still removes the temporary file.
    Tensor c;
    std::vector<char> host;
    try {
      c = to_contiguous(it->second);
      if (!c.device().is_cpu()) {
        host.resize(c.nbytes());
        backend_of(c).copy_to_host(c, host.data());
      }
    } catch (const Error& e) {
      throw Error(fmt::format("save_safetensors '{}': cannot fetch {}: {}", path, what, e.what()));
    }
    if (host.empty())
      tmp.write(c.raw_data(), c.nbytes(), what);
    else
      tmp.write(host.data(), host.size(), what);
  }
  tmp.commit();
}

TensorFile load_safetensors(const std::string& path) {
  const std::string where = fmt::format("load_safetensors '{}'", path);
  InputFile in(path);
  DG_CHECK(in.size() >= 8, "{}: file is {} bytes, shorter than the 8-byte header length", where, in.size());
  uint64_t header_len = 0;
  in.read_at(&header_len, 8, 0, "the header length");
  DG_CHECK(header_len <= kMaxHeaderBytes, "{}: header length {} exceeds the limit of {} bytes", where, header_len,
           kMaxHeaderBytes);
  DG_CHECK(header_len <= in.size() - 8, "{}: header length {} runs past the end of the file ({} bytes)", where,
           header_len, in.size());
  std::string text(header_len, '\0');
  in.read_at(text.data(), header_len, 8, "the header");
  const json header = parse_header(where, text);

  const uint64_t data_start = 8 + header_len, data_size = in.size() - data_start;
  const size_t n_tensors = header.size() - header.count("__metadata__");
  DG_CHECK(n_tensors <= kMaxTensors, "{}: header lists {} tensors, more than the limit of {}", where, n_tensors,
           kMaxTensors);
  TensorFile out;
  std::vector<Entry> entries;
  for (const auto& [key, value] : header.items()) {
    if (key == "__metadata__")
      out.metadata = parse_metadata(where, value);
    else
      entries.push_back(parse_entry(where, key, value, data_size));
  }
  check_layout(where, entries, data_size);

  for (const Entry& e : entries) {
    Tensor t = empty(e.shape, {e.dtype});
    in.read_at(t.raw_data(), e.end - e.begin, data_start + e.begin, fmt::format("tensor '{}'", excerpt(e.name)));
    if (e.dtype == DType::b8) {  // any other byte in a bool is undefined behaviour
      const auto* bytes = static_cast<const unsigned char*>(t.raw_data());
      for (int64_t i = 0; i < t.numel(); ++i)
        DG_CHECK(bytes[i] <= 1, "{}: tensor '{}': BOOL element {} has byte value {}, must be 0 or 1", where,
                 excerpt(e.name), i, bytes[i]);
    }
    out.tensors.emplace(e.name, std::move(t));
  }
  return out;
}

void load_into(const TensorFile& f, const NamedTensors& targets, bool strict, const std::string& path_for_errors) {
  const std::string where = fmt::format("load_into '{}'", path_for_errors);
  std::vector<std::string> missing, unexpected;
  for (const auto& [name, t] : targets)
    if (!f.tensors.contains(name)) missing.push_back(name);
  for (const auto& [name, t] : f.tensors)
    if (!targets.contains(name)) unexpected.push_back(name);
  DG_CHECK(!strict || (missing.empty() && unexpected.empty()),
           "{}: strict load: missing from the file: [{}]; unexpected in the file: [{}]", where, quoted_list(missing),
           quoted_list(unexpected));

  // Check every pair before writing any, so a failed load changes nothing.
  std::vector<std::pair<const Tensor*, const Tensor*>> pairs;  // (source, target)
  for (const auto& [name, src] : f.tensors) {
    auto it = targets.find(name);
    if (it == targets.end()) continue;
    const Tensor& dst = it->second;
    DG_CHECK(dst.defined(), "{}: tensor '{}': the target is undefined", where, name);
    DG_CHECK(src.shape() == dst.shape() && src.dtype() == dst.dtype(),
             "{}: tensor '{}': the file has shape {} dtype {}, the target has shape {} dtype {}", where, name,
             src.shape(), src.dtype(), dst.shape(), dst.dtype());
    pairs.emplace_back(&src, &dst);
  }
  for (const auto& [src, dst] : pairs) {
    if (dst->numel() == 0) continue;
    const Tensor on_device = to_device(*src, dst->device());
    backend_of(*dst).copy(on_device, *dst);  // dst may be a strided view
    dst->bump_version();                     // an in-place write, as far as autograd is concerned
  }
}

}  // namespace dg::nn
