// The opencl backend. One in-order queue per backend on the device's shared context; every
// tensor is passed to a kernel as its buffer and byte offset, so a tensor may start at any
// (element-aligned) offset the host chose. Kernels are enqueued without waiting, small
// writes too (from a copy); read() is a blocking transfer on the same queue, so it sees
// every earlier call.
#include "backends/opencl/opencl_backend.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <optional>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <unordered_map>

#include "backend/call_fusion.h"
#include "backend/host_shadow.h"
#include "backend/kernel_table.h"
#include "backends/opencl/cl_api.h"
#include "backends/opencl/device.h"
#include "backends/opencl/submitter.h"
#include "core/dtype.h"
#include "core/error.h"

namespace tapml {

namespace {

using namespace opencl;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

int weight_code(DType t) { return t == DType::F16 ? 1 : t == DType::BF16 ? 2 : 0; }

// A tensor as two kernel arguments: its buffer and its byte offset.
struct TensorArg {
  cl_mem mem;
  cl_ulong offset;
};

// One kernel of one program, as a call uses it: kernels/FILE.cl's NAME, built with the
// weight dtype WTYPE; `reduces`: a kernel with a fixed work-group size (its reductions);
// `qtype`: the block type's ggml id (QTYPE) for the quantized kernels, else 0.
struct KernelKey {
  KernelKey(const char* file, const char* name, int wtype = 0, bool reduces = false,
            size_t group = 0, std::string extra = "")
      : file(file),
        name(name),
        wtype(wtype),
        reduces(reduces),
        group(group),
        extra(std::move(extra)) {}
  const char* file;
  const char* name;
  int wtype;
  bool reduces;
  size_t group;       // work-items per group, when the call chooses it (0: by name)
  std::string extra;  // further build options (-D...)
  int qtype = 0;
};

// A quantized kernel's key: the block type's ggml id as QTYPE.
KernelKey quant_key(const char* file, const char* name, bool reduces, int qtype) {
  KernelKey k(file, name, 0, reduces);
  k.qtype = qtype;
  return k;
}

int quant_code(DType t) { return int(*block_quant(t)); }

// Work-items per group of the reducing kernels: a power of two, at most the device's limit.
size_t group_size(size_t preferred, size_t device_max) {
  size_t g = 1;
  while (g * 2 <= std::min(preferred, device_max)) g *= 2;
  return g;
}

class OpenClBackend final : public Backend {
 public:
  OpenClBackend(const ClApi& cl, const DeviceFacts& device, const BackendUri& uri)
      : cl_(cl), device_(device), ctx_(DeviceContext::of(cl, device)) {
    info_ = {uri.text, "opencl", device_.describe(), size_t(device_.max_alloc),
             size_t(device_.global_memory)};
    cl_int err = CL_SUCCESS;
    const char* stats = std::getenv("TAPML_OPENCL_STATS");
    stats_ = stats != nullptr;
    profile_ = stats_ && std::string_view(stats) != "host";
    if (const char* b = std::getenv("TAPML_OPENCL_BLOCKED")) blocked_ = std::string_view(b) != "0";
    if (const char* r = std::getenv("TAPML_OPENCL_BLOCK_ROWS"))
      block_rows_ = std::string_view(r) == "8" ? 8 : 4;
    const char* fuse = std::getenv("TAPML_OPENCL_FUSE");
    fuse_ = !(fuse && std::string_view(fuse) == "0");
    if (const char* m = std::getenv("TAPML_OPENCL_PROJ_MAX")) proj_max_ = std::atoll(m);
    queue_ = cl_.clCreateCommandQueue(ctx_->context(), device_.device,
                                      profile_ ? CL_QUEUE_PROFILING_ENABLE : 0, &err);
    check(err, "clCreateCommandQueue");
    wg_ = group_size(128, device_.max_work_group);
    matmul_wg_ = group_size(64, device_.max_work_group);
    gemv_wg_ = group_size(128, device_.max_work_group);
    proj_wg_ = group_size(256, device_.max_work_group);
    items_wg_ = group_size(64, device_.max_work_group);
    dummy_ = create(16);
    map_staging();
    Submitter::Options so;
    so.profile = profile_;
    // On GPUs (H200, 125M f16 decode: 715 -> 910 tok/s); TAPML_OPENCL_FLUSH=0 leaves it to
    // the driver, =1 flushes on any device.
    so.flush_when_idle = device_.gpu();
    if (const char* v = std::getenv("TAPML_OPENCL_FLUSH"))
      so.flush_when_idle = std::string_view(v) != "0";
    if (const char* v = std::getenv("TAPML_OPENCL_COPIES")) {
      copies_on_ = std::string_view(v) != "0";
      so.skip_unchanged_args = copies_on_;
    }
    submitter_ = std::make_unique<Submitter>(cl_, queue_, so);
    if (fuse_) start_fusion();

    kernels_.add(Op::Embedding, this, &OpenClBackend::embedding);
    kernels_.add(Op::RmsNorm, this, &OpenClBackend::rmsnorm);
    kernels_.add(Op::Matmul, this, &OpenClBackend::matmul);
    kernels_.add(Op::Rope, this, &OpenClBackend::rope, {}, {"freq_factors"});
    // f32 caches only: an f16 cache is refused, not read as f32.
    kernels_.add(Op::KvStore, this, &OpenClBackend::kv_store,
                 {{DType::F32}, {DType::F32}, {DType::F32}, {DType::F32}, {DType::I32}});
    kernels_.add(Op::Attention, this, &OpenClBackend::attention,
                 {{DType::F32}, {DType::F32}, {DType::F32}}, {"window", "softcap"});
    kernels_.add(Op::Swiglu, this, &OpenClBackend::swiglu);
    kernels_.add(Op::Add, this, &OpenClBackend::add);
    kernels_.add(Op::Gelu, this, &OpenClBackend::gelu);
    kernels_.add(Op::LayerNorm, this, &OpenClBackend::layernorm);
    kernels_.add(Op::Bias, this, &OpenClBackend::bias);
    kernels_.add(Op::Mul, this, &OpenClBackend::mul);
    kernels_.add(Op::Scale, this, &OpenClBackend::scale);
    kernels_.add(Op::Softcap, this, &OpenClBackend::softcap);
    kernels_.add(Op::SigmoidGate, this, &OpenClBackend::sigmoid_gate);
    kernels_.add(Op::MoeRoute, this, &OpenClBackend::moe_route);
    kernels_.add(Op::MoeFfn, this, &OpenClBackend::moe_ffn);
    // Quantized weights and tables, every block type by name (the table refuses the rest).
    const std::vector<DType> blocks(std::begin(kBlockDTypes), std::end(kBlockDTypes));
    kernels_.add(Op::Matmul, this, &OpenClBackend::matmul_quant, {{DType::F32}, blocks});
    kernels_.add(Op::Embedding, this, &OpenClBackend::embedding_quant, {blocks, {DType::I32}});
  }

