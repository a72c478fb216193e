// data/: byte tokenizer, text corpus, synthetic arithmetic corpus, idx reader.
#include <zlib.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <unistd.h>
#include <vector>

#include "data/fashion_mnist.h"
#include "data/synthetic.h"
#include "data/text.h"
#include "data/tokenizer.h"
#include "testing.h"

namespace fs = std::filesystem;
using namespace dg;
using data::Split;

namespace {

// A fresh folder per test, removed afterwards.
class TempDir {
 public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = fs::temp_directory_path() /
            fmt::format("dg_test_data_{}_{}_{}", getpid(), info->test_suite_name(), info->name());
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

// Row b of a (B,T) i64 tensor as a string of bytes.
std::string row_text(const Tensor& t, int64_t b) {
  std::vector<int64_t> v = t.to_vector<int64_t>();
  int64_t T = t.size(1);
  std::vector<int64_t> row(v.begin() + b * T, v.begin() + (b + 1) * T);
  return data::decode(row);
}

// The T+1 bytes a batch row covers: x[b] then the last target y[b][T-1].
std::string window_text(const data::Batch& batch, int64_t b) {
  return row_text(batch.x, b) + row_text(batch.y, b).back();
}

}  // namespace

// ---------------------------------------------------------------- tokenizer

TEST(Tokenizer, AsciiRoundTrip) {
  std::vector<int64_t> ids = data::encode("12+7=19\n");
  EXPECT_EQ(ids, (std::vector<int64_t>{'1', '2', '+', '7', '=', '1', '9', '\n'}));
  EXPECT_EQ(data::decode(ids), "12+7=19\n");
  EXPECT_TRUE(data::encode("").empty());
}

TEST(Tokenizer, Utf8RoundTrip) {
  std::string s = "h\xC3\xA9llo \xE4\xB8\x96\xE7\x95\x8C \xF0\x9F\x99\x82";  // "héllo 世界 🙂"
  std::vector<int64_t> ids = data::encode(s);
  ASSERT_EQ(ids.size(), s.size());
  EXPECT_EQ(ids[1], 0xC3);  // bytes, not signed chars
  EXPECT_EQ(ids[2], 0xA9);
  EXPECT_EQ(ids.back(), 0x82);
  EXPECT_EQ(data::decode(ids), s);
}

TEST(Tokenizer, AllByteValuesRoundTrip) {
  std::string s;
  for (int i = 0; i < 256; ++i) s.push_back(static_cast<char>(i));
  std::vector<int64_t> ids = data::encode(s);
  ASSERT_EQ(ids.size(), 256u);
  for (int i = 0; i < 256; ++i) EXPECT_EQ(ids[i], i);
  EXPECT_EQ(data::decode(ids), s);
  EXPECT_EQ(data::kVocabSize, 256);
}

TEST(Tokenizer, DecodeRejectsOutOfRange) {
  EXPECT_DG_ERROR(data::decode({65, 66, 256}), "token 256", "position 2");
  EXPECT_DG_ERROR(data::decode({-1}), "token -1", "position 0");
}

// ---------------------------------------------------------------- text corpus

// Train part: lowercase letters, val part: digits, so a window shows its split.
std::string letters_then_digits(int64_t n_train, int64_t n_val) {
  std::string s;
  for (int64_t i = 0; i < n_train; ++i) s.push_back(static_cast<char>('a' + (i * 7 + i / 26) % 26));
  for (int64_t i = 0; i < n_val; ++i) s.push_back(static_cast<char>('0' + (i * 3 + i / 10) % 10));
  return s;
}

TEST(TextCorpus, SplitSizes) {
  std::string s = letters_then_digits(900, 100);
  auto c = data::TextCorpus::from_string(s, 0.1);
  EXPECT_EQ(c.size(Split::train), 900);
  EXPECT_EQ(c.size(Split::val), 100);
  EXPECT_EQ(c.bytes(Split::train) + c.bytes(Split::val), s);
  EXPECT_EQ(c.text(Split::val, 5), s.substr(900, 5));
  EXPECT_EQ(c.text(Split::train, 5000), c.bytes(Split::train));
  EXPECT_EQ(data::TextCorpus::from_string(s, 0.0).size(Split::val), 0);
  EXPECT_DG_ERROR(data::TextCorpus::from_string(s, 1.5), "val_fraction");
}

TEST(TextCorpus, SampleWindowsStayInTheirSplit) {
  auto c = data::TextCorpus::from_string(letters_then_digits(900, 100), 0.1);
  Generator gen(3);
  for (Split split : {Split::train, Split::val}) {
    data::Batch b = c.sample(split, 16, 20, gen);
    ASSERT_EQ(b.x.shape(), (Shape{16, 20}));
    ASSERT_EQ(b.y.shape(), (Shape{16, 20}));
    ASSERT_EQ(b.answer_level.shape(), (Shape{16, 20}));
    EXPECT_EQ(b.x.dtype(), DType::i64);
    EXPECT_EQ(b.y.dtype(), DType::i64);
    for (int64_t r = 0; r < 16; ++r) {
      std::string x = row_text(b.x, r), y = row_text(b.y, r);
      EXPECT_EQ(x.substr(1), y.substr(0, 19)) << "y is x shifted by one";
      EXPECT_NE(c.bytes(split).find(window_text(b, r)), std::string::npos) << "row " << r << " not inside the split";
    }
    for (int64_t v : b.answer_level.to_vector<int64_t>()) EXPECT_EQ(v, -1);
  }
}

TEST(TextCorpus, SampleReachesEveryStart) {
  // 20 distinct train bytes and T=4: starts 0..15 (the last window ends on the last byte).
  auto c = data::TextCorpus::from_string("abcdefghijklmnopqrst0123", 4.0 / 24.0);
  ASSERT_EQ(c.size(Split::train), 20);
  Generator gen(11);
  data::Batch b = c.sample(Split::train, 2000, 4, gen);
  std::vector<int64_t> x = b.x.to_vector<int64_t>();
  std::map<int64_t, int64_t> count;
  for (int64_t r = 0; r < 2000; ++r) ++count[x[r * 4] - 'a'];
  ASSERT_EQ(count.size(), 16u);
  EXPECT_EQ(count.begin()->first, 0);
  EXPECT_EQ(count.rbegin()->first, 15);
  for (auto [start, n] : count) EXPECT_GT(n, 70) << "start " << start;  // expected 125 each
}

TEST(TextCorpus, SampleIsDeterministicPerSeed) {
  auto c = data::TextCorpus::from_string(letters_then_digits(5000, 500), 0.1);
  Generator g1(42), g2(42), g3(43);
  Tensor a = c.sample(Split::train, 8, 32, g1).x, b = c.sample(Split::train, 8, 32, g2).x;
  EXPECT_EQ(a.to_vector<int64_t>(), b.to_vector<int64_t>());
  EXPECT_NE(a.to_vector<int64_t>(), c.sample(Split::train, 8, 32, g3).x.to_vector<int64_t>());
  // The generator advances: the next batch differs from the first.
  EXPECT_NE(a.to_vector<int64_t>(), c.sample(Split::train, 8, 32, g1).x.to_vector<int64_t>());
}

TEST(TextCorpus, EvalBatchesTileTheSplitInOrder) {
  auto c = data::TextCorpus::from_string(letters_then_digits(900, 100), 0.1);
  // Rows start at multiples of T=8 and need 9 bytes: rows 0..11 fit in 100 bytes, so 2 batches of B=5.
  EXPECT_EQ(c.num_eval_batches(5, 8), 2);
  const std::string& val = c.bytes(Split::val);
  for (int64_t i = 0; i < 2; ++i) {
    data::Batch b = c.eval_batch(i, 5, 8);
    for (int64_t r = 0; r < 5; ++r) EXPECT_EQ(window_text(b, r), val.substr((i * 5 + r) * 8, 9));
    EXPECT_EQ(b.x.to_vector<int64_t>(), c.eval_batch(i, 5, 8).x.to_vector<int64_t>());
  }
  EXPECT_DG_ERROR(c.eval_batch(2, 5, 8), "eval batch 2", "holds 2 batches");
  EXPECT_EQ(c.num_eval_batches(4, 8, Split::train), (899 / 8) / 4);
}

TEST(TextCorpus, UnigramEntropy) {
  auto c = data::TextCorpus::from_string("aabbaabbzz", 0.2);  // train "aabbaabb"
  EXPECT_DOUBLE_EQ(c.unigram_entropy(Split::train), std::log(2.0));
  EXPECT_DOUBLE_EQ(c.unigram_entropy(Split::val), 0.0);
}

TEST(TextCorpus, BigramEntropy) {
  // "aabbaabb": after a -> a or b (1/2 each; 4 pairs), after b -> b or a (3 pairs: bb, ba, bb).
  auto c = data::TextCorpus::from_string("aabbaabbzz", 0.2);
  const double h_a = std::log(2.0), h_b = -(2.0 / 3) * std::log(2.0 / 3) - (1.0 / 3) * std::log(1.0 / 3);
  EXPECT_NEAR(c.bigram_entropy(Split::train), 4.0 / 7 * h_a + 3.0 / 7 * h_b, 1e-15);
  EXPECT_DOUBLE_EQ(data::TextCorpus::from_string("abababab", 0.5).bigram_entropy(), 0.0);  // fully determined
  EXPECT_DG_ERROR(data::TextCorpus::from_string("abcdefghij", 0.9).bigram_entropy(Split::train),
                  "bigram_entropy needs 2 bytes");
}

TEST(TextCorpus, FromFileReadsBytesExactly) {
  TempDir dir;
  std::string s = letters_then_digits(90, 0) + std::string("\r\n\0\xff", 4) + "0123456789";
  write_bytes(dir.file("in.txt"), s);
  auto c = data::TextCorpus::from_file(dir.file("in.txt"), 0.1);
  EXPECT_EQ(c.source(), dir.file("in.txt"));
  EXPECT_EQ(c.size(Split::val), 10);
  EXPECT_EQ(c.bytes(Split::train) + c.bytes(Split::val), s);
}

TEST(TextCorpus, FileErrorsNameTheFile) {
  TempDir dir;
  std::string missing = dir.file("missing.txt"), empty = dir.file("empty.txt"), small = dir.file("small.txt");
  EXPECT_DG_ERROR(data::TextCorpus::from_file(missing), missing.c_str(), "does not exist");
  write_bytes(empty, "");
  EXPECT_DG_ERROR(data::TextCorpus::from_file(empty), empty.c_str(), "empty");
  EXPECT_DG_ERROR(data::TextCorpus::from_file(dir.file("")), "directory");
  write_bytes(small, letters_then_digits(90, 10));
  auto c = data::TextCorpus::from_file(small, 0.1);  // train 90 bytes, val 10
  Generator gen(0);
  EXPECT_DG_ERROR(c.sample(Split::val, 4, 16, gen), small.c_str(), "val split", "has 10 bytes", "needs 17",
                  "train split 90 bytes");
  EXPECT_DG_ERROR(c.sample(Split::train, 4, 90, gen), small.c_str(), "train split", "has 90 bytes", "needs 91");
  EXPECT_DG_ERROR(c.num_eval_batches(1, 10), small.c_str(), "needs 11");
  EXPECT_NO_THROW(c.sample(Split::train, 4, 89, gen));
  EXPECT_DG_ERROR(c.sample(Split::train, 0, 8, gen), "B=0");
}

// ---------------------------------------------------------------- synthetic corpus

// Independent evaluator with ordinary precedence: expr := term (('+'|'-') term)*,
// term := factor ('*' factor)*, factor := number | '(' expr ')'. Records the
// digit count of every number and the operators seen.
struct ExpressionParser {
  explicit ExpressionParser(std::string_view text) : s(text) {}
  std::string_view s;
  size_t pos = 0;
  std::vector<int> digits;
  std::string ops;

