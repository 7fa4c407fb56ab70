// GGUF v2/v3 files (little-endian): metadata key/values, tensor directory and tensor data.
// Reading validates everything against the file size before trusting it, so a truncated or
// hostile file gives an Error naming the problem, never a crash or a huge allocation.
// Beyond the specification's own rules (names <= 64 bytes, <= 4 dims, aligned offsets) it
// refuses zero dims, overlapping tensors, arrays nested over 8 deep and more than 2^24
// array items in all (each costs ~50 bytes of memory).
// The writer makes GGUF v3 files (tests, benchmarks, exports).
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/tensor.h"

namespace tapml::gguf {

// GGUF metadata value types, numbered as in the specification.
enum class ValueType : uint32_t {
  U8 = 0,
  I8 = 1,
  U16 = 2,
  I16 = 3,
  U32 = 4,
  I32 = 5,
  F32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  U64 = 10,
  I64 = 11,
  F64 = 12,
};

struct Value;
using Array = std::vector<Value>;
struct Value {
  ValueType type = ValueType::U32;
  // Integers of every width are held as int64/uint64; floats as double.
  std::variant<uint64_t, int64_t, double, bool, std::string, Array> v;
  // For arrays: the element type (also when empty).
  ValueType elem_type = ValueType::U32;

  bool operator==(const Value&) const = default;
};

// "U32", "STRING", ... ("type 13" for ids outside the specification).
std::string value_type_name(ValueType t);
// A short one-line rendering for listings: numbers, quoted strings, arrays as
// "[STRING x 32000: 'a', 'b', ...]" with at most `max_items` items shown.
std::string describe(const Value& v, size_t max_items = 8);

// ggml tensor type ids from the GGUF specification that TapML can read.
enum class TensorType : uint32_t { F32 = 0, F16 = 1, BF16 = 30 };

// The ggml name of a tensor type id ("Q4_0"), or "" for ids this build does not know.
std::string_view tensor_type_name(uint32_t type);
// Whether File::tensor() can return tensors of this type (F32, F16, BF16 and the quantized
// block types of core/quant.h: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K..Q6_K).
bool tensor_type_readable(uint32_t type);

struct TensorInfo {
  std::string name;
  std::vector<uint64_t> ne;  // GGUF order: ne[0] is the fastest-varying dimension
  uint32_t type = 0;         // raw ggml type id
  uint64_t offset = 0;       // relative to the start of the data section
  uint64_t nbytes = 0;       // size of the data (quantized types: whole blocks)
};

class File {
 public:
  // Maps and parses `path`. Throws Error ("PATH: what is wrong") on any defect.
  static File open(const std::string& path);
  // Whether the file at `path` starts with the GGUF magic (false when unreadable).
  static bool has_magic(const std::string& path);
  // Parses `size` bytes at `data`, which `owner` keeps alive (may be null when the caller
  // guarantees the bytes outlive the File and its tensors, as a fuzzer does). `name` stands
  // for the path in messages.
  static File from_memory(std::shared_ptr<const void> owner, const uint8_t* data, size_t size,
                          std::string name);

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  const std::map<std::string, Value>& metadata() const { return kv_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }

  const Value* find(const std::string& key) const;
  bool has(const std::string& key) const { return find(key) != nullptr; }
  // Typed getters; throw Error if absent or of a wrong type. Integer getters accept any
  // integer type whose value fits.
  uint64_t get_uint(const std::string& key) const;
  int64_t get_int(const std::string& key) const;
  double get_float(const std::string& key) const;
  bool get_bool(const std::string& key) const;
  const std::string& get_string(const std::string& key) const;
  const Array& get_array(const std::string& key) const;
  // With defaults when absent (still throw on a wrong type).
  uint64_t get_uint_or(const std::string& key, uint64_t fallback) const;
  double get_float_or(const std::string& key, double fallback) const;
  bool get_bool_or(const std::string& key, bool fallback) const;
  std::string get_string_or(const std::string& key, const std::string& fallback) const;

  const TensorInfo* find_tensor(const std::string& name) const;
  // The tensor as a host Tensor borrowing the mapped bytes (shape outermost first, i.e. ne
  // reversed). Throws Error for unknown names or types TapML cannot read. Data that is not
  // aligned to its element size in memory (general.alignment 1 or 2) is copied instead.
  Tensor tensor(const std::string& name) const;
  // The raw bytes of any tensor, quantized ones included (validated to lie in the file).
  std::span<const uint8_t> tensor_bytes(const std::string& name) const;

  uint64_t size() const { return size_; }
  uint64_t data_offset() const { return data_offset_; }

 private:
  std::string path_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  std::map<std::string, Value> kv_;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t> tensor_index_;  // name -> position in tensors_
  std::shared_ptr<const void> mapping_;         // keeps the file mapped
  const uint8_t* base_ = nullptr;
  uint64_t size_ = 0;
  uint64_t data_offset_ = 0;
};

// Builds a GGUF v3 file in memory order: add metadata and tensors, then write.
class Writer {
 public:
  void set(const std::string& key, Value value);
  void set_string(const std::string& key, const std::string& s);
  void set_u32(const std::string& key, uint32_t x);
  void set_f32(const std::string& key, float x);
  void set_bool(const std::string& key, bool x);
  void set_string_array(const std::string& key, const std::vector<std::string>& xs);
  void set_f32_array(const std::string& key, const std::vector<float>& xs);
  void set_i32_array(const std::string& key, const std::vector<int32_t>& xs);
  // Tensor of dtype F32, F16, BF16 or a block type (rows of whole blocks); shape outermost
  // first. The bytes are shared, not
  // copied, and written straight from the tensor.
  void add_tensor(const std::string& name, const Tensor& t);
  // A tensor whose bytes are produced during write(), so a model larger than memory can be
  // written: `fill` is called with consecutive chunks (byte offset into the tensor and the
  // chunk to fill) that together cover the tensor once.
  using TensorFill = std::function<void(uint64_t offset, std::span<std::byte> chunk)>;
  void add_tensor(const std::string& name, DType dtype, const Shape& shape, TensorFill fill);
  // A nonzero power of two; also recorded as general.alignment.
  void set_alignment(uint32_t a);
  // Writes atomically (temp file + rename). Throws Error on I/O failure.
  void write(const std::string& path) const;

 private:
  struct PendingTensor {
    std::string name;
    DType dtype;
    Shape shape;
    Tensor data;      // set for add_tensor(name, t)
    TensorFill fill;  // set for the streaming overload
  };
  void check_new_tensor(const std::string& name, DType dtype, const Shape& shape) const;

  std::vector<std::pair<std::string, Value>> kv_;
  std::vector<PendingTensor> tensors_;
  uint32_t alignment_ = 32;
};

}  // namespace tapml::gguf
