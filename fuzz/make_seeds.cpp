// Writes the seed corpora of the fuzz targets into fuzz/corpus/<target>/:
//   build-fuzz/fuzz/fuzz_make_seeds fuzz/corpus
// Small valid inputs of every kind each reader takes (and a few near misses),
// from the library's own writers, so the fuzzers start from deep inside the
// formats. Deterministic: rerunning gives the same files.
#include <zlib.h>

#include <filesystem>
#include <fstream>

#include "models/factory.h"
#include "models/gpt.h"
#include "models/mob.h"
#include "models/mod.h"
#include "nn/checkpoint.h"
#include "tensor/creation.h"

namespace fs = std::filesystem;
using namespace dg;

namespace {

void write(const fs::path& p, const std::string& bytes) {
  std::ofstream(p, std::ios::binary | std::ios::trunc) << bytes;
}

void write_gz(const fs::path& p, const std::string& bytes) {
  gzFile f = gzopen(p.c_str(), "wb");
  gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size()));
  gzclose(f);
}

std::string be32(uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8), static_cast<char>(v)};
}

void safetensors_seeds(const fs::path& dir) {
  nn::save_safetensors(dir / "every_dtype", {{"f32", from_vector<float>({1.5f, -2, 0}, {3})},
                                             {"f64", from_vector<double>({0.25, 1e300}, {2, 1})},
                                             {"i64", from_vector<int64_t>({-1, 7}, {2})},
                                             {"i32", from_vector<int32_t>({3}, {1, 1})},
                                             {"b8", from_vector<bool>({true, false}, {2})}});
  nn::save_safetensors(dir / "metadata", {{"w", zeros({2, 2})}}, {{"format", "pt"}, {"note", "x"}});
  nn::save_safetensors(dir / "empty_and_scalar", {{"e", zeros({0, 3})}, {"s", scalar_tensor(2.0)}});
  nn::save_safetensors(dir / "no_tensors", {});
}

// A tiny model of each kind as a training checkpoint, with AdamW state after one step.
void checkpoint_seeds(const fs::path& dir) {
  models::GPTConfig g;
  g.n_layer = 1, g.n_head = 1, g.n_embd = 4, g.block_size = 4, g.vocab_size = 8;
  models::MoDConfig mod;
  mod.gpt = g, mod.gpt.n_layer = 2, mod.predictor_hidden = 2, mod.capacity = 0.5;
  models::MoBConfig mob;
  mob.gpt = g, mob.n_blocks = 2, mob.max_depth = 2;
  for (const auto& [kind, config] : {std::pair<std::string, std::string>{"dense", models::to_json(g)},
                                     {"mod", models::to_json(mod)},
                                     {"mob", models::to_json(mob)}}) {
    std::unique_ptr<models::LanguageModel> model = models::make_model(kind, config);
    const nn::Metadata meta = {{"model_kind", kind}, {"model_config", config}};
    nn::save_checkpoint((dir / (kind + "_weights")).string(), *model, nullptr, 0, meta);
    nn::AdamW opt(model->parameters());
    Tensor idx = from_vector<int64_t>({1, 2, 3, 4}, {1, 4});
    model->loss(idx, idx).objective.backward();
    opt.step();
    nn::save_checkpoint((dir / (kind + "_with_optimizer")).string(), *model, &opt, 1, meta);
  }
}

void idx_seeds(const fs::path& dir) {
  std::string images = be32(0x803) + be32(2) + be32(3) + be32(3);
  for (int i = 0; i < 18; ++i) images += static_cast<char>(i * 14);
  const std::string labels = be32(0x801) + be32(4) + std::string("\x00\x09\x03\x05", 4);
  write(dir / "images", images);
  write(dir / "labels", labels);
  write(dir / "matrix", be32(0x802) + be32(2) + be32(2) + "abcd");
  write(dir / "empty_images", be32(0x803) + be32(0) + be32(28) + be32(28));
  write_gz(dir / "images_gz", images);
  write_gz(dir / "labels_gz", labels);
}

// 8 bytes B, 8 bytes T, 1 byte validation fraction, then the text.
void text_seeds(const fs::path& dir) {
  auto seed = [](int64_t B, int64_t T, uint8_t val, const std::string& text) {
    std::string s(reinterpret_cast<const char*>(&B), 8);
    s.append(reinterpret_cast<const char*>(&T), 8);
    return s + static_cast<char>(val) + text;
  };
  write(dir / "arithmetic", seed(2, 8, 25, "12+7=19\n3*4=12\n(2+3)*4=20\n99-9=90\n"));
  write(dir / "utf8", seed(1, 3, 128, "d\xc3\xa9j\xc3\xa0 vu \xe2\x82\xac \xf0\x9f\x98\x80"));
  write(dir / "short", seed(4, 16, 0, "ab"));
  write(dir / "one_byte", seed(1, 1, 255, "z"));
}

}  // namespace

int main(int argc, char** argv) {
  const fs::path root = argc > 1 ? argv[1] : "fuzz/corpus";
  for (const char* t : {"safetensors", "checkpoint", "idx", "text"}) fs::create_directories(root / t);
  safetensors_seeds(root / "safetensors");
  checkpoint_seeds(root / "checkpoint");
  idx_seeds(root / "idx");
  text_seeds(root / "text");
  return 0;
}
