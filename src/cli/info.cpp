#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>

#include "backend/registry.h"
#include "backends/builtin.h"
#include "cli/commands.h"
#include "cli/json_output.h"
#include "core/error.h"
#include "format/gguf.h"
#include "model/decoder.h"
#include "model/model_file.h"
#include "tokenizer/vocab.h"

namespace tapml::cli {

namespace {
struct InfoArgs {
  std::string model;
  bool json = false, backends = false;
};

// Every backend kind this build registered, with the devices of those that have some.
void list_backends(bool json) {
  register_builtin_backends();
  nlohmann::json kinds = nlohmann::json::array();
  for (const BackendKind& k : registered_backends()) {
    nlohmann::json devices = nlohmann::json::array();
    if (!json) std::printf("%-8s %s\n", k.scheme.c_str(), k.description.c_str());
    if (k.devices)
      for (const DeviceListing& d : k.devices()) {
        if (json)
          devices.push_back({{"uri", d.uri.empty() ? nlohmann::json() : nlohmann::json(d.uri)},
                             {"description", d.description}});
        else if (d.uri.empty())
          std::printf("  (%s)\n", d.description.c_str());
        else
          std::printf("  %s  %s\n", d.uri.c_str(), d.description.c_str());
      }
    kinds.push_back({{"scheme", k.scheme}, {"description", k.description}, {"devices", devices}});
  }
  if (json) print_json({{"backends", kinds}});
}

// A GGUF file TapML cannot run (an architecture or tensor type it lacks, or a vocabulary-only
// file) is still described from its header: architecture, tensors by type, tokenizer, and
// the reason it cannot run.
void describe_gguf(const InfoArgs& a, const std::string& why) {
  gguf::File f = gguf::File::open(a.model);
  std::string arch = f.get_string_or("general.architecture", "");
  std::map<std::string, std::pair<int, uint64_t>> by_type;  // name -> (tensors, bytes)
  uint64_t params = 0;
  for (const gguf::TensorInfo& t : f.tensors()) {
    std::string type(gguf::tensor_type_name(t.type));
    if (type.empty()) type = "type " + std::to_string(t.type);
    auto& [count, bytes] = by_type[type];
    ++count;
    bytes += t.nbytes;
    uint64_t n = 1;
    for (uint64_t d : t.ne) n *= d;
    params += n;
  }
  std::optional<Vocab> vocab;
  std::string vocab_error;
  if (f.has("tokenizer.ggml.model")) {
    try {
      vocab = load_gguf_vocab(f);
    } catch (const Error& e) {
      vocab_error = e.what();
    }
  }
  static const char* const kModels[] = {"SentencePiece BPE", "BPE", "WordPiece", "unigram"};
  auto vocab_text = [&] {
    if (!vocab) return vocab_error.empty() ? std::string("none") : vocab_error;
    std::string s =
        std::string(kModels[int(vocab->model)]) + ", " + std::to_string(vocab->size()) + " tokens";
    if (vocab->model == VocabModel::Bpe) s += ", pre-tokenizer " + vocab->pre;
    return s + ", " + std::to_string(vocab->eog.size()) + " end-of-generation token" +
           (vocab->eog.size() == 1 ? "" : "s");
  };
  if (a.json) {
    nlohmann::json types = nlohmann::json::object();
    for (auto& [type, cb] : by_type) types[type] = {{"tensors", cb.first}, {"bytes", cb.second}};
    print_json({{"path", a.model},
                {"format", "gguf"},
                {"arch", arch},
                {"runnable", false},
                {"why_not", why},
                {"parameters", params},
                {"tensor_types", types},
                {"tokenizer", vocab_text()}});
    return;
  }
  std::printf("%s\n  format gguf, architecture %s\n", a.model.c_str(),
              arch.empty() ? "(none)" : arch.c_str());
  std::printf("  cannot run: %s\n", why.c_str());
  std::printf("  %zu tensors, %llu parameters\n", f.tensors().size(), (unsigned long long)params);
  for (auto& [type, cb] : by_type)
    std::printf("    %-8s %5d tensors %10.2f MiB\n", type.c_str(), cb.first, cb.second / 1048576.0);
  std::printf("  tokenizer: %s\n", vocab_text().c_str());
}

void info(const InfoArgs& a) {
  if (a.backends) {
    list_backends(a.json);
    if (a.model.empty()) return;
  }
  TAPML_REQUIRE(!a.model.empty(), "info: give --model PATH or --backends");
  ModelFile m;
  try {
    m = load_model(a.model);
  } catch (const Error& e) {
    if (!gguf::File::has_magic(a.model)) throw;
    return describe_gguf(a, e.what());
  }
  const ModelConfig& c = m.config;
  if (a.json) {
    nlohmann::json j;
    j["path"] = m.path;
    j["format"] = m.format;
    j["arch"] = m.arch;
    j["config"] = {{"dim", c.dim},
                   {"hidden_dim", c.hidden_dim},
                   {"n_layers", c.n_layers},
                   {"n_heads", c.n_heads},
                   {"n_kv_heads", c.n_kv_heads},
                   {"vocab_size", c.vocab_size},
                   {"max_seq_len", c.max_seq_len},
                   {"head_dim", c.head_dim},
                   {"rope_dim", c.rope_dim},
                   {"rope_base", c.rope_base},
                   {"norm_eps", c.norm_eps},
                   {"rope_pairing", c.rope_pairing == RopePairing::NeoX ? "neox" : "adjacent"},
                   {"shared_classifier", c.shared_classifier},
                   {"features", decoder_features(c)}};
    nlohmann::json ts = nlohmann::json::array();
    for (auto& [name, t] : m.weights)
      ts.push_back({{"name", name}, {"dtype", dtype_name(t.dtype())}, {"shape", t.shape().dims()}});
    j["tensors"] = ts;
    print_json(j);
    return;
  }
  int64_t params = 0, bytes = 0;
  for (auto& [name, t] : m.weights) params += t.numel(), bytes += int64_t(t.nbytes());
  std::printf("%s\n  format %s, architecture %s\n", m.path.c_str(), m.format.c_str(),
              m.arch.c_str());
  std::printf("  dim %d, hidden %d, layers %d, heads %d, kv heads %d, head dim %d\n", c.dim,
              c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads, c.head_dim);
  std::printf("  vocab %d, context %d, rope dim %d base %g (%s pairs), norm eps %g%s\n",
              c.vocab_size, c.max_seq_len, c.rope_dim, c.rope_base,
              c.rope_pairing == RopePairing::NeoX ? "neox" : "adjacent", c.norm_eps,
              c.shared_classifier ? ", classifier shared with the embedding" : "");
  for (const std::string& f : decoder_features(c)) std::printf("  %s\n", f.c_str());
  std::printf("  %zu tensors, %lld parameters, %.2f MiB\n", m.weights.size(), (long long)params,
              bytes / 1048576.0);
  for (auto& [name, t] : m.weights)
    std::printf("    %-28s %-5s %s\n", name.c_str(), std::string(dtype_name(t.dtype())).c_str(),
                t.shape().str().c_str());
}
}  // namespace

void add_info(CLI::App& app) {
  auto a = std::make_shared<InfoArgs>();
  CLI::App* c = app.add_subcommand("info", "Describe a model file, or the available backends");
  c->add_option("--model", a->model,
                "model: a GGUF file, a llama2.c checkpoint, or a Hugging Face folder");
  c->add_flag("--backends", a->backends, "list the backends this build can open");
  c->add_flag("--json", a->json, "print JSON");
  c->callback([a] { info(*a); });
}

}  // namespace tapml::cli
