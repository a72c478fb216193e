// safetensors: round trips of every dtype, atomic saves, malformed files (each
// hand-crafted byte by byte), load_into, and interoperability with Python
// (json + numpy reading our files, PyTorch writing files we read).
#include "nn/safetensors.h"

#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "tensor/backend.h"
#include "tensor/creation.h"
#include "testing.h"

namespace dg::nn {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::string read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(f.good()) << path;
}

// A file from a header text and data bytes; `header_len` overrides N.
std::string file_bytes(const std::string& header, const std::string& data = "",
                       uint64_t header_len = std::numeric_limits<uint64_t>::max()) {
  const uint64_t n = header_len == std::numeric_limits<uint64_t>::max() ? header.size() : header_len;
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);  // little-endian u64
  return out + header + data;
}

// The raw row-major bytes of a tensor (bit-exact comparison, NaN included).
std::string value_bytes(const Tensor& t) {
  Tensor c = to_contiguous(t);
  return {static_cast<const char*>(c.raw_data()), c.nbytes()};
}

// Each test gets its own directory under the system temp dir, removed after.
class Safetensors : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* test = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    dir_ = fs::temp_directory_path() / fmt::format("dg_safetensors_{}_{}", ::getpid(), test);
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  std::vector<std::string> dir_entries() const {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir_)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }
  fs::path dir_;
};

NamedTensors every_dtype() {
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  return {
      {"f32", from_vector<float>({1.5f, -0.0f, 3e-45f, 1e38f, -7.25f, 0.1f}, {2, 3})},
      {"f64", from_vector<double>({nan, -inf, 1e-310, 1.0 / 3.0}, {2, 2})},
      {"i64", from_vector<int64_t>({INT64_MIN, -1, 0, INT64_MAX}, {4})},
      {"i32", from_vector<int32_t>({INT32_MIN, 42, INT32_MAX}, {3, 1})},
      {"b8", from_vector<bool>({true, false, false, true, true}, {5})},
      {"scalar", scalar_tensor(2.5, {DType::f64})},
      {"empty", zeros({0, 4})},
      {"empty_i64", zeros({3, 0, 2}, {DType::i64})},
      {"transposed", transpose(reshape(arange(6, {DType::f32}), {2, 3}), 0, 1)},
      {"strided", as_strided(arange(10, {DType::i32}), {2, 2}, {4, 2}, 1)},  // {{1,3},{5,7}}
  };
}

TEST_F(Safetensors, RoundTripEveryDtypeBitExact) {
  NamedTensors in = every_dtype();
  ASSERT_FALSE(in["transposed"].is_contiguous());
  ASSERT_FALSE(in["strided"].is_contiguous());
  save_safetensors(path("a.safetensors"), in);
  TensorFile f = load_safetensors(path("a.safetensors"));
  ASSERT_EQ(f.tensors.size(), in.size());
  EXPECT_TRUE(f.metadata.empty());
  for (const auto& [name, t] : in) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(f.tensors.contains(name));
    const Tensor& got = f.tensors.at(name);
    EXPECT_EQ(got.shape(), t.shape());
    EXPECT_EQ(got.dtype(), t.dtype());
    EXPECT_TRUE(got.is_contiguous());
    EXPECT_EQ(value_bytes(got), value_bytes(t));
  }
  EXPECT_EQ(f.tensors.at("transposed").to_vector<float>(), (std::vector<float>{0, 3, 1, 4, 2, 5}));
  EXPECT_EQ(f.tensors.at("strided").to_vector<int32_t>(), (std::vector<int32_t>{1, 3, 5, 7}));
  EXPECT_EQ(f.tensors.at("scalar").dim(), 0);
}

TEST_F(Safetensors, WrittenLayoutFollowsTheSpec) {
  save_safetensors(path("a.safetensors"), every_dtype(), {{"k", "v"}});
  const std::string bytes = read_bytes(path("a.safetensors"));
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ(n % 8, 0u);
  json header = json::parse(bytes.substr(8, n));
  EXPECT_EQ(header["__metadata__"], json({{"k", "v"}}));
  EXPECT_EQ(header["f32"]["dtype"], "F32");
  EXPECT_EQ(header["b8"]["dtype"], "BOOL");
  EXPECT_EQ(header["scalar"]["shape"], json::array());
  uint64_t total = 0;
  for (auto& [name, e] : header.items()) {
    if (name == "__metadata__") continue;
    const uint64_t begin = e["data_offsets"][0], end = e["data_offsets"][1];
    const uint64_t item = e["dtype"] == "F64" || e["dtype"] == "I64" ? 8 : e["dtype"] == "BOOL" ? 1 : 4;
    EXPECT_EQ(begin % item, 0u) << name << " is not aligned";
    total += end - begin;
  }
  EXPECT_EQ(bytes.size(), 8 + n + total);
}

