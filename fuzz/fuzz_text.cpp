// libFuzzer target: the text corpus (data/text.h, data/corpus.h).
// Input: 8 bytes B, 8 bytes T (int64, any value: the checks must hold at the
// limits of int64), 1 byte validation fraction (/255), then the text itself,
// read from a file. Any input must give batches or a dg::Error, and every
// batch must be next-byte prediction inside its split: y[b][t] = x[b][t+1].
#include <cmath>
#include <cstring>
#include <optional>

#include "data/text.h"
#include "fuzz_file.h"

namespace {

int64_t take_i64(const uint8_t*& data, size_t& size) {
  int64_t v = 0;
  const size_t n = size < sizeof v ? size : sizeof v;
  std::memcpy(&v, data, n);
  data += n, size -= n;
  return v;
}

// x, y (B, T): y is x shifted by one byte, and every value is a byte.
void check_batch(const dg::data::Batch& b, int64_t B, int64_t T) {
  dg::fuzz::require(b.x.shape() == dg::Shape({B, T}) && b.y.shape() == dg::Shape({B, T}));
  const std::vector<int64_t> x = b.x.to_vector<int64_t>(), y = b.y.to_vector<int64_t>();
  for (int64_t r = 0; r < B; ++r)
    for (int64_t t = 0; t < T; ++t) {
      dg::fuzz::require(x[r * T + t] >= 0 && x[r * T + t] < 256);
      if (t + 1 < T) dg::fuzz::require(y[r * T + t] == x[r * T + t + 1]);
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static dg::fuzz::InputFile input;
  const int64_t B_raw = take_i64(data, size), T_raw = take_i64(data, size);
  double val_fraction = 0.1;
  if (size > 0) val_fraction = data[0] / 255.0, ++data, --size;
  std::optional<dg::data::TextCorpus> corpus;
  try {
    corpus = dg::data::TextCorpus::from_file(input.hold(data, size), val_fraction);
  } catch (const dg::Error&) {
    return 0;
  }
  dg::fuzz::require(corpus->size(dg::data::Split::train) + corpus->size(dg::data::Split::val) ==
                    static_cast<int64_t>(size));
  // The raw sizes only where nothing is allocated from them; batches of at
  // most 8 x 64 tokens from them otherwise (a huge batch is a legal request).
  const int64_t B = 1 + (B_raw & 7), T = 1 + (T_raw & 63);
  dg::Generator gen(static_cast<uint64_t>(B_raw));
  for (dg::data::Split split : {dg::data::Split::train, dg::data::Split::val}) {
    try {
      corpus->num_eval_batches(B_raw, T_raw, split);
    } catch (const dg::Error&) {
    }
    try {
      check_batch(corpus->sample(split, B, T, gen), B, T);
      const int64_t n = corpus->num_eval_batches(B, T, split);
      if (n > 0) check_batch(corpus->eval_batch(n - 1, B, T, split), B, T);
    } catch (const dg::Error&) {
    }
    try {
      const double h1 = corpus->unigram_entropy(split), h2 = corpus->bigram_entropy(split);
      dg::fuzz::require(std::isfinite(h1) && h1 >= 0 && std::isfinite(h2) && h2 >= -1e-9);
    } catch (const dg::Error&) {
    }
    try {
      corpus->text(split, T_raw);
    } catch (const dg::Error&) {
    }
  }
  return 0;
}
