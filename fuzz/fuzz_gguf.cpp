// libFuzzer target: any bytes given to gguf::File::from_memory must either parse or throw
// tapml::Error; every metadata value, every tensor byte and the llama view of the file are
// then touched so the sanitizers see any read the parser wrongly allowed.
#include <cstddef>
#include <cstdint>
#include <memory>

#include "core/error.h"
#include "format/gguf.h"
#include "model/model_file.h"

using namespace tapml;

namespace {

size_t visit(const gguf::Value& v) {
  size_t n = 1;
  if (const auto* s = std::get_if<std::string>(&v.v)) n += s->size();
  if (const auto* a = std::get_if<gguf::Array>(&v.v))
    for (const gguf::Value& e : *a) n += visit(e);
  return n;
}

volatile uint64_t sink;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::shared_ptr<const gguf::File> file;
  try {
    file = std::make_shared<const gguf::File>(
        gguf::File::from_memory(nullptr, data, size, "fuzz.gguf"));
  } catch (const Error&) {
    return 0;
  }
  const gguf::File& f = *file;
  uint64_t acc = 0;
  for (const auto& [key, value] : f.metadata()) {
    acc += visit(value) + gguf::describe(value, 4).size();
    // Getters of every kind on every key: wrong types must throw Error, nothing else.
    try {
      acc += f.get_uint(key);
    } catch (const Error&) {
    }
    try {
      acc += uint64_t(f.get_int(key));
    } catch (const Error&) {
    }
    try {
      acc += uint64_t(f.get_float(key) != 0);
    } catch (const Error&) {
    }
    try {
      acc += f.get_string(key).size();
    } catch (const Error&) {
    }
    try {
      acc += f.get_array(key).size();
    } catch (const Error&) {
    }
    try {
      acc += f.get_bool(key);
    } catch (const Error&) {
    }
  }
  for (const gguf::TensorInfo& ti : f.tensors()) {
    for (uint8_t b : f.tensor_bytes(ti.name)) acc += b;
    try {
      Tensor t = f.tensor(ti.name);
      if (is_block(t.dtype())) {
        // Block types are read a row at a time: the first row, dequantized.
        const Shape& s = t.shape();
        Tensor row = s.rank() > 1 ? t.reshaped(Shape{s.rows(), s.back()}).slice_rows(0, 1) : t;
        std::vector<float> v = row.to_f32();
        acc += uint64_t(!v.empty() && v.back() != 0);
      } else if (t.numel() > 0) {
        acc += uint64_t(t.get_f32(0) != 0) + uint64_t(t.get_f32(t.numel() - 1) != 0);
      }
    } catch (const Error&) {
      if (gguf::tensor_type_readable(ti.type)) __builtin_trap();  // readable types must read
    }
  }
  try {
    ModelFile m = model_from_gguf(file);
    validate_model(m);
    acc += m.weights.size();
  } catch (const Error&) {
  }
  sink = acc;
  return 0;
}
