#include "format/hf_folder.h"

#include <filesystem>
#include <set>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "core/json_text.h"
#include "core/mapped_file.h"
#include "format/untrusted_json.h"

namespace tapml {

namespace fs = std::filesystem;

namespace {

constexpr char kConfig[] = "config.json";
constexpr char kSingle[] = "model.safetensors";
constexpr char kIndex[] = "model.safetensors.index.json";
// Real config.json and index files are kilobytes to a few megabytes.
constexpr size_t kMaxJsonFile = 100'000'000;

std::string in_dir(const std::string& dir, const std::string& name) {
  return (fs::path(dir) / name).string();
}

// Follows symbolic links: a dangling link (a blob the Hub's cache never fetched) is absent.
bool is_file(const std::string& path) {
  std::error_code ec;
  return fs::is_regular_file(path, ec);
}

bool exists(const std::string& path) {
  std::error_code ec;
  return fs::exists(path, ec);
}

template <class Json>
Json read_json_file(const std::string& path) {
  std::shared_ptr<const MappedFile> m = MappedFile::open(path);
  if (m->size() > kMaxJsonFile)
    throw Error(path + ": " + std::to_string(m->size()) + " bytes, over the " +
                std::to_string(kMaxJsonFile) + "-byte limit for a JSON file");
  std::string_view text(reinterpret_cast<const char*>(m->data()), m->size());
  return parse_untrusted_json<Json>(text, path + ": the file");
}

// A shard must be a file of the folder itself: an index must not reach elsewhere.
bool plain_file_name(const std::string& s) {
  return !s.empty() && s != "." && s != ".." &&
         s.find_first_of(std::string("/\\\0", 3)) == std::string::npos;
}

// The shards of an index, each with the tensors the index puts there (in name order).
struct Index {
  std::map<std::string, std::vector<std::string>> shards;
  std::map<std::string, std::string> weight_map;  // tensor -> shard
};

Index read_index(const std::string& path) {
  nlohmann::ordered_json index = read_json_file<nlohmann::ordered_json>(path);
  if (!index.is_object()) throw Error(path + ": not a JSON object");
  if (!index.contains("weight_map") || !index["weight_map"].is_object())
    throw Error(path + ": no \"weight_map\" object (tensor name -> shard file)");
  Index out;
  for (auto& [name, file] : index["weight_map"].items()) {
    if (!file.is_string())
      throw Error(path + ": weight_map gives tensor " + quote_name(name) +
                  " a shard that is not a string");
    const std::string& shard = file.get_ref<const std::string&>();
    if (!plain_file_name(shard))
      throw Error(path + ": weight_map puts tensor " + quote_name(name) + " in " +
                  quote_name(shard) + ", which is not a file name inside the folder");
    out.weight_map[name] = shard;
    out.shards[shard].push_back(name);
  }
  if (out.weight_map.empty()) throw Error(path + ": weight_map lists no tensors");
  return out;
}

// The one weights file of a folder without model.safetensors or an index.
std::string only_safetensors_file(const std::string& dir) {
  std::set<std::string> found;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::string name = it->path().filename().string();
    if (name.size() > 12 && name.ends_with(".safetensors") && is_file(it->path().string()))
      found.insert(name);
  }
  if (ec) throw Error(dir + ": cannot list the folder: " + ec.message());
  if (found.size() == 1) return *found.begin();
  if (found.empty()) {
    std::string hint = exists(in_dir(dir, "pytorch_model.bin"))
                           ? " (pytorch_model.bin is a pickle, which TapML does not read)"
                           : "";
    throw Error(dir + ": no " + kSingle + ", " + kIndex + " or other .safetensors file" + hint);
  }
  std::string names;
  size_t shown = 0;
  for (const std::string& n : found) {
    if (shown++ == 3) {
      names += ", ...";
      break;
    }
    names += (names.empty() ? "" : ", ") + n;
  }
  throw Error(dir + ": " + std::to_string(found.size()) + " .safetensors files (" + names +
              ") and no " + kIndex + " to say which hold the model");
}

}  // namespace

const Tensor& HfFolder::tensor(const std::string& name) const {
  auto it = tensors.find(name);
  if (it != tensors.end()) return it->second;
  auto s = sources.find(name);
  if (s != sources.end())
    throw Error(s->second.file + ": tensor " + quote_name(name) + " has dtype " +
                s->second.entry.dtype + "; TapML reads F32, F16, BF16 and I32");
  throw Error(dir + ": no tensor named " + quote_name(name));
}

HfFolder open_hf_folder(const std::string& dir) {
  std::error_code ec;
  fs::file_status st = fs::status(dir, ec);
  if (!fs::exists(st)) throw Error(dir + ": no such folder");
  if (!fs::is_directory(st))
    throw Error(dir + ": not a folder (a Hugging Face model is a folder with config.json)");

  HfFolder f;
  f.dir = dir;
  const std::string config_path = in_dir(dir, kConfig);
  if (!exists(config_path))
    throw Error(config_path + ": missing; a Hugging Face model folder has one");
  f.config = read_json_file<nlohmann::json>(config_path);
  if (!f.config.is_object()) throw Error(config_path + ": not a JSON object");

  // transformers' order of preference: the single file, then the index.
  const std::string index_path = in_dir(dir, kIndex);
  Index index;
  bool indexed = false;
  if (exists(in_dir(dir, kSingle))) {
    index.shards[kSingle];
  } else if (exists(index_path)) {
    index = read_index(index_path);
    indexed = true;
    for (const auto& [shard, names] : index.shards)
      if (!is_file(in_dir(dir, shard)))
        throw Error(in_dir(dir, shard) + ": missing, but " + kIndex + " puts " +
                    quote_name(names[0]) +
                    (names.size() > 1 ? " and " + std::to_string(names.size() - 1) +
                                            (names.size() > 2 ? " more tensors" : " more tensor")
                                      : "") +
                    " there");
  } else {
    index.shards[only_safetensors_file(dir)];
  }

  for (const auto& [shard, names] : index.shards) {
    const std::string path = in_dir(dir, shard);
    safetensors::File file = safetensors::File::open(path);
    for (const safetensors::TensorEntry& e : file.entries()) {
      auto [it, fresh] = f.sources.emplace(e.name, HfTensorSource{path, e});
      if (!fresh)
        throw Error(path + ": tensor " + quote_name(e.name) + " is also in " + it->second.file +
                    "; a tensor belongs to one shard");
      if (safetensors::readable_dtype(e.dtype)) f.tensors.emplace(e.name, file.tensor(e.name));
    }
  }
  if (indexed) {
    for (const auto& [name, shard] : index.weight_map) {
      const std::string path = in_dir(dir, shard);
      auto it = f.sources.find(name);
      if (it == f.sources.end())
        throw Error(path + ": no tensor " + quote_name(name) + ", which " + kIndex + " puts there");
      if (it->second.file != path)
        throw Error(index_path + ": weight_map puts tensor " + quote_name(name) + " in " +
                    quote_name(shard) + ", but " + it->second.file + " holds it");
    }
  }
  return f;
}

bool is_hf_folder(const std::string& path) {
  std::error_code ec;
  return fs::is_directory(path, ec) && is_file(in_dir(path, kConfig));
}

}  // namespace tapml
