// Hostile inputs for every reader: the safetensors reader, checkpoint
// metadata (and the model config it carries, through models::load_model),
// the idx reader and the text corpus. Each gets a dg::Error naming the file
// and the field, never a crash, a hang, unbounded memory or an unbounded
// message. The list in the README ("hostile inputs tried") is this file.
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>
#include <limits>
#include <string>

#include "data/fashion_mnist.h"
#include "data/text.h"
#include "models/factory.h"
#include "nn/checkpoint.h"
#include "nn/safetensors.h"
#include "testing.h"

using namespace dg;
namespace fs = std::filesystem;

namespace {

// Longest message any hostile input may produce here: names and values of
// the file are quoted through dg::excerpt (96 bytes each).
constexpr size_t kMaxMessage = 1000;

class TempDir {
 public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = fs::temp_directory_path() / fmt::format("dg_hostile_{}_{}_{}", getpid(), info->test_suite_name(),
                                                    info->name());
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(f.good()) << path;
}

// A safetensors file: little-endian u64 header length, header, data.
std::string st_file(const std::string& header, const std::string& data = "") {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
  return out + header + data;
}

std::string nested(size_t depth, const std::string& inner = "0") {
  return std::string(depth, '[') + inner + std::string(depth, ']');
}

// Runs `load` on `bytes` written to a file; expects a dg::Error with the path,
// every piece, and a bounded length. Returns the message.
template <class Load>
std::string expect_rejected(const TempDir& dir, const std::string& name, const std::string& bytes, Load load,
                            std::initializer_list<const char*> pieces) {
  const std::string p = dir.file(name);
  write_bytes(p, bytes);
  try {
    load(p);
    ADD_FAILURE() << name << ": expected dg::Error";
    return {};
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(p), std::string::npos) << name << ": " << msg;
    for (const char* piece : pieces) EXPECT_NE(msg.find(piece), std::string::npos) << name << ": " << msg;
    EXPECT_LE(msg.size(), kMaxMessage) << name << ": message of " << msg.size() << " bytes";
    return msg;
  }
}

auto load_st = [](const std::string& p) { nn::load_safetensors(p); };

std::string f32_entry(const std::string& name, const std::string& shape, const std::string& offsets) {
  return fmt::format(R"("{}": {{"dtype": "F32", "shape": {}, "data_offsets": {}}})", name, shape, offsets);
}

}  // namespace

// --- safetensors ---------------------------------------------------------------

TEST(HostileSafetensors, DeepNestingIsRejectedNotRecursedInto) {
  TempDir dir;
  constexpr size_t kDeep = 1'000'000;  // overflowed the stack when the error printed the value
  const char* why = "nests JSON arrays/objects more than 16 deep";
  expect_rejected(dir, "offsets.st", st_file("{" + f32_entry("w", "[2]", nested(kDeep)) + "}", std::string(8, '\0')),
                  load_st, {why});
  expect_rejected(dir, "shape.st", st_file("{" + f32_entry("w", nested(kDeep), "[0, 8]") + "}"), load_st, {why});
  expect_rejected(dir, "metadata.st", st_file(R"({"__metadata__": {"k": )" + nested(kDeep) + "}}"), load_st, {why});
  expect_rejected(dir, "root.st", st_file(nested(kDeep)), load_st, {why});
  expect_rejected(dir, "objects.st", st_file([] {
                    std::string s;
                    for (size_t i = 0; i < kDeep; ++i) s += R"({"a":)";
                    return s + "1" + std::string(kDeep, '}');
                  }()),
                  load_st, {why});
  // Unbalanced: the parse stops at the bound, before the end of the text.
  expect_rejected(dir, "unclosed.st", st_file(std::string(kDeep, '[')), load_st, {why});
  // Nesting within the bound reaches the field checks.
  expect_rejected(dir, "shallow.st", st_file("{" + f32_entry("w", "[[2]]", "[0, 8]") + "}", std::string(8, '\0')),
                  load_st, {"tensor 'w'", "'shape'[0] must be an integer, got array [2]"});
}