  int64_t expr() {
    int64_t v = term();
    while (pos < s.size() && (s[pos] == '+' || s[pos] == '-')) {
      char op = s[pos++];
      ops.push_back(op);
      int64_t r = term();
      v = op == '+' ? v + r : v - r;
    }
    return v;
  }
  int64_t term() {
    int64_t v = factor();
    while (pos < s.size() && s[pos] == '*') ++pos, ops.push_back('*'), v *= factor();
    return v;
  }
  int64_t factor() {
    if (pos < s.size() && s[pos] == '(') {
      ++pos;
      int64_t v = expr();
      EXPECT_EQ(s.at(pos), ')') << s;
      ++pos;
      return v;
    }
    size_t start = pos;
    while (pos < s.size() && std::isdigit(static_cast<unsigned char>(s[pos]))) ++pos;
    EXPECT_GT(pos, start) << "expected a number at " << start << " in " << s;
    std::string num(s.substr(start, pos - start));
    EXPECT_TRUE(num.size() == 1 || num[0] != '0') << "leading zero in " << s;
    digits.push_back(static_cast<int>(num.size()));
    return num.empty() ? 0 : std::stoll(num);
  }
};

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  size_t at = 0;
  for (size_t nl; (nl = text.find('\n', at)) != std::string::npos; at = nl + 1) lines.push_back(text.substr(at, nl - at));
  EXPECT_EQ(at, text.size()) << "text must end with a complete line";
  return lines;
}

