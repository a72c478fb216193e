#pragma once
// TextCorpus: a text file (or string) as bytes, split into train and
// validation: the last val_fraction of the bytes is the validation split.
// Sampling and evaluation batches come from Corpus (data/corpus.h).
//
//   auto corpus = dg::data::TextCorpus::from_file("tinyshakespeare.txt", 0.1);
//   dg::Generator gen(0);
//   dg::data::Batch b = corpus.sample(dg::data::Split::train, 16, 128, gen);
//
// Errors (dg::Error naming the file): missing file, not a regular file (a
// FIFO or a device has no end to read to), unreadable or empty file, a file
// too large for memory, and at sampling time a split too small for a (B,T)
// window or a batch above kMaxBatchTokens.
#include <string>

#include "data/corpus.h"

namespace dg::data {

class TextCorpus : public Corpus {
 public:
  // val_fraction in [0, 1]: the last round(size * val_fraction) bytes are validation.
  static TextCorpus from_file(const std::string& path, double val_fraction = 0.1);
  // `name` stands in for the file name in messages.
  static TextCorpus from_string(std::string text, double val_fraction = 0.1, std::string name = "<string>");
};

}  // namespace dg::data