TEST_F(Safetensors, MetadataRoundTrip) {
  const Metadata meta{{"format", "pt"}, {"empty", ""}, {"unicode", "ß→✓"}, {"json", "{\"step\": 10}"}};
  save_safetensors(path("m.safetensors"), {{"w", ones({2})}}, meta);
  TensorFile f = load_safetensors(path("m.safetensors"));
  EXPECT_EQ(f.metadata, meta);
  save_safetensors(path("none.safetensors"), {}, meta);  // metadata and no tensors
  EXPECT_EQ(load_safetensors(path("none.safetensors")).metadata, meta);
  EXPECT_TRUE(load_safetensors(path("none.safetensors")).tensors.empty());
}

TEST_F(Safetensors, SaveRejectsBadInput) {
  EXPECT_DG_ERROR(save_safetensors(path("r.safetensors"), {{"__metadata__", ones({1})}}), "r.safetensors",
                  "'__metadata__' is reserved");
  EXPECT_DG_ERROR(save_safetensors(path("u.safetensors"), {{"w", Tensor()}}), "u.safetensors", "'w'", "undefined");
  EXPECT_DG_ERROR(save_safetensors(path("no/such/dir/x.safetensors"), {{"w", ones({1})}}), "x.safetensors",
                  "cannot create temporary file", "No such file or directory");
  EXPECT_TRUE(dir_entries().empty());
}

// --- atomicity ----------------------------------------------------------------

// A real write failure in the middle of the data: RLIMIT_FSIZE makes write()
// fail with EFBIG past 4 KiB (SIGXFSZ ignored). Works as root, unlike
// read-only directories.
TEST_F(Safetensors, FailedWriteLeavesOldFileAndNoTempFile) {
  const std::string p = path("ckpt.safetensors");
  save_safetensors(p, {{"w", arange(8, {DType::f32})}});
  const std::string old_bytes = read_bytes(p);

  rlimit old_limit{};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old_limit), 0);
  rlimit small = old_limit;
  small.rlim_cur = 4096;
  auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
  std::string message;
  try {
    save_safetensors(p, {{"w", zeros({1 << 18})}});  // 1 MiB of data
  } catch (const Error& e) {
    message = e.what();
  }
  ::setrlimit(RLIMIT_FSIZE, &old_limit);
  std::signal(SIGXFSZ, old_handler);

  EXPECT_NE(message.find(p), std::string::npos) << message;
  EXPECT_NE(message.find("tensor 'w'"), std::string::npos) << message;
  EXPECT_NE(message.find("File too large"), std::string::npos) << message;
  EXPECT_EQ(read_bytes(p), old_bytes);
  EXPECT_EQ(dir_entries(), std::vector<std::string>{"ckpt.safetensors"});  // no temp file left
  EXPECT_EQ(load_safetensors(p).tensors.at("w").to_vector<float>(), (std::vector<float>{0, 1, 2, 3, 4, 5, 6, 7}));
}

// A failure that is not an I/O error, after the header and a first tensor are
// written: a tensor claiming a device with no backend (fetching it throws).
TEST_F(Safetensors, ExceptionMidWriteLeavesOldFileAndNoTempFile) {
  bool cuda_available = true;
  try {
    backend_for(Device::cuda());
  } catch (const Error&) {
    cuda_available = false;
  }
  if (cuda_available) GTEST_SKIP() << "needs a build without a CUDA backend";
  const std::string p = path("ckpt.safetensors");
  save_safetensors(p, {{"w", ones({3})}});
  const std::string old_bytes = read_bytes(p);
  Tensor bad = zeros({4});
  bad.storage().device = Device::cuda();  // freed through storage().backend (the CPU's) as usual
  EXPECT_DG_ERROR(save_safetensors(p, {{"a_first", zeros({100}, {DType::f64})}, {"z_bad", bad}}), p.c_str(),
                  "cannot fetch tensor 'z_bad'", "cuda");
  EXPECT_EQ(read_bytes(p), old_bytes);
  EXPECT_EQ(dir_entries(), std::vector<std::string>{"ckpt.safetensors"});
}

