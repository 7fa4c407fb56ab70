#include "backend/host_call.h"

#include <cstring>
#include <memory>

#include "core/error.h"

namespace tapml {

namespace {

constexpr size_t kGuardBytes = kHostCallGuardBytes;
constexpr uint8_t kGuardByte = 0xA5;
// A quiet NaN with a recognizable payload: an output element never written stays NaN.
constexpr uint32_t kPoison = 0x7FC0DEAD;

// A buffer on the backend holding one tensor between two guard regions.
class GuardedBuffer {
 public:
  GuardedBuffer(Backend& b, const Tensor& contents, bool poison)
      : b_(b), bytes_(contents.nbytes()) {
    std::vector<uint8_t> image(bytes_ + 2 * kGuardBytes, kGuardByte);
    if (poison) {
      for (size_t i = 0; i + 4 <= bytes_; i += 4) std::memcpy(&image[kGuardBytes + i], &kPoison, 4);
    } else if (bytes_) {
      std::memcpy(&image[kGuardBytes], contents.bytes(), bytes_);
    }
    id_ = b_.alloc(image.size());
    try {
      b_.write(id_, 0, image.data(), image.size());
    } catch (...) {
      b_.free(id_);
      throw;
    }
  }
  ~GuardedBuffer() {
    try {
      b_.free(id_);
    } catch (...) {
    }
  }
  GuardedBuffer(const GuardedBuffer&) = delete;
  GuardedBuffer& operator=(const GuardedBuffer&) = delete;

  DeviceTensor tensor(DType dtype, const Shape& shape) const {
    return DeviceTensor{id_, kGuardBytes, dtype, shape};
  }
  // Reads the tensor into `out`; returns whether both guards are intact.
  bool read(Tensor& out) {
    std::vector<uint8_t> image(bytes_ + 2 * kGuardBytes);
    b_.read(id_, 0, image.data(), image.size());
    if (bytes_) std::memcpy(out.mutable_bytes(), &image[kGuardBytes], bytes_);
    for (size_t i = 0; i < kGuardBytes; ++i)
      if (image[i] != kGuardByte || image[kGuardBytes + bytes_ + i] != kGuardByte) return false;
    return true;
  }

 private:
  Backend& b_;
  size_t bytes_;
  BufferId id_ = 0;
};

}  // namespace

Support host_call_support(const Backend& backend, Op op, const Attrs& attrs,
                          const std::vector<TensorType>& inputs, const std::string& site) {
  const OpDef& def = op_def(op);
  OpCall probe{op, attrs, {}, {}, site};
  BufferId next = 1;
  for (const TensorType& t : inputs)
    probe.inputs.push_back({next++, kGuardBytes, t.dtype, t.shape});
  std::vector<TensorType> out_types = infer_outputs(op, inputs, attrs);
  for (size_t i = 0; i < out_types.size(); ++i) {
    int alias = def.inplace_of[i];
    BufferId buffer = alias >= 0 ? probe.inputs[size_t(alias)].buffer : next++;
    probe.outputs.push_back({buffer, kGuardBytes, out_types[i].dtype, out_types[i].shape});
  }
  try {
    return backend.supports(probe);
  } catch (const std::exception&) {
    return Support::yes();
  }
}

HostCallResult run_host_call(Backend& backend, Op op, const Attrs& attrs,
                             const std::vector<Tensor>& inputs, const std::string& site,
                             const std::vector<std::optional<DeviceTensor>>* resident) {
  const OpDef& def = op_def(op);
  std::vector<TensorType> in_types;
  for (const Tensor& t : inputs) in_types.push_back({t.dtype(), t.shape()});
  std::vector<TensorType> out_types = infer_outputs(op, in_types, attrs);

  TAPML_REQUIRE(!resident || resident->size() == inputs.size(),
                "run_host_call: " + std::to_string(resident ? resident->size() : 0) +
                    " resident entries for " + std::to_string(inputs.size()) + " inputs");
  std::vector<std::unique_ptr<GuardedBuffer>> in_bufs, out_bufs;
  OpCall call{op, attrs, {}, {}, site};
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& t = inputs[i];
    if (resident && (*resident)[i]) {
      const DeviceTensor& r = *(*resident)[i];
      const TensorType want{t.dtype(), t.shape()};
      TAPML_REQUIRE(r.type() == want, "run_host_call: resident input " + std::to_string(i) +
                                          " is " + describe(r.type()) + ", the call's is " +
                                          describe(want));
      for (int alias : def.inplace_of)
        TAPML_REQUIRE(alias != int(i), "run_host_call: input " + std::to_string(i) +
                                           " is written in place and cannot be resident");
      in_bufs.push_back(nullptr);
      call.inputs.push_back(r);
      continue;
    }
    in_bufs.push_back(std::make_unique<GuardedBuffer>(backend, t, false));
    call.inputs.push_back(in_bufs.back()->tensor(t.dtype(), t.shape()));
  }
  for (size_t i = 0; i < out_types.size(); ++i) {
    int alias = def.inplace_of[i];
    if (alias >= 0) {
      call.outputs.push_back(call.inputs[size_t(alias)]);
      continue;
    }
    Tensor shape_only(out_types[i].dtype, out_types[i].shape);
    out_bufs.push_back(std::make_unique<GuardedBuffer>(backend, shape_only, true));
    call.outputs.push_back(out_bufs.back()->tensor(out_types[i].dtype, out_types[i].shape));
  }

  Support s = backend.supports(call);
  TAPML_REQUIRE(s.ok,
                backend.info().name + " cannot run " + std::string(op_name(op)) + ": " + s.reason);
  backend.run(call);
  backend.sync();

  HostCallResult r;
  size_t fresh = 0;
  for (size_t i = 0; i < out_types.size(); ++i) {
    Tensor out(out_types[i].dtype, out_types[i].shape);
    int alias = def.inplace_of[i];
    GuardedBuffer& buf = alias >= 0 ? *in_bufs[size_t(alias)] : *out_bufs[fresh++];
    r.guards_intact.push_back(buf.read(out));
    r.outputs.push_back(std::move(out));
  }
  return r;
}

}  // namespace tapml
