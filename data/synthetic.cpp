#include "data/synthetic.h"

#include <fmt/format.h>

#include <unordered_set>

#include "tensor/error.h"

namespace dg::data {

namespace {

int64_t apply(int64_t a, char op, int64_t b) {
  switch (op) {
    case '+': return a + b;
    case '-': return a - b;
    default: return a * b;
  }
}

// An operand with exactly `level` digits (level 1 includes 0).
int64_t operand(PhiloxStream& rng, int level) {
  int64_t hi = 1;
  for (int i = 0; i < level; ++i) hi *= 10;
  int64_t lo = level == 1 ? 0 : hi / 10;
  return rng.uniform_int(lo, hi - 1);
}

char random_op(PhiloxStream& rng) { return "+-*"[rng.uniform_int(0, 2)]; }

// Appends lines to `text` (and their per-byte levels) until it holds n_bytes.
// `skip`, if given, holds lines that must not be emitted.
void generate(PhiloxStream& rng, int64_t n_bytes, std::string& text, std::vector<int8_t>& levels,
              const std::unordered_set<std::string>* skip, std::unordered_set<std::string>* record) {
  text.reserve(static_cast<size_t>(n_bytes) + 32);
  levels.reserve(static_cast<size_t>(n_bytes) + 32);
  while (static_cast<int64_t>(text.size()) < n_bytes) {
    ArithmeticLine line = random_arithmetic_line(rng);
    if (line.level >= 3) {
      if (skip && skip->contains(line.text)) continue;
      if (record) record->insert(line.text);
    }
    size_t eq = line.text.find('=');
    text += line.text;
    for (size_t i = 0; i < line.text.size(); ++i) levels.push_back(i > eq ? static_cast<int8_t>(line.level) : -1);
  }
}

}  // namespace

ArithmeticLine random_arithmetic_line(PhiloxStream& rng, int level) {
  DG_CHECK(level >= kMinLevel && level <= kMaxLevel, "random_arithmetic_line: level must be in {}..{}, got {}",
           kMinLevel, kMaxLevel, level);
  ArithmeticLine line;
  line.level = level;
  int64_t a = operand(rng, level), b = operand(rng, level);
  char op1 = random_op(rng);
  bool three_operands = level >= 3 && rng.uniform_int(0, 3) == 0;
  if (!three_operands) {
    line.answer = apply(a, op1, b);
    line.text = fmt::format("{}{}{}={}\n", a, op1, b, line.answer);
    return line;
  }
  int64_t c = operand(rng, level);
  char op2 = random_op(rng);
  if (rng.uniform_int(0, 1) == 0) {  // (a op1 b) op2 c
    line.answer = apply(apply(a, op1, b), op2, c);
    line.text = fmt::format("({}{}{}){}{}={}\n", a, op1, b, op2, c, line.answer);
  } else {  // a op1 (b op2 c)
    line.answer = apply(a, op1, apply(b, op2, c));
    line.text = fmt::format("{}{}({}{}{})={}\n", a, op1, b, op2, c, line.answer);
  }
  return line;
}

ArithmeticLine random_arithmetic_line(PhiloxStream& rng) {
  return random_arithmetic_line(rng, static_cast<int>(rng.uniform_int(kMinLevel, kMaxLevel)));
}

SyntheticCorpus::SyntheticCorpus(uint64_t seed, int64_t train_bytes, int64_t val_bytes) : seed_(seed) {
  DG_CHECK(train_bytes > 0 && val_bytes > 0, "SyntheticCorpus: split sizes must be positive, got train {} val {}",
           train_bytes, val_bytes);
  source_ = fmt::format("synthetic corpus (seed {})", seed);
  std::unordered_set<std::string> train_lines;  // level 3-4 lines of train, kept out of val
  PhiloxStream train_rng(seed), val_rng(seed ^ kValSeedMix);
  generate(train_rng, train_bytes, bytes_[index(Split::train)], levels_[index(Split::train)], nullptr, &train_lines);
  generate(val_rng, val_bytes, bytes_[index(Split::val)], levels_[index(Split::val)], &train_lines, nullptr);
}

}  // namespace dg::data