  ~OpenClBackend() override {
    try {
      flush_held();
      submitter_->finish();
    } catch (...) {
    }
    if (stats_) print_stats();
    submitter_.reset();  // every command done; the thread stopped
    for (auto& [id, b] : buffers_) cl_.clReleaseMemObject(b.mem);
    for (auto& [cap, list] : spare_)
      for (cl_mem m : list) cl_.clReleaseMemObject(m);
    for (auto& [key, m] : rope_tables_) cl_.clReleaseMemObject(m);
    if (scratch_) cl_.clReleaseMemObject(scratch_);
    if (partials_) cl_.clReleaseMemObject(partials_);
    if (done_) cl_.clReleaseMemObject(done_);
    if (staging_host_)
      cl_.clEnqueueUnmapMemObject(queue_, staging_, staging_host_, 0, nullptr, nullptr);
    cl_.clFinish(queue_);
    if (staging_) cl_.clReleaseMemObject(staging_);
    cl_.clReleaseMemObject(dummy_);
    for (auto& [key, c] : built_)
      for (cl_kernel k : c.kernels) cl_.clReleaseKernel(k);
    cl_.clReleaseCommandQueue(queue_);
  }

  const BackendInfo& info() const override { return info_; }

  BufferId alloc(size_t bytes) override {
    TAPML_REQUIRE(bytes <= device_.max_alloc,
                  "opencl: a buffer of " + std::to_string(bytes) +
                      " bytes exceeds the device's CL_DEVICE_MAX_MEM_ALLOC_SIZE of " +
                      std::to_string(device_.max_alloc));
    const size_t cap = std::max<size_t>(256, (bytes + 255) / 256 * 256);
    cl_mem m = nullptr;
    auto it = spare_.find(cap);
    if (it != spare_.end() && !it->second.empty()) {
      m = it->second.front();
      it->second.pop_front();
    } else {
      m = create(cap);
    }
    BufferId id = next_id_++;
    buffers_[id] = {m, bytes, cap};
    return id;
  }

  // Freed buffers are kept for reuse: a decode step frees and allocates the same sizes every
  // time. A queued kernel may still use it; a later use is queued after that kernel. First
  // freed, first reused: a step frees its buffers in the order it made them, so the next step
  // gets the same buffer for each call, and its launches repeat their arguments (copy_of).
  void free(BufferId id) override {
    auto it = buffers_.find(id);
    TAPML_REQUIRE(it != buffers_.end(), "opencl: free of unknown buffer " + std::to_string(id));
    if (fusion_ && fusion_->holds(id)) flush_held();
    spare_[it->second.capacity].push_back(it->second.mem);
    buffers_.erase(it);
    shadow_.forget(id);
  }

  // Small writes (token ids, positions) are queued without waiting, from pinned host memory
  // (a CL_MEM_ALLOC_HOST_PTR buffer kept mapped), which drivers copy from asynchronously; a
  // blocking write, or one from ordinary memory, waits for every queued kernel first, and
  // a step's inputs are written between its kernels. Staging space is reused once the
  // queue has drained (read(), sync()).
  void write(BufferId id, size_t offset, const void* src, size_t bytes) override {
    const auto start =
        stats_ ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point();
    const Buffer& b = buffer(id, offset, bytes, "write");
    // Held calls that do not use the buffer may be launched after the write.
    if (fusion_ && fusion_->holds(id)) flush_held();
    if (bytes > 0 && staging_host_ && bytes <= kStagingBytes / 4) {
      if (staging_used_ + bytes > kStagingBytes) sync();
      std::byte* at = staging_host_ + staging_used_;
      std::memcpy(at, src, bytes);
      submitter_->write_async(b.mem, offset, bytes, at);
      staging_used_ += (bytes + 63) / 64 * 64;
    } else if (bytes > 0) {
      submitter_->write(b.mem, offset, bytes, src);
    }
    shadow_.wrote(id, offset, src, bytes);
    if (stats_) write_s_ += seconds_since(start), writes_ += 1;
  }
  static constexpr size_t kStagingBytes = 1 << 20;
  cl_mem staging_ = nullptr;
  std::byte* staging_host_ = nullptr;  // null: the device gave no mapping; writes block
  size_t staging_used_ = 0;
  // After a blocking read or clFinish every queued write has been done.
  void queue_drained() {
    staging_used_ = 0;
    ++round_;  // a step's end: launches start over at each kernel's first copy
  }
  void map_staging() {
    cl_int err = CL_SUCCESS;
    staging_ = cl_.clCreateBuffer(ctx_->context(), CL_MEM_READ_WRITE | CL_MEM_ALLOC_HOST_PTR,
                                  kStagingBytes, nullptr, &err);
    if (err != CL_SUCCESS) {
      staging_ = nullptr;
      return;
    }
    void* p = cl_.clEnqueueMapBuffer(queue_, staging_, CL_TRUE, CL_MAP_WRITE, 0, kStagingBytes, 0,
                                     nullptr, nullptr, &err);
    if (err == CL_SUCCESS) staging_host_ = static_cast<std::byte*>(p);
  }

  void read(BufferId id, size_t offset, void* dst, size_t bytes) override {
    const auto start =
        stats_ ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point();
    const Buffer& b = buffer(id, offset, bytes, "read");
    flush_held();
    if (bytes > 0) {
      submitter_->read(b.mem, offset, bytes, dst);
      queue_drained();
    }
    if (stats_) read_s_ += seconds_since(start), reads_ += 1;
  }

  void sync() override {
    flush_held();
    submitter_->finish();
    queue_drained();
  }

  Support supports(const OpCall& c) const override {
    try {
      validate(c);
    } catch (const Error& e) {
      return Support::no(e.what());
    }
    std::string why;
    if (!kernels_.find(c, "opencl", &why)) return Support::no(why);
    const std::string op(op_name(c.op));
    auto fits = [&](const DeviceTensor& t, const char* what) -> Support {
      // Blocks are read byte by byte, so they may start at any byte.
      const size_t align = is_block(t.dtype) ? 1 : dtype_size(t.dtype) == 2 ? 2 : 4;
      if (t.offset % align)
        return Support::no("opencl: " + op + " " + what + " at byte offset " +
                           std::to_string(t.offset) + " is not " + std::to_string(align) +
                           "-byte aligned");
      if (t.nbytes() > device_.max_alloc)
        return Support::no("opencl: " + op + " " + what + " " + t.shape.str() + " of " +
                           std::to_string(t.nbytes()) +
                           " bytes exceeds the device's CL_DEVICE_MAX_MEM_ALLOC_SIZE of " +
                           std::to_string(device_.max_alloc));
      if (uint64_t(t.shape.numel()) > UINT32_MAX)
        return Support::no("opencl: " + op + " " + what + " " + t.shape.str() +
                           " has more than 2^32 - 1 elements (the kernels index in 32 bits)");
      return Support::yes();
    };
    for (auto& t : c.inputs)
      if (Support s = fits(t, "input"); !s.ok) return s;
    for (auto& t : c.outputs)
      if (Support s = fits(t, "output"); !s.ok) return s;
    if (c.op == Op::Attention || c.op == Op::MoeFfn) {
      const size_t scratch = scratch_bytes(c);
      if (scratch > device_.max_alloc)
        return Support::no(
            "opencl: " + op + (c.op == Op::Attention ? " scores need " : " activations need ") +
            std::to_string(scratch) + " bytes, over the device's CL_DEVICE_MAX_MEM_ALLOC_SIZE of " +
            std::to_string(device_.max_alloc));
    }
    for (const KernelKey& k : keys(c))
      if (Support s = kernel_fits(k); !s.ok) return s;
    return Support::yes();
  }