TEST(SyntheticCorpus, EveryLineIsCorrectArithmeticWithMarkedAnswers) {
  data::SyntheticCorpus c(1, 400'000, 40'000);
  for (Split split : {Split::train, Split::val}) {
    const std::string& text = c.bytes(split);
    const std::vector<int8_t>& levels = c.levels(split);
    ASSERT_EQ(levels.size(), text.size());
    EXPECT_GE(c.size(split), split == Split::train ? 400'000 : 40'000);
    std::map<int, int64_t> per_level;
    std::map<char, int64_t> per_op;
    std::map<int, int64_t> with_parens;
    int64_t negative = 0, lines_checked = 0;
    size_t at = 0;
    for (const std::string& line : split_lines(text)) {
      size_t eq = line.find('=');
      ASSERT_NE(eq, std::string::npos) << line;
      std::string expression = line.substr(0, eq);
      ExpressionParser p(expression);
      int64_t value = p.expr();
      ASSERT_EQ(p.pos, eq) << "unparsed text in " << line;
      ASSERT_EQ(line.substr(eq + 1), std::to_string(value)) << line;
      // Level = digits of every operand; 2 or 3 operands, 3 only with parentheses at level >= 3.
      int level = p.digits.at(0);
      for (int d : p.digits) ASSERT_EQ(d, level) << line;
      bool parens = line.find('(') != std::string::npos;
      ASSERT_EQ(p.digits.size(), parens ? 3u : 2u) << line;
      if (parens) {
        ASSERT_GE(level, 3) << line;
        ++with_parens[level];
      }
      ++per_level[level], negative += value < 0, ++lines_checked;
      for (char op : p.ops) ++per_op[op];
      // answer_level: the level on the bytes after '=' through '\n', -1 elsewhere.
      for (size_t i = 0; i <= line.size(); ++i)
        ASSERT_EQ(levels[at + i], i > eq ? level : -1) << "byte " << i << " of " << line;
      at += line.size() + 1;
    }
    // Levels uniform over lines, ops uniform, parentheses on 1/4 of level 3-4 lines.
    ASSERT_EQ(per_level.size(), 4u);
    for (auto [level, n] : per_level)
      EXPECT_NEAR(static_cast<double>(n) / lines_checked, 0.25, 0.02) << "level " << level;
    int64_t n_ops = per_op['+'] + per_op['-'] + per_op['*'];
    ASSERT_EQ(per_op.size(), 3u);
    for (auto [op, n] : per_op) EXPECT_NEAR(static_cast<double>(n) / n_ops, 1.0 / 3, 0.02) << "op " << op;
    for (int level : {3, 4})
      EXPECT_NEAR(static_cast<double>(with_parens[level]) / per_level[level], 0.25, 0.03) << "level " << level;
    EXPECT_GT(negative, lines_checked / 10);
  }
}