// The target is replaced by rename(), never rewritten in place: a hard link to
// the old file still sees the complete old contents, and the new inode at the
// path holds the complete new file.
TEST_F(Safetensors, SaveReplacesTargetByRename) {
  const std::string p = path("ckpt.safetensors"), link = path("old.link");
  save_safetensors(p, {{"w", full({1000}, 1.0)}});
  fs::create_hard_link(p, link);
  struct stat before {};
  ASSERT_EQ(::stat(p.c_str(), &before), 0);
  save_safetensors(p, {{"w", full({1000}, 2.0)}, {"b", zeros({2})}});
  struct stat after {};
  ASSERT_EQ(::stat(p.c_str(), &after), 0);
  EXPECT_NE(before.st_ino, after.st_ino);
  EXPECT_EQ(load_safetensors(link).tensors.at("w").to_vector<float>(), std::vector<float>(1000, 1.0f));
  TensorFile now = load_safetensors(p);
  EXPECT_EQ(now.tensors.at("w").to_vector<float>(), std::vector<float>(1000, 2.0f));
  EXPECT_EQ(now.tensors.size(), 2u);
  EXPECT_EQ(dir_entries(), (std::vector<std::string>{"ckpt.safetensors", "old.link"}));
}

// --- malformed files ---------------------------------------------------------

struct Malformed {
  std::string name;   // file name, also the trace label
  std::string bytes;  // the whole file
  std::vector<std::string> pieces;  // the error must contain each (and the path)
};

std::string f32_entry(const std::string& name, const std::string& shape, const std::string& offsets) {
  return fmt::format(R"("{}": {{"dtype": "F32", "shape": {}, "data_offsets": {}}})", name, shape, offsets);
}