  void run(const OpCall& c) override { timed_run(c, true); }
  void run_supported(const OpCall& c) override { timed_run(c, false); }

 private:
  void timed_run(const OpCall& c, bool check) {
    const auto start =
        stats_ ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point();
    run_call(c, check);
    if (stats_) {
      run_s_ += seconds_since(start);
      ++runs_;
    }
  }

  static double seconds_since(std::chrono::steady_clock::time_point start) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }

  // check: whether supports() must still be asked (not when the caller just did).
  void run_call(const OpCall& c, bool check) {
    for (auto& t : c.inputs) buffer(t.buffer, t.offset, t.nbytes(), "run");
    for (auto& t : c.outputs) buffer(t.buffer, t.offset, t.nbytes(), "run");
    if (check)
      if (Support s = supports(c); !s.ok) throw Error(s.reason);
    for (auto& t : c.outputs) shadow_.forget(t.buffer);
    if (fusion_ && fusion_->offer(c)) return;
    kernels_.run(c, "opencl");
  }

  // ---- Calls held back to run with their neighbours as one kernel (backend/call_fusion.h):
  // a one-row matmul group is one gemv_fused launch, a rope pair one rope launch.
  // TAPML_OPENCL_FUSE=0 turns holding off.
  std::unique_ptr<CallFusion> fusion_;

  void start_fusion() {
    CallFusion::Hooks h;
    h.can_hold_norm = [this](const OpCall& c) {
      const DeviceTensor &x = c.inputs[0], &w = c.inputs[1];
      return x.shape[0] == 1 && w.dtype == DType::F32 && x.shape[1] <= 8192 &&
             x.shape[1] % 8 == 0 && gemv_wg_ >= 32;
    };
    h.can_hold_matmul = [this](const OpCall& c, bool with_norm) {
      return gemv_ok(c) && is_float_weight(c.inputs[1].dtype) &&
             kernel_fits(fused_key(c, with_norm)).ok;
    };
    h.launch_group = [this](FusedGroup& g) { launch_fused(g); };
    h.launch_rope = [this](const OpCall& c, const OpCall* second) { rope_launch(c, second); };
    h.run = [this](const OpCall& c) { kernels_.run(c, "opencl"); };
    h.can_launch_attention = [this](const AttentionChain& ch) { return can_chain(ch); };
    h.launch_attention = [this](const AttentionChain& ch) { attention_chain(ch); };
    fusion_ = std::make_unique<CallFusion>(std::move(h));
  }
  void flush_held() {
    if (fusion_) fusion_->flush();
  }

  // With the output projection: -DPROJ and its weight's dtype.
  KernelKey chain_key(const AttentionChain& ch) const {
    const std::string hd = "-DHD=" + std::to_string(ch.attention.attrs.get_int("head_dim"));
    if (!ch.proj) return {"attention", "attention_rope", 0, true, 0, hd};
    // Twice the usual group: H groups read all of W, so each needs many loads in flight.
    return {"attention", "attention_rope", weight_code(ch.proj->inputs[1].dtype),
            true,        proj_wg_,         hd + " -DPROJ"};
  }

  // The projection taken into the chain: a float weight whose rows start 16-byte aligned,
  // hd % 8 == 0, D % 4 == 0, and at most proj_max_ partial sums (H * D) for the last group to
  // add up (TAPML_OPENCL_PROJ_MAX; 0 keeps the projection out). The shapes and dtypes of the
  // projection and the add follow from their calls, validated before they were offered.
  bool can_project(const AttentionChain& ch) const {
    const DeviceTensor& w = ch.proj->inputs[1];
    const int64_t H = ch.attention.attrs.get_int("n_heads");
    const int64_t hd = ch.attention.attrs.get_int("head_dim"), D = w.shape[0];
    return is_float_weight(w.dtype) && hd % 8 == 0 && D % 4 == 0 && aligned16(w) &&
           H * D <= proj_max_;
  }

  // The chain's one query row sits at position P - 1 for rope and kv_store alike (positions
  // the host wrote, so known here without a read), the heads agree, and attention_vec's
  // limits hold.
  bool can_chain(const AttentionChain& ch) {
    const OpCall &a = ch.attention, &q = ch.rope_q, &k = ch.rope_k;
    const int64_t P = a.inputs[1].shape[0], hd = a.attrs.get_int("head_dim");
    int32_t rope_pos = -1, kv_pos = -1;
    if (!shadow_.read(q.inputs[1].buffer, q.inputs[1].offset, &rope_pos, 4) ||
        !shadow_.read(ch.kv_store.inputs[4].buffer, ch.kv_store.inputs[4].offset, &kv_pos, 4))
      return false;
    return q.inputs[1].shape.numel() == 1 && rope_pos == P - 1 && kv_pos == P - 1 &&
           q.attrs.get_int("head_dim") == hd &&
           q.attrs.get_int("n_heads") == a.attrs.get_int("n_heads") &&
           k.attrs.get_int("n_heads") == a.attrs.get_int("n_kv_heads") && attention_vec_ok(a) &&
           aligned16(ch.kv_store.inputs[3]) && (!ch.proj || can_project(ch)) &&
           kernel_fits(chain_key(ch)).ok;
  }

