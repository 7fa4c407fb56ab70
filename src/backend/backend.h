// The Backend interface: what a platform must offer TapML. Deliberately narrow (buffers,
// one op call at a time, sync) so a GPU API, a remote device or a browser tab can host it.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/shape.h"
#include "ops/op.h"

namespace tapml {

using BufferId = uint64_t;

// A tensor stored in a backend buffer: a contiguous row-major byte range at `offset`.
struct DeviceTensor {
  BufferId buffer = 0;
  size_t offset = 0;
  DType dtype = DType::F32;
  Shape shape;

  size_t nbytes() const { return tensor_bytes(dtype, shape); }
  TensorType type() const { return {dtype, shape}; }
};

// One operator invocation. Outputs that the catalog marks in-place name the same bytes as
// their input. `site` says where in the model the call happens ("blk.3.attn_q"); kernels
// must not depend on it (the fault-injection wrapper does, on purpose).
struct OpCall {
  Op op = Op::Add;
  Attrs attrs;
  std::vector<DeviceTensor> inputs;
  std::vector<DeviceTensor> outputs;
  std::string site;
};

// The one check of a call every layer makes before trusting it (dispatcher, host and GPU
// backends, the RPC server, single-call runs): the catalog's rules for its types and
// attributes (validate_types), every in-place output naming exactly the bytes of the input it
// overwrites, and no other output overlapping an input or another output in the same buffer.
// Throws Error("OP: what is wrong").
void validate(const OpCall& call);
// Whether two tensors share a byte (an empty tensor shares none).
bool overlap(const DeviceTensor& a, const DeviceTensor& b);

struct Support {
  bool ok = true;
  std::string reason;  // why not, when !ok
  static Support yes() { return {}; }
  static Support no(std::string why) { return {false, std::move(why)}; }
};

struct BackendInfo {
  std::string uri;     // as given to open_backend
  std::string name;    // "ref", "cpu", ...
  std::string device;  // human-readable device description
  size_t max_buffer_bytes = SIZE_MAX;
  size_t memory_bytes = 0;  // 0 = unknown
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const BackendInfo& info() const = 0;

  // Buffers. Ids are unique per backend and never 0. Errors throw tapml::Error.
  virtual BufferId alloc(size_t bytes) = 0;
  virtual void free(BufferId id) = 0;
  virtual void write(BufferId id, size_t offset, const void* src, size_t bytes) = 0;
  virtual void read(BufferId id, size_t offset, void* dst, size_t bytes) = 0;

  // Whether run(call) would work, and why not. Must not throw for well-formed calls. The
  // answer must follow from the call's op, attributes, site, tensor types and how its tensors
  // overlap, not from which buffers they are: the dispatcher asks once for a call that repeats
  // the one at the same place of the previous step.
  virtual Support supports(const OpCall& call) const = 0;
  // Runs the call; outputs are readable after sync() (immediately for host backends).
  virtual void run(const OpCall& call) = 0;
  // run(call) for a call that supports() has accepted: just now, or for the same call at the
  // same place of an earlier step (same op, attributes, site, types and overlaps; see
  // supports()). The dispatcher asks first, to name the site in its error. A backend whose
  // run() repeats the whole check may skip it here: on a decode step that check is a large
  // share of host time.
  virtual void run_supported(const OpCall& call) { run(call); }
  virtual void sync() {}
};

}  // namespace tapml