std::vector<Malformed> malformed_files() {
  const std::string d8(8, '\0'), d24(24, '\0');
  const std::string ok_w = f32_entry("w", "[2]", "[0, 8]");
  return {
      {"short.st", "abc", {"3 bytes", "shorter than the 8-byte header length"}},
      {"huge_header.st", file_bytes("{}", "", uint64_t{1} << 62), {"header length 4611686018427387904", "limit"}},
      {"header_past_eof.st", file_bytes("{\"a\"", "", 100), {"header length 100", "past the end of the file"}},
      {"bad_json.st", file_bytes("{\"w\": {\"dtype\": "), {"header is not valid JSON"}},
      {"bad_utf8.st", file_bytes("{\"w\xff\": 1}"), {"header is not valid JSON"}},
      {"array.st", file_bytes("[1, 2]"), {"header must be a JSON object", "array"}},
      {"duplicate.st", file_bytes("{" + ok_w + ", " + ok_w + "}", d8), {"'w'", "more than once"}},
      {"entry_not_object.st", file_bytes(R"({"w": [1]})"), {"tensor 'w'", "entry must be a JSON object"}},
      {"no_offsets.st", file_bytes(R"({"w": {"dtype": "F32", "shape": [2]}})", d8),
       {"tensor 'w'", "missing field 'data_offsets'"}},
      {"no_dtype.st", file_bytes(R"({"w": {"shape": [2], "data_offsets": [0, 8]}})", d8),
       {"tensor 'w'", "missing field 'dtype'"}},
      {"dtype_number.st", file_bytes(R"({"w": {"dtype": 4, "shape": [2], "data_offsets": [0, 8]}})", d8),
       {"tensor 'w'", "'dtype' must be a string"}},
      {"unknown_dtype.st", file_bytes(R"({"w": {"dtype": "F33", "shape": [2], "data_offsets": [0, 8]}})", d8),
       {"tensor 'w'", "unknown dtype 'F33'"}},
      {"f16.st", file_bytes(R"({"h": {"dtype": "F16", "shape": [4], "data_offsets": [0, 8]}})", d8),
       {"tensor 'h'", "dtype 'F16' is unsupported"}},
      {"shape_string.st", file_bytes("{" + f32_entry("w", "\"2\"", "[0, 8]") + "}", d8),
       {"tensor 'w'", "'shape' must be an array"}},
      {"negative_dim.st", file_bytes("{" + f32_entry("w", "[2, -2]", "[0, 8]") + "}", d8),
       {"tensor 'w'", "'shape'[1] is -2", "non-negative"}},
      {"float_dim.st", file_bytes("{" + f32_entry("w", "[2.5]", "[0, 8]") + "}", d8),
       {"tensor 'w'", "'shape'[0] must be an integer"}},
      {"nine_dims.st", file_bytes("{" + f32_entry("w", "[1,1,1,1,1,1,1,1,2]", "[0, 8]") + "}", d8),
       {"tensor 'w'", "9 dims", "at most 8"}},
      {"shape_overflow.st",
       file_bytes("{" + f32_entry("w", "[4294967296, 4294967296, 0]", "[0, 0]") + "}"),
       {"tensor 'w'", "overflows"}},
      {"size_mismatch.st", file_bytes("{" + f32_entry("w", "[2, 3]", "[0, 20]") + "}", std::string(20, '\0')),
       {"tensor 'w'", "needs 24 bytes", "span 20"}},
      {"offsets_three.st", file_bytes("{" + f32_entry("w", "[2]", "[0, 4, 8]") + "}", d8),
       {"tensor 'w'", "'data_offsets' must be [begin, end]"}},
      {"negative_offset.st", file_bytes("{" + f32_entry("w", "[2]", "[-8, 0]") + "}", d8),
       {"tensor 'w'", "'data_offsets' begin is -8"}},
      {"begin_after_end.st", file_bytes("{" + f32_entry("w", "[0]", "[8, 0]") + "}", d8),
       {"tensor 'w'", "begin > end"}},
      {"beyond_file.st", file_bytes("{" + f32_entry("w", "[4]", "[0, 16]") + "}", d8),
       {"tensor 'w'", "run past the data section of 8 bytes"}},
      {"overlap.st",
       file_bytes("{" + f32_entry("a", "[2]", "[0, 8]") + ", " + f32_entry("b", "[2]", "[4, 12]") + "}",
                  std::string(12, '\0')),
       {"tensor 'b'", "overlap tensor 'a'"}},
      {"gap.st", file_bytes("{" + f32_entry("w", "[2]", "[8, 16]") + "}", std::string(16, '\0')),
       {"bytes [0, 8)", "not covered by any tensor", "'w'"}},
      {"trailing.st", file_bytes("{" + ok_w + "}", d24), {"16 trailing bytes"}},
      {"bool_byte.st", file_bytes(R"({"m": {"dtype": "BOOL", "shape": [2], "data_offsets": [0, 2]}})", "\x01\x02"),
       {"tensor 'm'", "byte value 2"}},
      {"metadata_number.st", file_bytes(R"({"__metadata__": {"k": 1}})"),
       {"'__metadata__' key 'k' must be a string", "number"}},
      {"metadata_array.st", file_bytes(R"({"__metadata__": ["k"]})"), {"'__metadata__' must be an object"}},
  };
}

TEST_F(Safetensors, MalformedFilesAreRejectedWithNamedField) {
  const std::vector<Malformed> cases = malformed_files();
  ASSERT_GE(cases.size(), 12u);
  for (const Malformed& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string p = path(c.name);
    write_bytes(p, c.bytes);
    try {
      load_safetensors(p);
      ADD_FAILURE() << "expected dg::Error";
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(p), std::string::npos) << msg;
      for (const std::string& piece : c.pieces)
        EXPECT_NE(msg.find(piece), std::string::npos) << "message: " << msg << "\n  missing: " << piece;
    }
  }
}

TEST_F(Safetensors, MissingTruncatedAndDirectoryFiles) {
  EXPECT_DG_ERROR(load_safetensors(path("absent.st")), "absent.st", "cannot open", "No such file or directory");
  const std::string dir = dir_.string();
  EXPECT_DG_ERROR(load_safetensors(dir), dir.c_str(), "not a regular file");
  // A good file cut short: the last tensor's range now runs past the data.
  const std::string p = path("cut.safetensors");
  save_safetensors(p, {{"a", zeros({4}, {DType::f64})}, {"b", ones({3})}});
  const std::string bytes = read_bytes(p);
  write_bytes(p, bytes.substr(0, bytes.size() - 4));
  EXPECT_DG_ERROR(load_safetensors(p), p.c_str(), "tensor 'b'", "run past the data section");
  write_bytes(p, bytes.substr(0, 12));  // cut inside the header
  EXPECT_DG_ERROR(load_safetensors(p), p.c_str(), "past the end of the file");
}