  void attention_chain(const AttentionChain& ch) {
    const OpCall &a = ch.attention, &q = ch.rope_q, &kv = ch.kv_store;
    const int64_t P = a.inputs[1].shape[0], H = a.attrs.get_int("n_heads");
    const double window = a.attrs.get_or("window", 0), softcap = a.attrs.get_or("softcap", 0);
    const cl_uint w = window > 0 && window < double(P) ? cl_uint(window) : 0;
    const bool factors = q.inputs.size() > 2;
    const int64_t rd = q.attrs.get_int("rope_dim");
    auto go = [&](const auto&... proj) {
      launch(chain_key(ch), H, arg(q.inputs[0]), arg(ch.rope_k.inputs[0]), arg(kv.inputs[3]),
             arg(q.outputs[0]), arg(ch.rope_k.outputs[0]), arg(kv.outputs[0]), arg(kv.outputs[1]),
             arg(a.outputs[0]), scratch(scratch_bytes(a)), rope_table(q.attrs.get("base"), rd),
             factors ? arg(q.inputs[2]) : TensorArg{dummy_, 0}, u32(P), u32(H),
             u32(a.attrs.get_int("n_kv_heads")), u32(rd), u32(q.attrs.get_int("pairing") == 1),
             u32(factors), cl_float(a.attrs.get("scale")), w, cl_float(softcap), proj...);
    };
    if (!ch.proj) return go();
    const int64_t D = ch.proj->inputs[1].shape[0];
    go(arg(ch.proj->inputs[1]), arg(ch.proj->outputs[0]), arg(ch.residual()),
       arg(ch.add->outputs[0]), partials(size_t(H * D) * 4), done_counter(), u32(D));
  }

  // The projection's per-head partial sums: one buffer, like scratch (calls run in order).
  cl_mem partials(size_t bytes) { return at_least(partials_, partial_capacity_, bytes); }
  // The count of groups done; 0 between launches (the last group of each sets it back).
  cl_mem done_counter() {
    if (!done_) {
      done_ = create(16);
      const uint32_t zero[4] = {0, 0, 0, 0};
      submitter_->write(done_, 0, sizeof zero, zero);
    }
    return done_;
  }

  KernelKey fused_key(const OpCall& first_mm, bool with_norm) const {
    return {"matmul",
            "gemv_fused",
            weight_code(first_mm.inputs[1].dtype),
            true,
            0,
            with_norm ? "-DNORM_K=" + std::to_string(first_mm.inputs[0].shape[1]) : ""};
  }

  static bool is_float_weight(DType t) {
    return t == DType::F32 || t == DType::F16 || t == DType::BF16;
  }

  // A matmul group as one gemv_fused: mode 0 plain, 1 with swiglu, 2 with the residual add.
  void launch_fused(const FusedGroup& g) {
    const bool norm = g.norm.has_value();
    const uint32_t mode = g.epilogue == FusedGroup::Swiglu ? 1
                          : g.epilogue == FusedGroup::Add  ? 2
                                                           : 0;
    const std::vector<OpCall>& mm = g.matmuls;
    const int64_t K = mm[0].inputs[0].shape[1];
    auto w = [&](size_t i) { return i < mm.size() ? &mm[i].inputs[1] : nullptr; };
    auto o = [&](size_t i) { return i < mm.size() ? &mm[i].outputs[0] : nullptr; };
    const DeviceTensor* slots[10] = {norm ? &g.norm->inputs[0] : &mm[0].inputs[0],
                                     norm ? &g.norm->inputs[1] : nullptr,
                                     norm ? &g.norm->outputs[0] : nullptr,
                                     w(0),
                                     o(0),
                                     w(1),
                                     o(1),
                                     w(2),
                                     mode ? &g.tail.outputs[0] : o(2),
                                     mode == 2 ? &g.residual() : nullptr};
    cl_mem mems[10];
    cl_ulong16 off{};
    for (int i = 0; i < 10; ++i) {
      const TensorArg a = slots[i] ? arg(*slots[i]) : TensorArg{dummy_, 0};
      mems[i] = a.mem;
      off.s[i] = a.offset;
    }
    auto rows_of = [&](size_t i) { return i < mm.size() ? u32(mm[i].inputs[1].shape[0]) : 0u; };
    cl_uint8 p{};
    p.s[0] = u32(K);
    p.s[1] = rows_of(0);
    p.s[2] = rows_of(1);
    p.s[3] = rows_of(2);
    p.s[4] = mode;
    const int64_t rows = mode == 0 ? int64_t(p.s[1]) + p.s[2] + p.s[3] : int64_t(p.s[1]);
    const cl_float eps = norm ? cl_float(g.norm->attrs.get("eps")) : 0.0f;
    launch(fused_key(mm[0], norm), ceil_div(rows, int64_t(gemv_rows())), mems[0], mems[1], mems[2],
           mems[3], mems[4], mems[5], mems[6], mems[7], mems[8], mems[9], off, p, eps);
  }

  struct Buffer {
    cl_mem mem = nullptr;
    size_t size = 0;      // as asked for
    size_t capacity = 0;  // as allocated
  };

  cl_mem create(size_t bytes) {
    cl_int err = CL_SUCCESS;
    cl_mem m = cl_.clCreateBuffer(ctx_->context(), CL_MEM_READ_WRITE, bytes, nullptr, &err);
    if (err == CL_MEM_OBJECT_ALLOCATION_FAILURE || err == CL_OUT_OF_RESOURCES ||
        err == CL_OUT_OF_HOST_MEMORY)
      throw Error("opencl: out of memory allocating " + std::to_string(bytes) + " bytes (" +
                  cl_error_name(err) + ")");
    check(err, "clCreateBuffer of " + std::to_string(bytes) + " bytes");
    return m;
  }

  const Buffer& buffer(BufferId id, size_t offset, size_t bytes, const char* what) const {
    auto it = buffers_.find(id);
    TAPML_REQUIRE(it != buffers_.end(),
                  std::string("opencl: ") + what + " of unknown buffer " + std::to_string(id));
    TAPML_REQUIRE(offset <= it->second.size && bytes <= it->second.size - offset,
                  std::string("opencl: ") + what + " of " + std::to_string(bytes) +
                      " bytes at offset " + std::to_string(offset) + " lies outside buffer " +
                      std::to_string(id) + " of " + std::to_string(it->second.size));
    return it->second;
  }

  TensorArg arg(const DeviceTensor& t) const {
    return {buffer(t.buffer, t.offset, t.nbytes(), "run").mem, cl_ulong(t.offset)};
  }

  // Matmul's kernel: a one-row call whose weight rows start 16-byte aligned reads them 8
  // at a time (gemv); 4 rows or more, blocks of 4 rows x 4 weight rows per group
  // (matmul_blocked); the rest, each weight row once per 4 rows (matmul).
  KernelKey matmul_key(const OpCall& c) const {
    const int64_t T = c.inputs[0].shape[0], K = c.inputs[0].shape[1], N = c.inputs[1].shape[0];
    const int w = weight_code(c.inputs[1].dtype);
    if (gemv_ok(c)) return {"matmul", "gemv", w, true};
    if (T >= 4 && N >= 4 && blocked_)
      return {"matmul", "matmul_blocked", w, true, 0, "-DRB=" + std::to_string(block_rows_)};
    (void)K;
    return {"matmul", "matmul", w, true};
  }
  static bool aligned16(const DeviceTensor& t) { return t.offset % 16 == 0; }
  bool gemv_ok(const OpCall& c) const {
    return c.op == Op::Matmul && c.inputs[0].shape[0] == 1 && c.inputs[0].shape[1] % 8 == 0 &&
           aligned16(c.inputs[1]) && gemv_wg_ >= 8;
  }
  // Attention with the head size built in: q, k, v and out 16-byte aligned, head size a
  // multiple of 4 up to 256.
  bool attention_vec_ok(const OpCall& c) const {
    const int64_t hd = c.attrs.get_int("head_dim");
    return hd % 4 == 0 && hd <= 256 && hd / 4 <= int64_t(wg_) && aligned16(c.inputs[0]) &&
           aligned16(c.inputs[1]) && aligned16(c.inputs[2]) && aligned16(c.outputs[0]);
  }

