#include "model/convert.h"

#include <cstdio>
#include <optional>

#include "cli/commands.h"
#include "cli/progress.h"
#include "core/error.h"
#include "format/gguf.h"

namespace tapml::cli {

namespace {
struct ConvertArgs {
  std::string model, out, dtype = "f32";
  Verbosity verbosity;
};

void convert(const ConvertArgs& a) {
  check_outputs({{a.out, "--out"}});
  ConvertOptions o;
  const std::optional<FileType> type = file_type_from_name(a.dtype);
  if (!type) {
    std::string names;
    for (const std::string& n : file_type_names()) names += (names.empty() ? "" : ", ") + n;
    throw UsageError("--dtype " + a.dtype + " is not one of " + names);
  }
  o.file_type = *type;
  // Counted in MiB for large models, KiB for small ones.
  std::optional<Progress> progress;
  int shift = 10;
  o.progress = [&](uint64_t done, uint64_t total, const std::string& tensor) {
    if (!progress) {
      shift = total >= (uint64_t(64) << 20) ? 20 : 10;
      progress.emplace("converting", shift == 20 ? "MiB" : "KiB", int64_t(total >> shift),
                       a.verbosity.quiet);
    }
    progress->update(int64_t(done >> shift), tensor);
  };
  // A GGUF file is converted tensor by tensor; anything else must be a Hugging Face folder.
  ConvertResult r = gguf::File::has_magic(a.model) ? convert_gguf_file(a.model, a.out, o)
                                                   : convert_hf_folder(a.model, a.out, o);
  if (progress) progress->finish();
  std::printf("%s: %s (%s family), %zu tensors, %.2f MiB of %s weights\n", a.out.c_str(),
              r.arch.c_str(), r.family.c_str(), r.tensors, double(r.tensor_bytes) / 1048576.0,
              a.dtype.c_str());
  if (is_block(file_type_dtype(*type))) {
    std::string counts;
    for (const auto& [name, n] : r.dtypes)
      counts += (counts.empty() ? "" : ", ") + std::to_string(n) + " " + name;
    std::printf("tensor types: %s\n", counts.c_str());
  }
  for (const std::string& note : r.notes) std::fprintf(stderr, "note: %s\n", note.c_str());
}
}  // namespace

void add_convert(CLI::App& app) {
  auto a = std::make_shared<ConvertArgs>();
  CLI::App* c = app.add_subcommand(
      "convert",
      "Write a Hugging Face model folder as the GGUF file llama.cpp's converter makes, "
      "optionally quantized as llama-quantize does");
  c->footer(
      "Example:\n"
      "  tapml convert --model Qwen2-0.5B/ --out qwen2-0.5b-f16.gguf --dtype f16\n"
      "  tapml run --model qwen2-0.5b-f16.gguf --prompt-ids 9707,11 --steps 16\n"
      "The file has llama.cpp's architecture, keys, tensor names, shapes and layouts (what\n"
      "convert_hf_to_gguf.py writes), no tokenizer (tokenizer.ggml.model = none), and tapml.*\n"
      "keys where llama.cpp cannot express the model; notes on stderr say what llama.cpp will\n"
      "run differently. An existing model file is never replaced.\n"
      "Quantized types are llama.cpp's file types: each tensor gets the type llama-quantize\n"
      "gives it without an importance matrix (q4_k_m: q6_k classifier, q6_k for some V and\n"
      "FFN-down matrices, q5_0/q8_0 where rows are not whole 256-blocks), quantized by ggml's\n"
      "reference quantizers: the tensors are those `llama-quantize F32.gguf OUT.gguf Q4_K_M`\n"
      "writes, type for type and byte for byte.\n"
      "--model may also be an f32/f16/bf16 GGUF file, quantized the same way:\n"
      "  tapml convert --model model-f16.gguf --out model-q4_k_m.gguf --dtype q4_k_m");
  c->add_option("--model", a->model,
                "a Hugging Face model folder (config.json + safetensors), or a GGUF file "
                "(f32, f16 or bf16) to quantize")
      ->required();
  c->add_option("--out", a->out, "the GGUF file to write")->required();
  std::string names;
  for (const std::string& n : file_type_names()) names += (names.empty() ? "" : "|") + n;
  c->add_option("--dtype", a->dtype,
                "dtype of the weight matrices (norms, biases and routers stay f32), or a "
                "llama.cpp file type: " +
                    names)
      ->capture_default_str();
  add_verbosity(c, a->verbosity);
  c->callback([a] { convert(*a); });
}

}  // namespace tapml::cli