TEST(SyntheticCorpus, BatchAnswerLevelIsTheLevelOfTheTarget) {
  data::SyntheticCorpus c(2, 100'000, 20'000);
  const std::vector<int8_t>& levels = c.levels(Split::val);
  data::Batch b = c.eval_batch(3, 4, 32);
  std::vector<int64_t> lv = b.answer_level.to_vector<int64_t>();
  for (int64_t r = 0; r < 4; ++r)
    for (int64_t t = 0; t < 32; ++t) EXPECT_EQ(lv[r * 32 + t], levels[(3 * 4 + r) * 32 + t + 1]);
  // Random windows: locate each (64+1 bytes is unique in practice) and compare.
  Generator gen(5);
  data::Batch s = c.sample(Split::train, 8, 64, gen);
  std::vector<int64_t> slv = s.answer_level.to_vector<int64_t>();
  int64_t answer_targets = 0;
  for (int64_t r = 0; r < 8; ++r) {
    size_t start = c.bytes(Split::train).find(window_text(s, r));
    ASSERT_NE(start, std::string::npos);
    for (int64_t t = 0; t < 64; ++t) {
      EXPECT_EQ(slv[r * 64 + t], c.levels(Split::train)[start + t + 1]);
      answer_targets += slv[r * 64 + t] > 0;
    }
  }
  EXPECT_GT(answer_targets, 0);
}