  // The kernels a call runs, for supports() to build and check before run() needs them.
  std::vector<KernelKey> keys(const OpCall& c) const {
    switch (c.op) {
      case Op::Embedding:
        if (is_block(c.inputs[0].dtype))
          return {quant_key("embedding_quant", "embedding_quant", false,
                            quant_code(c.inputs[0].dtype))};
        return {{"embedding", "embedding", weight_code(c.inputs[0].dtype)}};
      case Op::RmsNorm:
        return {{"rmsnorm", "rmsnorm", weight_code(c.inputs[1].dtype), true}};
      case Op::Matmul:
        if (is_block(c.inputs[1].dtype))
          return {quant_key("matmul_quant", "matmul_quant", true, quant_code(c.inputs[1].dtype))};
        return {matmul_key(c)};
      case Op::Rope:
        return {{"rope", "rope"}};
      case Op::KvStore:
        return {{"kv_store", "kv_store"}};
      case Op::Attention:
        if (attention_vec_ok(c))
          return {{"attention", "attention_vec", 0, true, 0,
                   "-DHD=" + std::to_string(c.attrs.get_int("head_dim"))}};
        return {{"attention", "attention", 0, true}};
      case Op::Gelu:
        return {{"gelu", "gelu"}};
      case Op::LayerNorm:
        return {{"layernorm", "layernorm", 0, true}};
      case Op::MoeRoute:
        return {{"moe", "moe_route", 0, true}};
      case Op::MoeFfn: {
        const int w = weight_code(c.inputs[2].dtype);
        return {{"moe", "moe_gate_up", w, true}, {"moe", "moe_down", w, true}};
      }
      case Op::Swiglu:
        return {{"elementwise", "swiglu"}};
      case Op::Add:
        return {{"elementwise", "add"}};
      case Op::Bias:
        return {{"elementwise", "bias"}};
      case Op::Mul:
        return {{"elementwise", "mul"}};
      case Op::Scale:
        return {{"elementwise", "scale"}};
      case Op::Softcap:
        return {{"elementwise", "softcap"}};
      case Op::SigmoidGate:
        return {{"elementwise", "sigmoid_gate"}};
      default:
        return {};
    }
  }

  size_t group_of(const KernelKey& k) const {
    if (k.group) return k.group;
    if (!k.reduces) return items_wg_;
    const std::string_view name(k.name);
    if (name == "gemv" || name == "gemv_fused") return gemv_wg_;
    return name == "matmul" ? matmul_wg_ : wg_;
  }

  std::string options(const KernelKey& k) const {
    std::string o = "-DWTYPE=" + std::to_string(k.wtype);
    if (k.reduces) o += " -DWG=" + std::to_string(group_of(k));
    if (!k.extra.empty()) o += " " + k.extra;
    if (k.qtype) o += " -DQTYPE=" + std::to_string(k.qtype);
    if (std::string_view(k.name) == "rope" || std::string_view(k.name) == "attention_rope")
      if (device_.fp64) o += " -DROPE_F64";
    return o;
  }

  // Kernels are found by the key's fields as they are: joining the name and options() into
  // one string for every launch cost more host time than a launch should (NVIDIA's driver
  // already takes several microseconds). The fields decide the build options.
  using KeyFields = std::tuple<std::string_view, int, bool, size_t, std::string, int>;
  static KeyFields fields(const KernelKey& k) {
    return {k.name, k.wtype, k.reduces, k.group, k.extra, k.qtype};
  }

  // A kernel's objects: the first is kernel()'s; launches take them in turn (copy_of).
  struct Copies {
    std::vector<cl_kernel> kernels;
    size_t next = 0;     // the one the next launch takes
    uint64_t round = 0;  // of `next`
  };
  static constexpr size_t kMaxCopies = 64;

  cl_kernel create_kernel(const KernelKey& k) const {
    cl_int err = CL_SUCCESS;
    cl_kernel kern = cl_.clCreateKernel(ctx_->program(k.file, options(k)), k.name, &err);
    check(err, std::string("clCreateKernel (") + k.name + ")");
    return kern;
  }
  Copies& copies(const KernelKey& k) const {
    Copies& c = built_[fields(k)];
    if (c.kernels.empty()) c.kernels.push_back(create_kernel(k));
    return c;
  }

  // The kernel, built now if it was not (the device's program cache builds each program once).
  cl_kernel kernel(const KernelKey& k) const { return copies(k).kernels[0]; }

  // Launches of a kernel take copies of its kernel object in turn, from the first again after
  // each read() or sync() (a decode step ends with one): a step's n-th launch of a kernel then
  // finds on its object the arguments of the previous step's n-th launch, mostly the same
  // buffers, and the submitter sets only those that changed. TAPML_OPENCL_COPIES=0: one object.
  cl_kernel copy_of(const KernelKey& k) {
    Copies& c = copies(k);
    if (!copies_on_) return c.kernels[0];
    if (c.round != round_) c.round = round_, c.next = 0;
    const size_t i = c.next++ % kMaxCopies;
    if (i == c.kernels.size()) c.kernels.push_back(create_kernel(k));
    return c.kernels[i];
  }

  // Builds the kernel and checks that the device can run it with the group size it needs.
  Support kernel_fits(const KernelKey& k) const {
    KeyFields f = fields(k);
    if (auto it = fits_.find(f); it != fits_.end()) return it->second;
    Support s = measure_fit(k);
    return fits_[std::move(f)] = s;
  }