TEST(HostileSafetensors, HugeValuesAreQuotedBoundedAndEscaped) {
  TempDir dir;
  const std::string big(1'000'000, 'x');
  std::string msg = expect_rejected(dir, "name.st", st_file("{" + f32_entry(big, "[2]", "[0, 4]") + "}",
                                                            std::string(4, '\0')),
                                    load_st, {"tensor 'xxxx", "... (1000000 bytes)", "needs 8 bytes"});
  msg = expect_rejected(dir, "dim_string.st", st_file("{" + f32_entry("w", "[\"" + big + "\"]", "[0, 8]") + "}"),
                        load_st, {"'shape'[0] must be an integer, got string", "(1000002 bytes)"});
  std::string many = "[0";
  for (int i = 0; i < 200'000; ++i) many += ",0";
  expect_rejected(dir, "offsets_long.st", st_file("{" + f32_entry("w", "[2]", many + "]") + "}"), load_st,
                  {"'data_offsets' must be [begin, end]", "bytes)"});
  expect_rejected(dir, "dtype.st", st_file(R"({"w": {"dtype": ")" + big + R"(", "shape": [], "data_offsets": [0, 4]}})"),
                  load_st, {"unknown dtype 'xxx", "(1000000 bytes)"});
  expect_rejected(dir, "meta_key.st", st_file(R"({"__metadata__": {")" + big + R"(": 1}})"), load_st,
                  {"'__metadata__' key 'xxx", "must be a string"});
  // Control characters (an escape sequence, a newline) come out escaped.
  msg = expect_rejected(dir, "escape.st", st_file("{" + f32_entry("\\u001b[31mred\\nline", "[2]", "[0, 4]") + "}",
                                                  std::string(4, '\0')),
                        load_st, {"\\x1b[31mred\\nline"});
  EXPECT_EQ(msg.find('\x1b'), std::string::npos);
  EXPECT_EQ(msg.find('\n'), std::string::npos);
}

TEST(HostileSafetensors, OverflowingOffsetsAndDims) {
  TempDir dir;
  const std::string d8(8, '\0');
  const std::string u64max = "18446744073709551615", beyond_u64 = "18446744073709551616";
  expect_rejected(dir, "end_max.st", st_file("{" + f32_entry("w", "[2]", "[0, " + u64max + "]") + "}", d8), load_st,
                  {"run past the data section of 8 bytes"});
  expect_rejected(dir, "begin_max.st", st_file("{" + f32_entry("w", "[2]", "[" + u64max + ", 8]") + "}", d8), load_st,
                  {"begin > end"});
  expect_rejected(dir, "both_max.st", st_file("{" + f32_entry("w", "[0]", "[" + u64max + ", " + u64max + "]") + "}"),
                  load_st, {"run past the data section of 0 bytes"});
  expect_rejected(dir, "beyond_u64.st", st_file("{" + f32_entry("w", "[2]", "[0, " + beyond_u64 + "]") + "}", d8),
                  load_st, {"'data_offsets' end must be an integer, got number"});
  expect_rejected(dir, "dim_2_63.st", st_file("{" + f32_entry("w", "[9223372036854775808]", "[0, 8]") + "}", d8),
                  load_st, {"'shape'[0] = 9223372036854775808 is too large"});
  expect_rejected(dir, "dims_overflow.st", st_file("{" + f32_entry("w", "[0, 4611686018427387904, 4]", "[0, 0]") + "}"),
                  load_st, {"overflows 64-bit element counts"});
  expect_rejected(dir, "bytes_overflow.st",
                  st_file("{" + f32_entry("w", "[4611686018427387904]", "[0, 8]") + "}", d8), load_st,
                  {"overflows 64-bit byte counts"});
  expect_rejected(dir, "huge_claim.st", st_file("{" + f32_entry("w", "[1000000000, 1000]", "[0, 8]") + "}", d8),
                  load_st, {"needs 4000000000000 bytes"});
  expect_rejected(dir, "header_max.st", [] {
                    std::string s(8, '\xff');
                    return s + "{}";
                  }(),
                  load_st, {"header length 18446744073709551615 exceeds the limit"});
}

TEST(HostileSafetensors, TooManyTensors) {
  TempDir dir;
  std::string header = "{";
  for (int i = 0; i <= 100'000; ++i)
    header += fmt::format("{}\"t{}\":{{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}}", i ? "," : "", i);
  expect_rejected(dir, "many.st", st_file(header + "}"), load_st, {"header lists 100001 tensors", "limit of 100000"});
}

TEST(HostileSafetensors, NonRegularFilesAreRefusedWithoutBlocking) {
  TempDir dir;
  const std::string fifo = dir.file("fifo.st");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  EXPECT_DG_ERROR(nn::load_safetensors(fifo), fifo.c_str(), "not a regular file");  // used to wait for a writer
  EXPECT_DG_ERROR(nn::load_safetensors("/dev/zero"), "/dev/zero", "not a regular file");
  // and the refused file is closed (the constructor that refused it used to leak the descriptor)
  const auto open_fds = [] { return std::distance(fs::directory_iterator("/proc/self/fd"), fs::directory_iterator()); };
  const auto before = open_fds();
  for (int i = 0; i < 20; ++i) EXPECT_THROW(nn::load_safetensors("/dev/zero"), Error);
  EXPECT_EQ(open_fds(), before);
}

// --- checkpoint metadata and the model config -----------------------------------

namespace {

struct Empty : nn::Module {};

std::string checkpoint_with(const TempDir& dir, const std::string& name, nn::Metadata meta) {
  meta.emplace("format", "dyngrad-checkpoint-1");
  meta.emplace("has_optimizer", "0");
  const std::string p = dir.file(name);
  nn::save_safetensors(p, {}, meta);
  return p;
}

}  // namespace

TEST(HostileCheckpoint, MetadataNumbersAndLongValues) {
  TempDir dir;
  Empty m;
  for (const char* step : {"-1", "1e3", "", "99999999999999999999", " 5"}) {
    const std::string p = checkpoint_with(dir, "step.st", {{"step", step}});
    EXPECT_DG_ERROR(nn::load_checkpoint(p, m, nullptr), p.c_str(), "metadata 'step'", "is not an integer");
  }
  std::string p = checkpoint_with(dir, "step_max.st", {{"step", "18446744073709551615"}});
  EXPECT_DG_ERROR(nn::load_checkpoint(p, m, nullptr), "metadata 'step' = 18446744073709551615 is out of range");
  p = checkpoint_with(dir, "long_step.st", {{"step", std::string(1'000'000, '7') + "x"}});
  try {
    nn::load_checkpoint(p, m, nullptr);
    ADD_FAILURE() << "expected dg::Error";
  } catch (const Error& e) {
    EXPECT_LE(std::string(e.what()).size(), kMaxMessage);
  }
  p = dir.file("format.st");
  nn::save_safetensors(p, {}, {{"format", std::string(1'000'000, 'f')}, {"step", "1"}});
  EXPECT_DG_ERROR(nn::load_checkpoint(p, m, nullptr), "not a dyngrad checkpoint", "(1000000 bytes)");
  p = checkpoint_with(dir, "expect.st", {{"step", "1"}, {"model_config", std::string(1'000'000, 'c')}});
  EXPECT_DG_ERROR(nn::load_checkpoint(p, m, nullptr, {{"model_config", "{}"}}), "'model_config' is 'ccc",
                  "(1000000 bytes)");
  Generator gen(0);
  p = checkpoint_with(dir, "gen.st", {{"step", "1"}, {"g.seed", "12"}, {"g.offset", "-3"}});
  EXPECT_DG_ERROR(nn::get_generator(nn::load_checkpoint(p, m, nullptr), "g", gen, p), "'g.offset' = '-3'");
}

// The model config is JSON inside a metadata string: models::load_model must
// turn any of it into a dg::Error, never a crash.
TEST(HostileCheckpoint, ModelConfigJson) {
  TempDir dir;
  const std::string deep = nested(50'000);
  const std::string objects = [] {
    std::string s;
    for (int i = 0; i < 50'000; ++i) s += R"({"a":)";
    return s + "1" + std::string(50'000, '}');
  }();
  const std::string good_rest = R"("n_head": 1, "n_embd": 4, "block_size": 4, "vocab_size": 8, "dropout": 0.0,
                                   "tied_head": false, "seed": 1, "dtype": "f32")";
  const std::vector<std::pair<std::string, std::string>> configs = {
      {"deep_array", deep},
      {"deep_object", objects},
      {"deep_field", R"({"n_layer": )" + deep + ", " + good_rest + "}"},
      {"deep_object_field", R"({"n_layer": )" + objects + ", " + good_rest + "}"},
      {"not_json", std::string(1'000'000, '{')},
      {"string_field", R"({"n_layer": ")" + std::string(1'000'000, '1') + "\", " + good_rest + "}"},
      {"missing_fields", "{}"},
      {"unknown_kind_config", "null"},
  };
  for (const auto& [name, config] : configs) {
    SCOPED_TRACE(name);
    for (const char* kind : {"dense", "mod", "mob", "moe", "mor"}) {
      const std::string p =
          checkpoint_with(dir, name + ".st", {{"step", "1"}, {"model_kind", kind}, {"model_config", config}});
      try {
        models::load_model(p);
        ADD_FAILURE() << kind << ": expected dg::Error";
      } catch (const Error& e) {
        EXPECT_LE(std::string(e.what()).size(), kMaxMessage) << kind;
      }
    }
  }
  const std::string p = checkpoint_with(dir, "kind.st", {{"step", "1"}, {"model_kind", std::string(500, 'k')},
                                                         {"model_config", "{}"}});
  EXPECT_THROW(models::load_model(p), Error);
}

// --- idx -----------------------------------------------------------------------

namespace {

std::string be32(uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8), static_cast<char>(v)};
}

auto load_images = [](const std::string& p) { data::read_idx_images(p); };

}  // namespace