// --- load_into ---------------------------------------------------------------

TensorFile two_tensors() {
  return {{{"w", from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3})}, {"b", from_vector<int64_t>({7, 8})}}, {}};
}

TEST_F(Safetensors, LoadIntoCopiesInPlaceAndBumpsVersion) {
  Tensor w = zeros({3, 2});
  Tensor w_t = transpose(w, 0, 1);  // a strided target view of shape (2, 3)
  Tensor b = zeros({2}, {DType::i64});
  const uint32_t v0 = b.version();
  load_into(two_tensors(), {{"w", w_t}, {"b", b}}, /*strict=*/true, "f.st");
  EXPECT_EQ(w.to_vector<float>(), (std::vector<float>{1, 4, 2, 5, 3, 6}));
  EXPECT_EQ(b.to_vector<int64_t>(), (std::vector<int64_t>{7, 8}));
  EXPECT_GT(b.version(), v0);
}

TEST_F(Safetensors, LoadIntoStrictNamesEveryProblem) {
  Tensor w = zeros({2, 3}), b = zeros({2}, {DType::i64});
  EXPECT_DG_ERROR(load_into(two_tensors(), {{"w", w}, {"b", b}, {"c", zeros({1})}}, true, "ckpt.st"), "ckpt.st",
                  "missing from the file: ['c']", "unexpected in the file: []");
  EXPECT_DG_ERROR(load_into(two_tensors(), {{"w", w}}, true, "ckpt.st"), "ckpt.st", "unexpected in the file: ['b']");
  EXPECT_DG_ERROR(load_into(two_tensors(), {{"w", zeros({3, 2})}, {"b", b}}, true, "ckpt.st"), "ckpt.st",
                  "tensor 'w'", "shape [2, 3] dtype f32", "shape [3, 2] dtype f32");
  EXPECT_DG_ERROR(load_into(two_tensors(), {{"w", w}, {"b", zeros({2}, {DType::i32})}}, true, "ckpt.st"), "ckpt.st",
                  "tensor 'b'", "dtype i64", "dtype i32");
  // Nothing was written by any failed load ('b' sorts first and is fine in the
  // shape-mismatch case, yet stays zero).
  EXPECT_EQ(w.to_vector<float>(), std::vector<float>(6, 0.0f));
  EXPECT_EQ(b.to_vector<int64_t>(), (std::vector<int64_t>{0, 0}));
  EXPECT_EQ(b.version(), 0u);
}

