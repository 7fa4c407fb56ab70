// TEMPORARY stand-in until the mapped reader lands: config.json + model.safetensors, copied.
#pragma once
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "core/tensor.h"

namespace tapml {

struct HfFolder {
  std::string dir;
  nlohmann::json config;
  std::map<std::string, Tensor> tensors;
};

HfFolder open_hf_folder(const std::string& dir);

}  // namespace tapml