TEST(SyntheticCorpus, DeterministicPerSeedAndSplitsDiffer) {
  data::SyntheticCorpus a(7, 50'000, 5'000), b(7, 50'000, 5'000), c(8, 50'000, 5'000);
  EXPECT_EQ(a.bytes(Split::train), b.bytes(Split::train));
  EXPECT_EQ(a.bytes(Split::val), b.bytes(Split::val));
  EXPECT_EQ(a.levels(Split::train), b.levels(Split::train));
  EXPECT_NE(a.bytes(Split::train), c.bytes(Split::train));
  EXPECT_NE(a.bytes(Split::train).substr(0, 5'000), a.bytes(Split::val));
  EXPECT_EQ(a.source(), "synthetic corpus (seed 7)");
}

// Training code takes either corpus as a `const Corpus&`.
int64_t answer_targets_in_first_eval_batch(const data::Corpus& corpus) {
  std::vector<int64_t> lv = corpus.eval_batch(0, 4, 16).answer_level.to_vector<int64_t>();
  return std::count_if(lv.begin(), lv.end(), [](int64_t v) { return v > 0; });
}

TEST(Corpus, BothKindsThroughTheBaseAndMoved) {
  data::SyntheticCorpus synthetic(6, 10'000, 1'000);
  auto text = data::TextCorpus::from_string(letters_then_digits(900, 100));
  EXPECT_GT(answer_targets_in_first_eval_batch(synthetic), 0);
  EXPECT_EQ(answer_targets_in_first_eval_batch(text), 0);
  std::string val = synthetic.bytes(Split::val);
  data::SyntheticCorpus moved = std::move(synthetic);
  EXPECT_EQ(moved.bytes(Split::val), val);
  EXPECT_EQ(moved.seed(), 6u);
}

TEST(SyntheticCorpus, HardValidationLinesAreNotInTrain) {
  data::SyntheticCorpus c(3);  // the default sizes used by training
  std::set<std::string> train;
  for (const std::string& line : split_lines(c.bytes(Split::train))) train.insert(line);
  int64_t hard = 0, easy = 0, easy_seen = 0;
  for (const std::string& line : split_lines(c.bytes(Split::val))) {
    // The level is the digit count of the first operand (after an optional '(').
    size_t first = line[0] == '(' ? 1 : 0;
    int level = static_cast<int>(line.find_first_not_of("0123456789", first) - first);
    if (level >= 3) {
      ++hard;
      EXPECT_EQ(train.count(line), 0u) << "val line also in train: " << line;
    } else {
      ++easy, easy_seen += train.count(line);
    }
  }
  EXPECT_GT(hard, 5'000);
  // Documented: levels 1-2 have few possible lines, so most repeat train lines.
  EXPECT_GT(easy_seen, easy / 2);
}

TEST(SyntheticCorpus, EntropyAlphabetAndLineHelper) {
  data::SyntheticCorpus c(4, 200'000, 20'000);
  const std::string alphabet = "0123456789+-*=()\n";
  for (char ch : c.bytes(Split::train)) ASSERT_NE(alphabet.find(ch), std::string::npos) << int(ch);
  double h = c.unigram_entropy();
  EXPECT_GT(h, 2.0);
  EXPECT_LT(h, std::log(17.0));
  EXPECT_EQ(c.text(Split::train, 10), c.bytes(Split::train).substr(0, 10));
  data::PhiloxStream rng(9);
  for (int level = 1; level <= 4; ++level) {
    data::ArithmeticLine line = data::random_arithmetic_line(rng, level);
    EXPECT_EQ(line.level, level);
    EXPECT_EQ(line.text.substr(line.text.find('=') + 1), std::to_string(line.answer) + "\n");
  }
  EXPECT_DG_ERROR(data::random_arithmetic_line(rng, 5), "level", "got 5");
}

// ---------------------------------------------------------------- idx / Fashion-MNIST

namespace {

std::string be32(uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8), static_cast<char>(v)};
}

// An idx file: magic, dims, values, written by hand (not by the reader's code).
std::string idx_bytes(uint32_t magic, const std::vector<uint32_t>& dims, const std::vector<uint8_t>& values) {
  std::string s = be32(magic);
  for (uint32_t d : dims) s += be32(d);
  s.append(values.begin(), values.end());
  return s;
}

void write_gz(const std::string& path, const std::string& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())), static_cast<int>(bytes.size()));
  ASSERT_EQ(gzclose(f), Z_OK);
}