  Support measure_fit(const KernelKey& k) const {
    cl_kernel kern = nullptr;
    try {
      kern = kernel(k);
    } catch (const Error& e) {
      return Support::no(e.what());
    }
    const size_t want = group_of(k);
    size_t most = 0;
    cl_ulong local = 0;
    cl_.clGetKernelWorkGroupInfo(kern, device_.device, CL_KERNEL_WORK_GROUP_SIZE, sizeof most,
                                 &most, nullptr);
    cl_.clGetKernelWorkGroupInfo(kern, device_.device, CL_KERNEL_LOCAL_MEM_SIZE, sizeof local,
                                 &local, nullptr);
    if (k.reduces && most > 0 && most < want)
      return Support::no(std::string("opencl: kernel ") + k.name + " needs work-groups of " +
                         std::to_string(want) + " items; the device allows " +
                         std::to_string(most) + " for it (CL_KERNEL_WORK_GROUP_SIZE)");
    if (local > device_.local_memory)
      return Support::no(std::string("opencl: kernel ") + k.name + " needs " +
                         std::to_string(local) +
                         " bytes of local memory, over the device's CL_DEVICE_LOCAL_MEM_SIZE of " +
                         std::to_string(device_.local_memory));
    return Support::yes();
  }

  void pack(KernelArgs&) {}
  template <class A, class... Rest>
  void pack(KernelArgs& out, const A& a, const Rest&... rest) {
    if constexpr (std::is_same_v<A, TensorArg>) {
      out.add(&a.mem, sizeof(cl_mem));
      out.add(&a.offset, sizeof(cl_ulong));
    } else {
      out.add(&a, sizeof(A));
    }
    pack(out, rest...);
  }

  // Queues `groups` work-groups of the key's group size; nothing for none.
  template <class... Args>
  void launch(const KernelKey& key, int64_t groups, const Args&... args) {
    if (groups <= 0) return;
    cl_kernel k = copy_of(key);
    KernelArgs packed;
    pack(packed, args...);
    const size_t local = group_of(key);
    submitter_->launch(k, key.name, std::move(packed), size_t(groups) * local, local);
  }

  // TAPML_OPENCL_STATS=1: each kernel's device time from the queue's profiling events,
  // printed when the backend closes (=host: host times only, no events).
  void print_stats() {
    double total = 0;
    for (auto& [name, kt] : submitter_->kernel_times()) total += kt.seconds;
    std::fprintf(
        stderr,
        "opencl stats: %lld kernels, %.3f s on the device; host: %lld calls %.3f s in run(), "
        "%.3f s launching (its own thread, %lld sleeps, %lld flushes; %lld arguments set, %lld "
        "unchanged), %lld writes %.3f s, "
        "%lld reads %.3f s\n",
        (long long)submitter_->launches(), total, (long long)runs_, run_s_,
        submitter_->enqueue_seconds(), (long long)submitter_->sleeps(),
        (long long)submitter_->flushes(), (long long)submitter_->args_set(),
        (long long)submitter_->args_skipped(), (long long)writes_, write_s_, (long long)reads_,
        read_s_);
    for (auto& [name, kt] : submitter_->kernel_times())
      std::fprintf(stderr, "  %-16s %8lld calls %9.3f ms %8.2f us/call %5.1f%%\n", name.c_str(),
                   (long long)kt.calls, kt.seconds * 1e3, kt.seconds * 1e6 / double(kt.calls),
                   total > 0 ? 100 * kt.seconds / total : 0.0);
  }

  // One work-item per element of n.
  template <class... Args>
  void launch_items(const KernelKey& key, int64_t n, const Args&... args) {
    launch(key, ceil_div(n, int64_t(items_wg_)), args...);
  }

  // Token ids and cache positions, checked on the host. They were usually just written by
  // the host, so the copy kept by write() answers without waiting for queued kernels.
  std::vector<int32_t> read_i32(const DeviceTensor& t) {
    std::vector<int32_t> v(size_t(t.shape.numel()));
    if (!shadow_.read(t.buffer, t.offset, v.data(), v.size() * 4))
      read(t.buffer, t.offset, v.data(), v.size() * 4);
    return v;
  }

  // rope's frequencies base^(-2i/rd), i < rd/2: as doubles, then as floats.
  cl_mem rope_table(double base, int64_t rd) {
    auto key = std::make_pair(base, rd);
    auto it = rope_tables_.find(key);
    if (it != rope_tables_.end()) return it->second;
    const size_t half = size_t(rd / 2);
    std::vector<std::byte> bytes(std::max<size_t>(half * 12, 16));
    for (size_t i = 0; i < half; ++i) {
      double f = std::pow(base, -2.0 * double(i) / double(rd));
      float ff = float(f);
      std::memcpy(bytes.data() + 8 * i, &f, 8);
      std::memcpy(bytes.data() + 8 * half + 4 * i, &ff, 4);
    }
    cl_mem m = create(bytes.size());
    submitter_->write(m, 0, bytes.size(), bytes.data());
    return rope_tables_[key] = m;
  }

  // The scratch a call needs: attention's scores [T, H, P], moe_ffn's activations [T, E, H].
  static size_t scratch_bytes(const OpCall& c) {
    if (c.op == Op::MoeFfn)
      return size_t(c.inputs[0].shape[0]) * size_t(c.inputs[1].shape[1]) *
             size_t(c.inputs[2].shape[1]) * 4;
    return size_t(c.inputs[0].shape[0]) * size_t(c.attrs.get_int("n_heads")) *
           size_t(c.inputs[1].shape[0]) * 4;
  }

  // Calls run in queue order, so one scratch buffer serves them all; a released buffer
  // lives on until the kernels queued on it have run.
  cl_mem scratch(size_t bytes) { return at_least(scratch_, scratch_capacity_, bytes); }

  // A buffer of at least `bytes` in `m` (made anew, up to twice as large, when it is not;
  // queued kernels keep the old one alive until they are done).
  cl_mem at_least(cl_mem& m, size_t& capacity, size_t bytes) {
    if (capacity < std::max<size_t>(bytes, 4)) {
      if (m) submitter_->release(m);
      capacity = std::max<size_t>(256, std::min<size_t>(bytes * 2, device_.max_alloc));
      capacity = std::max(capacity, bytes);
      m = create(capacity);
    }
    return m;
  }

  static cl_uint u32(int64_t v) { return cl_uint(v); }

  void check_ids(const OpCall& c) {
    const int64_t V = c.inputs[0].shape[0];
    // Checked before anything runs, so a bad id leaves the output untouched.
    for (int32_t id : read_i32(c.inputs[1]))
      TAPML_REQUIRE(id >= 0 && id < V, "embedding: token id " + std::to_string(id) +
                                           " outside the vocabulary of " + std::to_string(V));
  }

  void embedding(const OpCall& c) {
    check_ids(c);
    const int64_t n = c.outputs[0].shape.numel();
    launch_items(keys(c)[0], n, arg(c.inputs[0]), arg(c.inputs[1]), arg(c.outputs[0]), u32(n),
                 u32(c.inputs[0].shape[1]));
  }

  // A quantized table: one work-item per 16 elements of the output.
  void embedding_quant(const OpCall& c) {
    check_ids(c);
    const int64_t D = c.inputs[0].shape[1], units = c.outputs[0].shape.numel() / 16;
    launch_items(keys(c)[0], units, arg(c.inputs[0]), arg(c.inputs[1]), arg(c.outputs[0]),
                 u32(units), u32(D), u32(row_bytes(c.inputs[0].dtype, D)));
  }

