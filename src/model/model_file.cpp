// Models from GGUF files, format detection, and the check that a model has every weight its
// family's forward pass reads.
#include "model/model_file.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/mapped_file.h"
#include "format/hf_folder.h"
#include "model/hf_model.h"

namespace tapml {

namespace {

std::string magic_hex(const uint8_t* data, size_t size) {
  char buf[16] = "0x";
  for (size_t i = 0; i < 4 && i < size; ++i) std::snprintf(buf + 2 + 2 * i, 3, "%02x", data[i]);
  return buf;
}

}  // namespace

ModelFile model_from_gguf(std::shared_ptr<const gguf::File> file) {
  TAPML_REQUIRE(file != nullptr, "model_from_gguf: no file");
  const gguf::File& f = *file;
  if (!f.has("general.architecture"))
    throw Error(f.path() + ": general.architecture is missing (a vocabulary-only GGUF?)");
  const std::string& arch = f.get_string("general.architecture");
  const Architecture* family = nullptr;
  try {
    family = &architecture(arch);
  } catch (const Error& e) {
    throw Error(f.path() + ": " + e.what());
  }

  ModelFile m;
  m.path = f.path();
  m.format = "gguf";
  m.arch = arch;
  m.config = family->config_from_gguf(f);
  for (const gguf::TensorInfo& ti : f.tensors())
    m.weights.emplace(family->tensor_name_from_gguf(m.config, ti.name), f.tensor(ti.name));
  m.gguf = std::move(file);
  return m;
}

ModelFile load_gguf(const std::string& path) {
  return model_from_gguf(std::make_shared<const gguf::File>(gguf::File::open(path)));
}

ModelFile load_hf_model(const std::string& dir) {
  HfFolder folder = open_hf_folder(dir);
  auto config = std::make_shared<const HfConfig>(
      std::make_shared<const nlohmann::json>(std::move(folder.config)),
      folder.dir + "/config.json");
  const HfConfig& h = *config;
  const Architecture* family = nullptr;
  try {
    family = &architecture_for_hf(h.text("model_type", std::nullopt));
  } catch (const Error& e) {
    h.fail(e.what());
  }
  ModelFile m;
  m.path = dir;
  m.format = "hf";
  m.arch = std::string(family->name());
  m.hf = config;
  m.config = family->config_from_hf(h);
  // A layer the config calls sliding must have a window, whatever the family reads.
  std::vector<std::string> types = h.layer_types(m.config.n_layers);
  for (size_t l = 0; l < types.size(); ++l)
    if (types[l] == "sliding_attention" && m.config.window(int(l)) == 0)
      h.fail("layer " + std::to_string(l) + " is sliding_attention, but the " + m.arch +
             " family has no sliding window here (sliding_window missing or not used)");
  try {
    family->check(m.config);
  } catch (const Error& e) {
    h.fail(e.what());
  }
  HfWeights weights(folder);
  m.weights = family->weights_from_hf(m.config, h, weights);
  return m;
}

ModelFile load_model(const std::string& path) {
  if (std::filesystem::is_directory(path)) {
    if (!std::filesystem::exists(std::filesystem::path(path) / "config.json"))
      throw Error(path + ": a folder without config.json (a Hugging Face model folder has one)");
    ModelFile m = load_hf_model(path);
    validate_model(m);
    return m;
  }
  std::shared_ptr<const MappedFile> mapped = MappedFile::open(path);
  const uint8_t* data = mapped->data();
  size_t size = mapped->size();
  if (size < 4)
    throw Error(path + ": file of " + std::to_string(size) + " bytes is too small to be a model");

  ModelFile m;
  if (std::memcmp(data, "GGUF", 4) == 0) {
    m = model_from_gguf(
        std::make_shared<const gguf::File>(gguf::File::from_memory(mapped, data, size, path)));
  } else if (std::memcmp(data, "24ka", 4) == 0) {
    // llama2.c's later export formats; its reader names them.
    m = load_llama2c_memory(mapped, data, size, path);
  } else if (std::string problem = llama2c_header_problem(data, size); problem.empty()) {
    m = load_llama2c_memory(mapped, data, size, path);
  } else {
    throw Error(path + ": not a GGUF file or a llama2.c checkpoint (magic " +
                magic_hex(data, size) + "; as a llama2.c header: " + problem + ")");
  }
  validate_model(m);
  return m;
}

void validate_model(const ModelFile& m) {
  auto fail = [&](const std::string& what) { throw Error(m.path + ": " + what); };
  const Architecture& family = architecture(m.arch);
  try {
    family.check(m.config);
  } catch (const Error& e) {
    fail(e.what());
  }
  // Every family has tensors in every layer: a file declaring more layers than it has
  // tensors is refused before its (possibly huge) list of expected tensors is made.
  if (m.config.n_layers > 0 && size_t(m.config.n_layers) > m.weights.size())
    fail("declares " + std::to_string(m.config.n_layers) + " layers but holds only " +
         std::to_string(m.weights.size()) + " tensors");
  for (const WeightSpec& spec : family.weights(m.config)) {
    auto it = m.weights.find(spec.name);
    if (it == m.weights.end()) fail("missing tensor " + spec.name);
    const Tensor& t = it->second;
    if (t.shape() != spec.shape)
      fail(spec.name + " has shape " + t.shape().str() + ", expected " + spec.shape.str());
    // Quantized blocks are computed with in matrices (matmul weights, embedding tables);
    // vectors and expert stacks take float types only.
    if (is_block(t.dtype()) && t.shape().rank() != 2)
      fail(spec.name + " has dtype " + std::string(dtype_name(t.dtype())) + " " + t.shape().str() +
           "; quantized blocks are read in 2-D weight matrices only");
    if (!is_float(t.dtype()) && !is_block(t.dtype()))
      fail(spec.name + " has dtype " + std::string(dtype_name(t.dtype())) +
           ", expected f32, f16, bf16 or a quantized block type");
  }
}

}  // namespace tapml