std::vector<uint8_t> test_pixels(int64_t n) {
  std::vector<uint8_t> px(n * 784);
  for (size_t i = 0; i < px.size(); ++i) px[i] = static_cast<uint8_t>((i * 37 + i / 784) % 256);
  return px;
}

void write_dataset(const TempDir& dir, const std::string& prefix, bool gz, const std::vector<uint8_t>& labels) {
  std::string images = idx_bytes(0x803, {3, 28, 28}, test_pixels(3));
  std::string lab = idx_bytes(0x801, {static_cast<uint32_t>(labels.size())}, labels);
  std::string ip = dir.file(prefix + "-images-idx3-ubyte"), lp = dir.file(prefix + "-labels-idx1-ubyte");
  if (gz) {
    write_gz(ip + ".gz", images);
    write_gz(lp + ".gz", lab);
  } else {
    write_bytes(ip, images);
    write_bytes(lp, lab);
  }
}

}  // namespace

TEST(FashionMnist, ReadsPlainAndGzipIdx) {
  for (bool gz : {false, true}) {
    TempDir dir;
    write_dataset(dir, gz ? "t10k" : "train", gz, {0, 9, 3});
    data::FashionMnist ds = data::load_fashion_mnist(dir.file(""), gz ? Split::val : Split::train);
    ASSERT_EQ(ds.images.shape(), (Shape{3, 784}));
    ASSERT_EQ(ds.labels.shape(), (Shape{3}));
    EXPECT_EQ(ds.images.dtype(), DType::f32);
    EXPECT_EQ(ds.labels.to_vector<int64_t>(), (std::vector<int64_t>{0, 9, 3}));
    std::vector<float> got = ds.images.to_vector<float>();
    std::vector<uint8_t> px = test_pixels(3);
    for (size_t i = 0; i < px.size(); ++i) ASSERT_EQ(got[i], static_cast<float>(px[i]) / 255.0f) << "pixel " << i;
  }
}