TEST_F(Safetensors, LoadIntoNonStrictIgnoresExtrasAndMissing) {
  Tensor w = zeros({2, 3}), c = full({2}, 9.0);
  load_into(two_tensors(), {{"w", w}, {"c", c}}, /*strict=*/false, "ckpt.st");
  EXPECT_EQ(w.to_vector<float>(), (std::vector<float>{1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(c.to_vector<float>(), (std::vector<float>{9, 9}));
  EXPECT_DG_ERROR(load_into(two_tensors(), {{"w", zeros({6})}}, false, "ckpt.st"), "tensor 'w'", "[6]");
}

// --- Python interoperability -------------------------------------------------

bool python_has(const std::string& modules) {
  return std::system(("/usr/bin/python3 -c 'import " + modules + "' >/dev/null 2>&1").c_str()) == 0;
}

int run_interop(const std::string& args) {
  const std::string cmd =
      fmt::format("/usr/bin/python3 '{}/tests/parity/safetensors_interop.py' {}", DG_SOURCE_DIR, args);
  const int status = std::system(cmd.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// The tensors expected_from_cpp() in safetensors_interop.py recomputes.
NamedTensors interop_tensors() {
  std::vector<float> f32(12);
  std::vector<double> f64(12);
  std::vector<bool> mask(10);
  for (int i = 0; i < 12; ++i) f32[i] = static_cast<float>(i * 0.25 - 1.5), f64[i] = i / 3.0;
  for (int i = 0; i < 10; ++i) mask[i] = i % 3 == 0;
  return {
      {"f32_matrix", from_vector<float>(f32, {3, 4})},
      {"f64_cube", from_vector<double>(f64, {2, 3, 2})},
      {"i64_big", from_vector<int64_t>({-(int64_t{1} << 62), -1, 0, (int64_t{1} << 40) + 7, INT64_MAX})},
      {"i32_vec", from_vector<int32_t>({INT32_MIN, -7, 123456, INT32_MAX})},
      {"bool_mask", from_vector<bool>(mask, {2, 5})},
      {"scalar", scalar_tensor(3.5)},
      {"empty", zeros({0, 5})},
      {"transposed", transpose(reshape(arange(6, {DType::f64}), {2, 3}), 0, 1)},
  };
}

TEST_F(Safetensors, InteropCppToPython) {
  if (!python_has("numpy")) GTEST_SKIP() << "/usr/bin/python3 cannot import numpy (apt install python3-numpy)";
  const Metadata meta{{"producer", "dyngrad"}, {"note", "interop ✓"}};
  save_safetensors(path("cpp.safetensors"), interop_tensors(), meta);
  EXPECT_EQ(run_interop("check " + path("cpp.safetensors")), 0);
  // Negative control: one changed value must make the script fail.
  NamedTensors changed = interop_tensors();
  changed["i64_big"] = from_vector<int64_t>({-(int64_t{1} << 62), -1, 0, (int64_t{1} << 40) + 8, INT64_MAX});
  save_safetensors(path("changed.safetensors"), changed, meta);
  EXPECT_EQ(run_interop("check " + path("changed.safetensors") + " 2>/dev/null"), 3);  // 3: a value mismatch
}

TEST_F(Safetensors, InteropPythonToCpp) {
  if (!python_has("torch, numpy"))
    GTEST_SKIP() << "/usr/bin/python3 cannot import torch (apt install python3-torch); interop not checked";
  const std::string file = path("torch.safetensors"), expected_file = path("expected.json");
  ASSERT_EQ(run_interop("write " + file + " " + expected_file), 0);
  TensorFile f = load_safetensors(file);
  const json expected = json::parse(read_bytes(expected_file));
  EXPECT_EQ(f.metadata, expected["metadata"].get<Metadata>());
  ASSERT_EQ(f.tensors.size(), expected["tensors"].size());
  ASSERT_GE(f.tensors.size(), 5u);
  for (const auto& [name, e] : expected["tensors"].items()) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(f.tensors.contains(name));
    const Tensor& t = f.tensors.at(name);
    EXPECT_EQ(t.shape(), Shape(e["shape"].get<std::vector<int64_t>>()));
    const std::map<std::string, DType> dtypes{
        {"F32", DType::f32}, {"F64", DType::f64}, {"I64", DType::i64}, {"I32", DType::i32}, {"BOOL", DType::b8}};
    EXPECT_EQ(t.dtype(), dtypes.at(e["dtype"]));
    const json& v = e["values"];
    ASSERT_EQ(static_cast<size_t>(t.numel()), v.size());
    switch (t.dtype()) {  // exact comparisons: f32 -> Python float -> JSON -> double -> f32 loses nothing
      case DType::f32: EXPECT_EQ(t.to_vector<float>(), v.get<std::vector<float>>()); break;
      case DType::f64: EXPECT_EQ(t.to_vector<double>(), v.get<std::vector<double>>()); break;
      case DType::i64: EXPECT_EQ(t.to_vector<int64_t>(), v.get<std::vector<int64_t>>()); break;
      case DType::i32: EXPECT_EQ(t.to_vector<int32_t>(), v.get<std::vector<int32_t>>()); break;
      case DType::b8: EXPECT_EQ(t.to_vector<bool>(), v.get<std::vector<bool>>()); break;
    }
  }
  // The torch Linear's weights load into same-shaped targets (extras ignored).
  Tensor w = zeros({3, 4}), b = zeros({3});
  load_into(f, {{"linear.weight", w}, {"linear.bias", b}}, /*strict=*/false, file);
  EXPECT_EQ(w.to_vector<float>(), expected["tensors"]["linear.weight"]["values"].get<std::vector<float>>());
  EXPECT_EQ(value_bytes(f.tensors.at("weight_t")), value_bytes(transpose(w, 0, 1)));
}

}  // namespace
}  // namespace dg::nn
