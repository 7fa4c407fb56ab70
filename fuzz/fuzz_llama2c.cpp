// libFuzzer target: any bytes given to load_llama2c_memory must either load or throw
// tapml::Error; a loaded model must validate and every weight byte must be readable.
#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "model/model_file.h"

using namespace tapml;

namespace {
volatile uint64_t sink;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  uint64_t acc = llama2c_header_problem(data, size).size();
  ModelFile m;
  try {
    m = load_llama2c_memory(nullptr, data, size, "fuzz.bin");
  } catch (const Error&) {
    sink = acc;
    return 0;
  }
  // The loader checked the header and the size, so its model must be complete.
  validate_model(m);
  for (const auto& [name, t] : m.weights) {
    const auto* p = reinterpret_cast<const uint8_t*>(t.bytes());
    for (size_t i = 0; i < t.nbytes(); ++i) acc += p[i];
  }
  sink = acc;
  return 0;
}