TEST(FashionMnist, MalformedFilesNameFileAndField) {
  TempDir dir;
  std::string img = dir.file("i.idx"), lab = dir.file("l.idx");
  write_bytes(lab, idx_bytes(0x803, {2}, {1, 2}));
  EXPECT_DG_ERROR(data::read_idx_labels(lab), lab.c_str(), "magic number is 0x00000803", "expected 0x00000801");
  write_bytes(img, idx_bytes(0x803, {3, 28, 28}, test_pixels(3)).substr(0, 16 + 3 * 784 - 10));
  EXPECT_DG_ERROR(data::read_idx_images(img), img.c_str(), "2352 values", "2342 bytes", "truncated");
  write_bytes(img, idx_bytes(0x803, {3, 28}, {}));
  EXPECT_DG_ERROR(data::read_idx_images(img), img.c_str(), "truncated inside the header");
  write_bytes(img, idx_bytes(0x803, {1000000, 28, 28}, test_pixels(1)));
  EXPECT_DG_ERROR(data::read_idx_images(img), img.c_str(), "'count' = 1000000", "truncated");
  write_bytes(img, idx_bytes(0x803, {1, 28, 28}, test_pixels(1)) + "xy");
  EXPECT_DG_ERROR(data::read_idx_images(img), img.c_str(), "trailing bytes");
  write_bytes(img, idx_bytes(0x803, {1, 27, 29}, std::vector<uint8_t>(27 * 29)));
  EXPECT_DG_ERROR(data::read_idx_images(img, 28, 28), img.c_str(), "'rows' is 27", "expected 28");
  write_bytes(lab, idx_bytes(0x801, {4}, {0, 9, 10, 2}));
  EXPECT_DG_ERROR(data::read_idx_labels(lab), lab.c_str(), "label 10 at index 2", "outside 0..9");
  // A gzip stream cut in half.
  std::string gz = dir.file("cut.gz");
  write_gz(gz, idx_bytes(0x803, {3, 28, 28}, test_pixels(3)));
  std::ifstream in(gz, std::ios::binary);
  std::string whole((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  write_bytes(gz, whole.substr(0, whole.size() / 2));
  EXPECT_DG_ERROR(data::read_idx_images(gz), gz.c_str());
  EXPECT_DG_ERROR(data::read_idx_images(dir.file("none.idx")), "none.idx", "does not exist");
}

TEST(FashionMnist, CountMismatchAndMissingFiles) {
  TempDir dir;
  write_dataset(dir, "train", true, {0, 1});  // 3 images, 2 labels
  EXPECT_DG_ERROR(data::load_fashion_mnist(dir.file(""), Split::train), "count mismatch", "3 images", "2 labels",
                  "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz");
  EXPECT_DG_ERROR(data::load_fashion_mnist(dir.file(""), Split::val), "t10k-images-idx3-ubyte",
                  "apt-get install dataset-fashion-mnist");
}

TEST(FashionMnist, RealTestSplit) {
  if (!fs::exists(fs::path(data::kFashionMnistDir) / "t10k-images-idx3-ubyte.gz"))
    GTEST_SKIP() << data::kFashionMnistDir << " not present (apt-get install dataset-fashion-mnist)";
  data::FashionMnist ds = data::load_fashion_mnist(data::kFashionMnistDir, Split::val);
  ASSERT_EQ(ds.images.shape(), (Shape{10000, 784}));
  ASSERT_EQ(ds.labels.shape(), (Shape{10000}));
  std::vector<int64_t> count(10, 0);
  for (int64_t l : ds.labels.to_vector<int64_t>()) ++count.at(l);
  for (int64_t n : count) EXPECT_EQ(n, 1000);  // the test split is balanced
  std::vector<float> px = ds.images.to_vector<float>();
  auto [lo, hi] = std::minmax_element(px.begin(), px.end());
  EXPECT_EQ(*lo, 0.0f);
  EXPECT_EQ(*hi, 1.0f);
}