TEST(HostileIdx, HeaderClaimsAndOverflows) {
  TempDir dir;
  // count 0 with huge rows and cols: the rows*cols product used to overflow int64
  expect_rejected(dir, "zero_count.idx", be32(0x803) + be32(0) + be32(0xffffffff) + be32(0xffffffff), load_images,
                  {"'count' = 0, 'rows' = 4294967295", "more than the limit of 1073741824 values"});
  expect_rejected(dir, "max_count.idx", be32(0x803) + be32(0xffffffff) + be32(28) + be32(28), load_images,
                  {"'count' = 4294967295", "more than the limit"});
  expect_rejected(dir, "claims_more.idx", be32(0x803) + be32(1000) + be32(28) + be32(28) + std::string(100, 'p'),
                  load_images, {"announces 784000 values but the file has 100 bytes of data (truncated)"});
  expect_rejected(dir, "zero_rows.idx", be32(0x803) + be32(2) + be32(0) + be32(28), load_images,
                  {"'rows' is 0, must be positive"});
  expect_rejected(dir, "empty.idx", "", load_images, {"too short for the magic number (0 bytes)"});
  expect_rejected(dir, "magic.idx", be32(0x0d03) + be32(1), load_images, {"magic number is 0x00000d03"});
  EXPECT_DG_ERROR(data::read_idx(dir.file("any"), 4), "reads 1 to 3 dims, asked for 4");
  EXPECT_DG_ERROR(data::read_idx(dir.file("any"), 0), "reads 1 to 3 dims, asked for 0");
}