  void rmsnorm(const OpCall& c) {
    launch(keys(c)[0], c.inputs[0].shape[0], arg(c.inputs[0]), arg(c.inputs[1]), arg(c.outputs[0]),
           u32(c.inputs[0].shape[1]), cl_float(c.attrs.get("eps")));
  }

  void matmul(const OpCall& c) {
    const int64_t T = c.inputs[0].shape[0], K = c.inputs[0].shape[1], N = c.inputs[1].shape[0];
    const KernelKey key = keys(c)[0];
    const std::string_view name(key.name);
    if (name == "gemv")
      launch(key, ceil_div(N, int64_t(gemv_rows())), arg(c.inputs[0]), arg(c.inputs[1]),
             arg(c.outputs[0]), u32(K), u32(N));
    else if (name == "matmul_blocked")
      launch(key, ceil_div(N, 4) * ceil_div(T, block_rows_), arg(c.inputs[0]), arg(c.inputs[1]),
             arg(c.outputs[0]), u32(T), u32(K), u32(N));
    else
      launch(key, N * ceil_div(T, 4), arg(c.inputs[0]), arg(c.inputs[1]), arg(c.outputs[0]), u32(T),
             u32(K), u32(N));
  }
  // Weight rows per gemv group: one team of 32 items (or the whole group) per row.
  size_t gemv_rows() const { return gemv_wg_ < 32 ? 1 : gemv_wg_ / 32; }

  void matmul_quant(const OpCall& c) {
    const int64_t T = c.inputs[0].shape[0], K = c.inputs[0].shape[1], N = c.inputs[1].shape[0];
    launch(keys(c)[0], N * ceil_div(T, 4), arg(c.inputs[0]), arg(c.inputs[1]), arg(c.outputs[0]),
           u32(T), u32(K), u32(N), u32(row_bytes(c.inputs[1].dtype, K)));
  }

  // One rope call, or two (q and k: same positions and frequencies) in one launch.
  void rope(const OpCall& c) { rope_launch(c, nullptr); }
  void rope_launch(const OpCall& c, const OpCall* second) {
    const int64_t T = c.inputs[0].shape[0], H = c.attrs.get_int("n_heads");
    const int64_t hd = c.attrs.get_int("head_dim"), rd = c.attrs.get_int("rope_dim");
    const bool factors = c.inputs.size() > 2;
    cl_mem table = rope_table(c.attrs.get("base"), rd);
    const TensorArg f = factors ? arg(c.inputs[2]) : TensorArg{dummy_, 0};
    const int64_t n1 = T * H * (hd - rd / 2);
    const int64_t H2 = second ? second->attrs.get_int("n_heads") : 0;
    const int64_t n = n1 + T * H2 * (hd - rd / 2);
    const TensorArg x2 = second ? arg(second->inputs[0]) : TensorArg{dummy_, 0};
    const TensorArg o2 = second ? arg(second->outputs[0]) : TensorArg{dummy_, 0};
    launch_items(keys(c)[0], n, arg(c.inputs[0]), arg(c.inputs[1]), arg(c.outputs[0]), table, f,
                 u32(n), u32(H), u32(hd), u32(rd), u32(c.attrs.get_int("pairing") == 1),
                 u32(factors), x2, o2, u32(n1), u32(H2));
  }

  void kv_store(const OpCall& c) {
    const int64_t S = c.inputs[0].shape[0], C = c.inputs[0].shape[1];
    const int64_t T = c.inputs[2].shape[0];
    const int64_t pos = read_i32(c.inputs[4])[0];
    TAPML_REQUIRE(pos >= 0 && pos + T <= S, "kv_store: rows " + std::to_string(pos) + ".." +
                                                std::to_string(pos + T) +
                                                " do not fit a cache of " + std::to_string(S));
    launch_items(keys(c)[0], T * C, arg(c.outputs[0]), arg(c.outputs[1]), arg(c.inputs[2]),
                 arg(c.inputs[3]), arg(c.inputs[4]), u32(T * C), u32(C));
  }

  void attention(const OpCall& c) {
    const int64_t T = c.inputs[0].shape[0], P = c.inputs[1].shape[0];
    const int64_t H = c.attrs.get_int("n_heads");
    // A window of P or more keys, or none, hides no key (0); softcap 0 is none.
    const double window = c.attrs.get_or("window", 0), softcap = c.attrs.get_or("softcap", 0);
    const cl_uint w = window > 0 && window < double(P) ? cl_uint(window) : 0;
    cl_mem s = scratch(scratch_bytes(c));
    launch(keys(c)[0], T * H, arg(c.inputs[0]), arg(c.inputs[1]), arg(c.inputs[2]),
           arg(c.outputs[0]), s, u32(T), u32(P), u32(H), u32(c.attrs.get_int("n_kv_heads")),
           u32(c.attrs.get_int("head_dim")), cl_float(c.attrs.get("scale")), w, cl_float(softcap));
  }

  void binary(const OpCall& c) {
    const int64_t n = c.inputs[0].shape.numel();
    launch_items(keys(c)[0], n, arg(c.inputs[0]), arg(c.inputs[1]), arg(c.outputs[0]), u32(n));
  }
  void swiglu(const OpCall& c) { binary(c); }
  void add(const OpCall& c) { binary(c); }
  void mul(const OpCall& c) { binary(c); }

  void bias(const OpCall& c) {
    const int64_t n = c.inputs[0].shape.numel();
    launch_items(keys(c)[0], n, arg(c.inputs[0]), arg(c.inputs[1]), arg(c.outputs[0]), u32(n),
                 u32(c.inputs[0].shape[1]));
  }

  void sigmoid_gate(const OpCall& c) {
    const int64_t n = c.inputs[0].shape.numel();
    launch_items(keys(c)[0], n, arg(c.inputs[0]), arg(c.inputs[1]), arg(c.outputs[0]), u32(n),
                 u32(c.inputs[0].shape[1]));
  }

  // s and cap rounded to f32, which the catalog allows (one more rounding).
  void scale(const OpCall& c) {
    const int64_t n = c.inputs[0].shape.numel();
    launch_items(keys(c)[0], n, arg(c.inputs[0]), arg(c.outputs[0]), u32(n),
                 cl_float(c.attrs.get("s")));
  }

  void softcap(const OpCall& c) {
    const int64_t n = c.inputs[0].shape.numel();
    launch_items(keys(c)[0], n, arg(c.inputs[0]), arg(c.outputs[0]), u32(n),
                 cl_float(c.attrs.get("cap")));
  }

