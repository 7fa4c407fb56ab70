#include "format/hf_folder.h"

#include <fstream>

#include "core/error.h"
#include "format/safetensors.h"

namespace tapml {

HfFolder open_hf_folder(const std::string& dir) {
  HfFolder f;
  f.dir = dir;
  std::ifstream in(dir + "/config.json");
  if (!in) throw Error(dir + "/config.json: cannot open");
  f.config = nlohmann::json::parse(in);
  for (auto& e : safetensors::read(dir + "/model.safetensors").tensors)
    f.tensors[e.name] = e.tensor;
  return f;
}

}  // namespace tapml