// A small gzip file that decompresses to 64 MiB: reading stops one byte past
// the 784 values its header announces.
TEST(HostileIdx, GzipBombStopsAtTheAnnouncedSize) {
  TempDir dir;
  const std::string p = dir.file("bomb.idx.gz");
  gzFile f = gzopen(p.c_str(), "wb9");
  ASSERT_NE(f, nullptr);
  const std::string head = be32(0x803) + be32(1) + be32(28) + be32(28);
  gzwrite(f, head.data(), static_cast<unsigned>(head.size()));
  const std::string zeros(1 << 20, '\0');
  for (int i = 0; i < 64; ++i) gzwrite(f, zeros.data(), static_cast<unsigned>(zeros.size()));
  ASSERT_EQ(gzclose(f), Z_OK);
  ASSERT_LT(fs::file_size(p), 1u << 20);
  EXPECT_DG_ERROR(data::read_idx_images(p), p.c_str(), "trailing bytes");
}

TEST(HostileIdx, NonRegularFiles) {
  TempDir dir;
  const std::string fifo = dir.file("fifo.idx");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  EXPECT_DG_ERROR(data::read_idx_images(fifo), fifo.c_str(), "not a regular file");
  EXPECT_DG_ERROR(data::read_idx_labels("/dev/zero"), "/dev/zero", "not a regular file");
}

// --- text corpus ---------------------------------------------------------------

TEST(HostileText, NonRegularFilesAreRefused) {
  TempDir dir;
  const std::string fifo = dir.file("fifo.txt");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  EXPECT_DG_ERROR(data::TextCorpus::from_file(fifo), fifo.c_str(), "not a regular file");  // used to block
  EXPECT_DG_ERROR(data::TextCorpus::from_file("/dev/zero"), "not a regular file");         // used to read forever
}

TEST(HostileText, WindowSizesAtTheLimitsOfInt64) {
  auto c = data::TextCorpus::from_string(std::string(100, 'a'), 0.1);
  Generator gen(0);
  const int64_t big = std::numeric_limits<int64_t>::max();
  EXPECT_DG_ERROR(c.sample(data::Split::train, 1, big, gen), "train split is too small");  // T + 1 used to overflow
  EXPECT_DG_ERROR(c.num_eval_batches(1, big), "too small");
  EXPECT_DG_ERROR(c.sample(data::Split::train, big, 2, gen), "exceeds the limit of 1073741824 tokens");
  EXPECT_DG_ERROR(c.eval_batch(0, big / 2, 3), "exceeds the limit");
  EXPECT_DG_ERROR(c.eval_batch(big, 1, 8), "eval batch", "out of range");
  EXPECT_DG_ERROR(c.text(data::Split::train, -1), "max_bytes must be >= 0");
  EXPECT_EQ(c.text(data::Split::train, big).size(), 90u);
}