  void gelu(const OpCall& c) {
    const int64_t n = c.inputs[0].shape.numel();
    launch_items(keys(c)[0], n, arg(c.inputs[0]), arg(c.outputs[0]), u32(n),
                 u32(c.attrs.get_int("approx") == 1));
  }

  void layernorm(const OpCall& c) {
    launch(keys(c)[0], c.inputs[0].shape[0], arg(c.inputs[0]), arg(c.inputs[1]), arg(c.outputs[0]),
           u32(c.inputs[0].shape[1]), cl_float(c.attrs.get("eps")));
  }

  void moe_route(const OpCall& c) {
    launch(keys(c)[0], c.inputs[0].shape[0], arg(c.inputs[0]), arg(c.outputs[0]),
           u32(c.inputs[0].shape[1]), u32(c.attrs.get_int("k")), u32(c.attrs.get_int("norm") == 1));
  }

  // Two kernels, both reading route on the device: moe_gate_up writes silu(gate x) * (up x)
  // of every routed (token, expert) into scratch [T, E, H], and moe_down sums the
  // route-weighted down projections of each token's experts.
  void moe_ffn(const OpCall& c) {
    const int64_t T = c.inputs[0].shape[0], D = c.inputs[0].shape[1];
    const int64_t E = c.inputs[1].shape[1], H = c.inputs[2].shape[1];
    if (T == 0) return;
    cl_mem act = scratch(scratch_bytes(c));
    const std::vector<KernelKey> k = keys(c);
    launch(k[0], ceil_div(T, 4) * E * H, arg(c.inputs[0]), arg(c.inputs[1]), arg(c.inputs[2]),
           arg(c.inputs[3]), act, u32(T), u32(D), u32(H), u32(E));
    launch(k[1], ceil_div(T, 4) * D, act, arg(c.inputs[1]), arg(c.inputs[4]), arg(c.outputs[0]),
           u32(T), u32(D), u32(H), u32(E));
  }

  const ClApi& cl_;
  DeviceFacts device_;
  std::shared_ptr<DeviceContext> ctx_;
  BackendInfo info_;
  cl_command_queue queue_ = nullptr;
  size_t wg_ = 1, matmul_wg_ = 1, gemv_wg_ = 1, items_wg_ = 1, proj_wg_ = 1;
  KernelTable kernels_;
  mutable std::map<KeyFields, Copies> built_;  // by the key's fields
  uint64_t round_ = 0;                         // read()s and sync()s so far
  bool copies_on_ = true;
  mutable std::map<KeyFields, Support> fits_;  // kernel_fits() of each of them

  std::unordered_map<BufferId, Buffer> buffers_;
  std::unordered_map<size_t, std::deque<cl_mem>> spare_;
  HostShadow shadow_;
  std::map<std::pair<double, int64_t>, cl_mem> rope_tables_;
  cl_mem scratch_ = nullptr, dummy_ = nullptr, partials_ = nullptr, done_ = nullptr;
  size_t scratch_capacity_ = 0, partial_capacity_ = 0;
  int64_t proj_max_ = int64_t(1) << 20;
  BufferId next_id_ = 1;

  bool stats_ = false, fuse_ = true;
  double run_s_ = 0, write_s_ = 0, read_s_ = 0;
  int64_t runs_ = 0;
  int64_t writes_ = 0, reads_ = 0;
  std::unique_ptr<Submitter> submitter_;  // declared last: stopped before the rest goes
  bool profile_ = false;  // kernel times from profiling events (TAPML_OPENCL_STATS, not =host)
  bool blocked_ = true;
  int block_rows_ = 4;  // token rows per matmul_blocked group (TAPML_OPENCL_BLOCK_ROWS: 4 or 8)
};

// The device a URI names: opencl, opencl:P or opencl:P:D.
DeviceFacts pick(const std::vector<std::vector<DeviceFacts>>& platforms, const BackendUri& uri) {
  auto index = [&](const std::string& s, const char* what) {
    TAPML_REQUIRE_USAGE(
        !s.empty() && s.size() < 6 &&
            std::all_of(s.begin(), s.end(), [](char ch) { return ch >= '0' && ch <= '9'; }),
        "backend URI '" + uri.text + "': " + what + " '" + s +
            "' is not an index (opencl[:PLATFORM[:DEVICE]]; see tapml info "
            "--backends)");
    return size_t(std::stoul(s));
  };
  auto first_gpu_else_first = [](const std::vector<DeviceFacts>& list) -> const DeviceFacts* {
    for (const DeviceFacts& d : list)
      if (d.gpu()) return &d;
    return list.empty() ? nullptr : &list[0];
  };
  const std::string& target = uri.target;
  if (target.empty()) {
    for (const auto& list : platforms)
      for (const DeviceFacts& d : list)
        if (d.gpu()) return d;
    for (const auto& list : platforms)
      if (!list.empty()) return list[0];
    throw Error("opencl: no OpenCL device found on " + std::to_string(platforms.size()) +
                " platform(s)");
  }
  const size_t colon = target.find(':');
  const size_t p = index(target.substr(0, colon), "platform");
  TAPML_REQUIRE_USAGE(p < platforms.size(),
                      "backend URI '" + uri.text + "': platform " + std::to_string(p) + " of " +
                          std::to_string(platforms.size()) + " (see tapml info --backends)");
  const std::vector<DeviceFacts>& list = platforms[p];
  if (colon == std::string::npos) {
    const DeviceFacts* d = first_gpu_else_first(list);
    TAPML_REQUIRE(d, "opencl: platform " + std::to_string(p) + " has no device");
    return *d;
  }
  const size_t d = index(target.substr(colon + 1), "device");
  TAPML_REQUIRE_USAGE(d < list.size(), "backend URI '" + uri.text + "': device " +
                                           std::to_string(d) + " of " +
                                           std::to_string(list.size()) + " on platform " +
                                           std::to_string(p) + " (see tapml info --backends)");
  return list[d];
}

}  // namespace

std::unique_ptr<Backend> make_opencl_backend(const BackendUri& uri) {
  uri.allow_params({});
  std::string why;
  const ClApi* cl = cl_api(&why);
  TAPML_REQUIRE(cl, "opencl: " + why);
  DeviceFacts device = pick(enumerate_devices(*cl), uri);
  return std::make_unique<OpenClBackend>(*cl, device, uri);
}

std::vector<DeviceListing> opencl_devices() {
  try {
    std::string why;
    const ClApi* cl = cl_api(&why);
    if (!cl) return {{"", why}};
    std::vector<DeviceListing> out;
    for (const auto& list : enumerate_devices(*cl))
      for (const DeviceFacts& d : list) out.push_back({d.uri(), d.describe()});
    if (out.empty()) return {{"", "no OpenCL device on any platform"}};
    return out;
  } catch (const std::exception& e) {
    return {{"", e.what()}};
  }
}

}  // namespace tapml
