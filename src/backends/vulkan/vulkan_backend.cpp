// The vulkan backend. One instance, device and queue per backend; one descriptor set layout
// (six storage buffers) and one push-constant block shared by every pipeline, so binding a
// call is the same code for every op. Buffers live in device-local memory; when that memory
// is also host-visible (integrated GPUs, lavapipe) it is mapped and written directly, else
// writes and reads go through a host-visible staging buffer.
//
// Calls are recorded into one command buffer, each dispatch followed by a full
// compute-to-compute barrier (the model's calls form a chain), and submitted when the host
// needs results: write(), read(), sync(), a check that reads a device value, or a full batch.
#include "backends/vulkan/vulkan_backend.h"

#include <vulkan/vulkan.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdlib>
#include <cctype>
#include <cmath>
#include <cstring>
#include <map>
#include <span>
#include <unordered_map>

#include "core/error.h"

namespace tapml {

namespace {

const uint32_t kSpvEmbedding[] = {
#include "embedding.spv.inc"
};
const uint32_t kSpvRmsnorm[] = {
#include "rmsnorm.spv.inc"
};
const uint32_t kSpvMatmul[] = {
#include "matmul.spv.inc"
};
const uint32_t kSpvRope[] = {
#include "rope.spv.inc"
};
const uint32_t kSpvRopeF64[] = {
#include "rope_f64.spv.inc"
};
const uint32_t kSpvKvStore[] = {
#include "kv_store.spv.inc"
};
const uint32_t kSpvAttention[] = {
#include "attention.spv.inc"
};
const uint32_t kSpvElementwise[] = {
#include "elementwise.spv.inc"
};

constexpr uint32_t kBindings = 6;
constexpr uint32_t kMaxBatch = 512;  // dispatches per submission (descriptor pool size)
constexpr size_t kStagingBytes = size_t(64) << 20;

// Mirrors the push-constant block of shaders/common.glsl.
struct Params {
  uint32_t o[6] = {};
  uint32_t u[8] = {};
  float f[2] = {};
};

void check(VkResult r, const char* what) {
  if (r != VK_SUCCESS)
    throw Error(std::string("vulkan: ") + what + " failed (VkResult " + std::to_string(int(r)) +
                ")");
}

std::string lower(std::string s) {
  for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

const char* device_type_name(VkPhysicalDeviceType t) {
  switch (t) {
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU:
      return "integrated gpu";
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU:
      return "discrete gpu";
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU:
      return "virtual gpu";
    case VK_PHYSICAL_DEVICE_TYPE_CPU:
      return "cpu";
    default:
      return "other";
  }
}

std::string version_string(uint32_t v) {
  return std::to_string(VK_API_VERSION_MAJOR(v)) + "." + std::to_string(VK_API_VERSION_MINOR(v)) +
         "." + std::to_string(VK_API_VERSION_PATCH(v));
}

// The instance, destroyed last.
class Instance {
 public:
  Instance() {
    VkApplicationInfo app{VK_STRUCTURE_TYPE_APPLICATION_INFO};
    app.pApplicationName = "tapml";
    app.apiVersion = VK_API_VERSION_1_1;
    VkInstanceCreateInfo ci{VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO};
    ci.pApplicationInfo = &app;
    VkResult r = vkCreateInstance(&ci, nullptr, &handle_);
    if (r == VK_ERROR_INCOMPATIBLE_DRIVER)
      throw Error("vulkan: no Vulkan 1.1 driver found (install mesa-vulkan-drivers for lavapipe)");
    check(r, "vkCreateInstance");
  }
  ~Instance() { vkDestroyInstance(handle_, nullptr); }
  Instance(const Instance&) = delete;
  Instance& operator=(const Instance&) = delete;
  VkInstance get() const { return handle_; }

  // Devices of Vulkan 1.1 or newer with a compute queue, in the loader's order.
  std::vector<VkPhysicalDevice> devices() const {
    uint32_t n = 0;
    check(vkEnumeratePhysicalDevices(handle_, &n, nullptr), "vkEnumeratePhysicalDevices");
    std::vector<VkPhysicalDevice> all(n), usable;
    check(vkEnumeratePhysicalDevices(handle_, &n, all.data()), "vkEnumeratePhysicalDevices");
    for (VkPhysicalDevice d : all) {
      VkPhysicalDeviceProperties p;
      vkGetPhysicalDeviceProperties(d, &p);
      if (p.apiVersion >= VK_API_VERSION_1_1 && compute_family(d) >= 0) usable.push_back(d);
    }
    return usable;
  }

  static int compute_family(VkPhysicalDevice d) {
    uint32_t n = 0;
    vkGetPhysicalDeviceQueueFamilyProperties(d, &n, nullptr);
    std::vector<VkQueueFamilyProperties> fams(n);
    vkGetPhysicalDeviceQueueFamilyProperties(d, &n, fams.data());
    for (uint32_t i = 0; i < n; ++i)
      if (fams[i].queueFlags & VK_QUEUE_COMPUTE_BIT) return int(i);
    return -1;
  }

 private:
  VkInstance handle_ = VK_NULL_HANDLE;
};

// What TapML needs to know of a device.
struct DeviceFacts {
  VkPhysicalDeviceProperties props{};
  VkDeviceSize max_alloc = 0;
  VkDeviceSize local_memory = 0;
  bool f64 = false;
  bool storage16 = false;
};

DeviceFacts device_facts(VkPhysicalDevice d) {
  DeviceFacts f;
  VkPhysicalDeviceMaintenance3Properties m3{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_3_PROPERTIES};
  VkPhysicalDeviceProperties2 p2{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2};
  p2.pNext = &m3;
  vkGetPhysicalDeviceProperties2(d, &p2);
  f.props = p2.properties;
  f.max_alloc = m3.maxMemoryAllocationSize;
  VkPhysicalDevice16BitStorageFeatures s16{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_16BIT_STORAGE_FEATURES};
  VkPhysicalDeviceFeatures2 f2{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2};
  f2.pNext = &s16;
  vkGetPhysicalDeviceFeatures2(d, &f2);
  f.f64 = f2.features.shaderFloat64;
  f.storage16 = s16.storageBuffer16BitAccess;
  VkPhysicalDeviceMemoryProperties mp;
  vkGetPhysicalDeviceMemoryProperties(d, &mp);
  for (uint32_t i = 0; i < mp.memoryHeapCount; ++i)
    if (mp.memoryHeaps[i].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT)
      f.local_memory = std::max(f.local_memory, mp.memoryHeaps[i].size);
  return f;
}

std::string describe(const DeviceFacts& f) {
  const VkPhysicalDeviceLimits& l = f.props.limits;
  char buf[640];
  std::snprintf(buf, sizeof buf,
                "%s (%s, Vulkan %s): storage buffer range %u, max allocation %llu, device-local "
                "memory %llu MiB, workgroup invocations %u, size [%u %u %u], count [%u %u %u], "
                "shared memory %u, 16-bit storage %s, f64 %s",
                f.props.deviceName, device_type_name(f.props.deviceType),
                version_string(f.props.apiVersion).c_str(), l.maxStorageBufferRange,
                (unsigned long long)f.max_alloc, (unsigned long long)(f.local_memory >> 20),
                l.maxComputeWorkGroupInvocations, l.maxComputeWorkGroupSize[0],
                l.maxComputeWorkGroupSize[1], l.maxComputeWorkGroupSize[2],
                l.maxComputeWorkGroupCount[0], l.maxComputeWorkGroupCount[1],
                l.maxComputeWorkGroupCount[2], l.maxComputeSharedMemorySize,
                f.storage16 ? "yes" : "no", f.f64 ? "yes" : "no");
  return buf;
}

// A buffer with its memory; `mapped` when the memory is host-visible.
struct Block {
  VkBuffer buffer = VK_NULL_HANDLE;
  VkDeviceMemory memory = VK_NULL_HANDLE;
  size_t size = 0;      // as asked for
  size_t capacity = 0;  // as allocated
  std::byte* mapped = nullptr;
};

// One storage-buffer binding of a dispatch: `bytes` at `offset` of `block`.
struct Binding {
  const Block* block = nullptr;
  size_t offset = 0;
  size_t bytes = 0;
};

struct Kernel {
  const uint32_t* code;
  size_t words;
  uint32_t local_size;  // invocations per workgroup, as the shader declares
};

const char* const kOps[] = {"embedding", "rmsnorm",   "matmul", "rope",
                            "kv_store",  "attention", "swiglu", "add"};

uint32_t weight_code(DType t) { return t == DType::F16 ? 1 : t == DType::BF16 ? 2 : 0; }

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

class VulkanBackend final : public Backend {
 public:
  VulkanBackend(const BackendUri& uri) {
    std::vector<VkPhysicalDevice> devs = instance_.devices();
    TAPML_REQUIRE(!devs.empty(), "vulkan: no Vulkan 1.1 device with a compute queue found");
    phys_ = pick(devs, uri);
    facts_ = device_facts(phys_);
    family_ = uint32_t(Instance::compute_family(phys_));
    info_ = {uri.text, "vulkan", describe(facts_), size_t(facts_.max_alloc),
             size_t(facts_.local_memory)};

    float priority = 1.0f;
    VkDeviceQueueCreateInfo qci{VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO};
    qci.queueFamilyIndex = family_;
    qci.queueCount = 1;
    qci.pQueuePriorities = &priority;
    VkPhysicalDeviceFeatures features{};
    features.shaderFloat64 = facts_.f64;
    VkDeviceCreateInfo dci{VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO};
    dci.queueCreateInfoCount = 1;
    dci.pQueueCreateInfos = &qci;
    dci.pEnabledFeatures = &features;
    check(vkCreateDevice(phys_, &dci, nullptr, &device_), "vkCreateDevice");
    vkGetDeviceQueue(device_, family_, 0, &queue_);
    vkGetPhysicalDeviceMemoryProperties(phys_, &memory_);
    choose_memory();

    VkCommandPoolCreateInfo pci{VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO};
    pci.flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT;
    pci.queueFamilyIndex = family_;
    check(vkCreateCommandPool(device_, &pci, nullptr, &command_pool_), "vkCreateCommandPool");
    VkCommandBufferAllocateInfo cai{VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO};
    cai.commandPool = command_pool_;
    cai.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
    cai.commandBufferCount = 1;
    check(vkAllocateCommandBuffers(device_, &cai, &cmd_), "vkAllocateCommandBuffers");
    VkFenceCreateInfo fci{VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
    check(vkCreateFence(device_, &fci, nullptr, &fence_), "vkCreateFence");

    VkDescriptorPoolSize ps{VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, kMaxBatch * kBindings};
    VkDescriptorPoolCreateInfo dpi{VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO};
    dpi.maxSets = kMaxBatch;
    dpi.poolSizeCount = 1;
    dpi.pPoolSizes = &ps;
    check(vkCreateDescriptorPool(device_, &dpi, nullptr, &descriptor_pool_),
          "vkCreateDescriptorPool");

    std::array<VkDescriptorSetLayoutBinding, kBindings> b{};
    for (uint32_t i = 0; i < kBindings; ++i)
      b[i] = {i, VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, 1, VK_SHADER_STAGE_COMPUTE_BIT, nullptr};
    VkDescriptorSetLayoutCreateInfo lci{VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO};
    lci.bindingCount = kBindings;
    lci.pBindings = b.data();
    check(vkCreateDescriptorSetLayout(device_, &lci, nullptr, &set_layout_),
          "vkCreateDescriptorSetLayout");
    VkPushConstantRange range{VK_SHADER_STAGE_COMPUTE_BIT, 0, sizeof(Params)};
    VkPipelineLayoutCreateInfo plci{VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO};
    plci.setLayoutCount = 1;
    plci.pSetLayouts = &set_layout_;
    plci.pushConstantRangeCount = 1;
    plci.pPushConstantRanges = &range;
    check(vkCreatePipelineLayout(device_, &plci, nullptr, &pipeline_layout_),
          "vkCreatePipelineLayout");

    // The shaders' local sizes are fixed in the GLSL; every device takes 128 invocations.
    add_kernel("embedding", {kSpvEmbedding, std::size(kSpvEmbedding), 128});
    add_kernel("rmsnorm", {kSpvRmsnorm, std::size(kSpvRmsnorm), 128});
    add_kernel("matmul", {kSpvMatmul, std::size(kSpvMatmul), 64});
    if (facts_.f64)
      add_kernel("rope", {kSpvRopeF64, std::size(kSpvRopeF64), 128});
    else
      add_kernel("rope", {kSpvRope, std::size(kSpvRope), 128});
    add_kernel("kv_store", {kSpvKvStore, std::size(kSpvKvStore), 128});
    add_kernel("attention", {kSpvAttention, std::size(kSpvAttention), 128});
    add_kernel("elementwise", {kSpvElementwise, std::size(kSpvElementwise), 128});

    dummy_ = make_block(256, false);
    if (!direct_) staging_ = make_block(kStagingBytes, true);
  }

  ~VulkanBackend() override {
    try {
      flush();
    } catch (...) {
    }
    if (std::getenv("TAPML_VULKAN_STATS"))
      std::fprintf(stderr, "vulkan stats: %llu dispatches, %llu submissions, %.3f s waiting, %llu "
                   "allocations, %.3f s in run(), %.3f write, %.3f read, %.3f alloc\n",
                   (unsigned long long)dispatches_, (unsigned long long)submissions_, wait_s_,
                   (unsigned long long)allocations_, run_s_, write_s_, read_s_, alloc_s_);
    vkDeviceWaitIdle(device_);
    for (auto& [id, b] : blocks_) destroy(b);
    for (auto& [cap, list] : spare_)
      for (Block& b : list) destroy(b);
    for (auto& [key, b] : rope_tables_) destroy(b);
    destroy(scratch_);
    destroy(dummy_);
    destroy(staging_);
    for (auto& [name, p] : pipelines_) vkDestroyPipeline(device_, p, nullptr);
    vkDestroyPipelineLayout(device_, pipeline_layout_, nullptr);
    vkDestroyDescriptorSetLayout(device_, set_layout_, nullptr);
    vkDestroyDescriptorPool(device_, descriptor_pool_, nullptr);
    vkDestroyFence(device_, fence_, nullptr);
    vkDestroyCommandPool(device_, command_pool_, nullptr);
    vkDestroyDevice(device_, nullptr);
  }

  const BackendInfo& info() const override { return info_; }

  BufferId alloc(size_t bytes) override {
    Timer timer{alloc_s_};
    TAPML_REQUIRE(bytes <= facts_.max_alloc,
                  "vulkan: a buffer of " + std::to_string(bytes) +
                      " bytes exceeds the device's maxMemoryAllocationSize of " +
                      std::to_string(facts_.max_alloc));
    size_t cap = std::max<size_t>(256, (bytes + 255) / 256 * 256);
    Block b;
    auto it = spare_.find(cap);
    if (it != spare_.end() && !it->second.empty()) {
      b = it->second.back();
      it->second.pop_back();
    } else {
      b = make_block(cap, false);
    }
    b.size = bytes;
    BufferId id = next_id_++;
    blocks_[id] = b;
    return id;
  }

  // Freed blocks are kept for reuse: a decode step frees and allocates the same sizes every
  // time, and vkAllocateMemory is slow. A pending dispatch may still use the block; a later
  // call that reuses it is recorded after that dispatch, so order is kept.
  void free(BufferId id) override {
    auto it = blocks_.find(id);
    TAPML_REQUIRE(it != blocks_.end(), "vulkan: free of unknown buffer " + std::to_string(id));
    spare_[it->second.capacity].push_back(it->second);
    blocks_.erase(it);
    shadow_.erase(id);
  }

  struct Timer {
    double& acc;
    std::chrono::steady_clock::time_point t0 = std::chrono::steady_clock::now();
    ~Timer() { acc += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); }
  };
  void write(BufferId id, size_t offset, const void* src, size_t bytes) override {
    Timer timer{write_s_};
    const Block& b = block(id, offset, bytes, "write");
    flush();  // pending dispatches may still read the old contents
    upload(b, offset, src, bytes);
    if (bytes <= kShadowBytes) {
      const std::byte* p = static_cast<const std::byte*>(src);
      shadow_[id] = {offset, std::vector<std::byte>(p, p + bytes)};
    } else {
      shadow_.erase(id);
    }
  }

  void read(BufferId id, size_t offset, void* dst, size_t bytes) override {
    Timer timer{read_s_};
    const Block& b = block(id, offset, bytes, "read");
    flush();
    download(b, offset, dst, bytes);
  }

  void sync() override { flush(); }

  Support supports(const OpCall& c) const override {
    try {
      const OpDef& def = op_def(c.op);
      std::vector<TensorType> in;
      for (auto& t : c.inputs) in.push_back(t.type());
      auto out = def.infer(in, c.attrs);
      if (out.size() != c.outputs.size()) return Support::no(c.op + ": wrong number of outputs");
      for (size_t i = 0; i < out.size(); ++i)
        if (!(out[i] == c.outputs[i].type()))
          return Support::no(c.op + ": output " + std::to_string(i) + " has the wrong type");
    } catch (const Error& e) {
      return Support::no(e.what());
    }
    if (std::find_if(std::begin(kOps), std::end(kOps), [&](const char* n) { return c.op == n; }) ==
        std::end(kOps))
      return Support::no("vulkan: no kernel for op '" + c.op + "'");
    const VkPhysicalDeviceLimits& l = facts_.props.limits;
    const size_t slack = size_t(l.minStorageBufferOffsetAlignment) + 4;
    auto fits = [&](const DeviceTensor& t, const char* what) -> Support {
      size_t align = dtype_size(t.dtype) == 2 ? 2 : 4;
      if (t.offset % align)
        return Support::no("vulkan: " + c.op + " " + what + " at byte offset " +
                           std::to_string(t.offset) + " is not " + std::to_string(align) +
                           "-byte aligned");
      if (t.nbytes() + slack > l.maxStorageBufferRange)
        return Support::no("vulkan: " + c.op + " " + what + " " + t.shape.str() + " of " +
                           std::to_string(t.nbytes()) + " bytes exceeds the device's " +
                           "maxStorageBufferRange of " + std::to_string(l.maxStorageBufferRange));
      return Support::yes();
    };
    for (auto& t : c.inputs)
      if (Support s = fits(t, "input"); !s.ok) return s;
    for (auto& t : c.outputs)
      if (Support s = fits(t, "output"); !s.ok) return s;
    if (c.op == "attention") {
      size_t scratch = scratch_bytes(c);
      if (scratch + slack > l.maxStorageBufferRange || scratch > facts_.max_alloc)
        return Support::no("vulkan: attention scores need " + std::to_string(scratch) +
                           " bytes, over the device's maxStorageBufferRange of " +
                           std::to_string(l.maxStorageBufferRange));
    }
    int64_t groups = workgroups(c);
    int64_t max_groups = int64_t(l.maxComputeWorkGroupCount[0]) * l.maxComputeWorkGroupCount[1];
    if (groups > max_groups)
      return Support::no("vulkan: " + c.op + " needs " + std::to_string(groups) +
                         " workgroups, over the device's maxComputeWorkGroupCount of " +
                         std::to_string(l.maxComputeWorkGroupCount[0]) + " x " +
                         std::to_string(l.maxComputeWorkGroupCount[1]));
    return Support::yes();
  }

  void run(const OpCall& c) override {
    auto t0 = std::chrono::steady_clock::now();
    run_call(c);
    run_s_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }

  void run_call(const OpCall& c) {
    for (auto& t : c.inputs) block(t.buffer, t.offset, t.nbytes(), "run");
    for (auto& t : c.outputs) block(t.buffer, t.offset, t.nbytes(), "run");
    if (Support s = supports(c); !s.ok) throw Error(s.reason);
    for (auto& t : c.outputs) shadow_.erase(t.buffer);
    Params p;
    std::vector<Binding> bind;
    auto tensor = [&](const DeviceTensor& t) {
      bind.push_back({&block(t.buffer, t.offset, t.nbytes(), "run"), t.offset, t.nbytes()});
    };
    std::string kernel = c.op;
    if (c.op == "embedding") {
      const int64_t V = c.inputs[0].shape[0], T = c.inputs[1].shape[0];
      // Checked before anything runs, so a bad id leaves the output untouched.
      std::vector<int32_t> ids = read_i32(c.inputs[1]);
      for (int32_t id : ids)
        TAPML_REQUIRE(id >= 0 && id < V, "embedding: token id " + std::to_string(id) +
                                             " outside the vocabulary of " + std::to_string(V));
      tensor(c.inputs[0]), tensor(c.inputs[1]), tensor(c.outputs[0]);
      p.u[0] = uint32_t(T), p.u[1] = uint32_t(c.inputs[0].shape[1]);
      p.u[7] = weight_code(c.inputs[0].dtype);
    } else if (c.op == "rmsnorm") {
      tensor(c.inputs[0]), tensor(c.inputs[1]), tensor(c.outputs[0]);
      p.u[0] = uint32_t(c.inputs[0].shape[0]), p.u[1] = uint32_t(c.inputs[0].shape[1]);
      p.u[7] = weight_code(c.inputs[1].dtype);
      p.f[0] = float(c.attrs.get("eps"));
    } else if (c.op == "matmul") {
      tensor(c.inputs[0]), tensor(c.inputs[1]), tensor(c.outputs[0]);
      p.u[0] = uint32_t(c.inputs[0].shape[0]), p.u[1] = uint32_t(c.inputs[0].shape[1]);
      p.u[2] = uint32_t(c.inputs[1].shape[0]);
      p.u[7] = weight_code(c.inputs[1].dtype);
    } else if (c.op == "rope") {
      const int64_t rd = c.attrs.get_int("rope_dim");
      tensor(c.inputs[0]), tensor(c.inputs[1]), tensor(c.outputs[0]);
      const Block& table = rope_table(c.attrs.get("base"), rd);
      bind.push_back({&table, 0, table.size});
      p.u[0] = uint32_t(c.inputs[0].shape[0]), p.u[1] = uint32_t(c.attrs.get_int("n_heads"));
      p.u[2] = uint32_t(c.attrs.get_int("head_dim")), p.u[3] = uint32_t(rd);
      p.u[4] = c.attrs.get_int("pairing") == 1 ? 1 : 0;
    } else if (c.op == "kv_store") {
      const int64_t S = c.inputs[0].shape[0], C = c.inputs[0].shape[1];
      const int64_t T = c.inputs[2].shape[0];
      const int64_t pos = read_i32(c.inputs[4])[0];
      TAPML_REQUIRE(pos >= 0 && pos + T <= S, "kv_store: rows " + std::to_string(pos) + ".." +
                                                  std::to_string(pos + T) +
                                                  " do not fit a cache of " + std::to_string(S));
      tensor(c.outputs[0]), tensor(c.outputs[1]);
      tensor(c.inputs[2]), tensor(c.inputs[3]), tensor(c.inputs[4]);
      p.u[0] = uint32_t(T * C), p.u[1] = uint32_t(C);
    } else if (c.op == "attention") {
      tensor(c.inputs[0]), tensor(c.inputs[1]), tensor(c.inputs[2]), tensor(c.outputs[0]);
      const Block& s = scratch(scratch_bytes(c));
      bind.push_back({&s, 0, scratch_bytes(c)});
      p.u[0] = uint32_t(c.inputs[0].shape[0]), p.u[1] = uint32_t(c.inputs[1].shape[0]);
      p.u[2] = uint32_t(c.attrs.get_int("n_heads")), p.u[3] = uint32_t(c.attrs.get_int("n_kv_heads"));
      p.u[4] = uint32_t(c.attrs.get_int("head_dim"));
      p.f[0] = float(c.attrs.get("scale"));
    } else {  // swiglu, add
      kernel = "elementwise";
      tensor(c.inputs[0]), tensor(c.inputs[1]), tensor(c.outputs[0]);
      p.u[0] = uint32_t(c.inputs[0].shape.numel());
      p.u[1] = c.op == "add" ? 1 : 0;
    }
    int64_t groups = workgroups(c);
    if (groups == 0) return;
    dispatch(kernel, bind, p, groups);
  }

 private:
  static VkPhysicalDevice pick(const std::vector<VkPhysicalDevice>& devs, const BackendUri& uri) {
    const std::string& want = uri.target;
    if (want.empty()) return devs[0];
    if (std::all_of(want.begin(), want.end(), [](char ch) { return std::isdigit(uint8_t(ch)); })) {
      size_t i = std::stoul(want);
      TAPML_REQUIRE(i < devs.size(), "backend URI '" + uri.text + "': device " + want +
                                         " of " + std::to_string(devs.size()) +
                                         " (see tapml info --backends)");
      return devs[i];
    }
    for (VkPhysicalDevice d : devs) {
      VkPhysicalDeviceProperties p;
      vkGetPhysicalDeviceProperties(d, &p);
      if (lower(p.deviceName).find(lower(want)) != std::string::npos) return d;
    }
    throw Error("backend URI '" + uri.text + "': no Vulkan device named like '" + want +
                "' (see tapml info --backends)");
  }

  // Direct mapping when a device-local, host-visible, coherent type covers (most of) the
  // largest device-local heap, as on integrated GPUs and lavapipe; a small BAR window on a
  // discrete GPU would not hold a model, so there the staging path is used.
  void choose_memory() {
    VkDeviceSize largest = 0;
    for (uint32_t i = 0; i < memory_.memoryHeapCount; ++i)
      if (memory_.memoryHeaps[i].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT)
        largest = std::max(largest, memory_.memoryHeaps[i].size);
    const VkMemoryPropertyFlags want = VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT |
                                       VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT |
                                       VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
    for (uint32_t i = 0; i < memory_.memoryTypeCount; ++i)
      if ((memory_.memoryTypes[i].propertyFlags & want) == want &&
          memory_.memoryHeaps[memory_.memoryTypes[i].heapIndex].size * 2 >= largest)
        direct_ = true;
  }

  uint32_t memory_type(uint32_t allowed, VkMemoryPropertyFlags want) const {
    for (uint32_t i = 0; i < memory_.memoryTypeCount; ++i)
      if ((allowed & (1u << i)) && (memory_.memoryTypes[i].propertyFlags & want) == want) return i;
    return UINT32_MAX;
  }

  Block make_block(size_t bytes, bool host) {
    ++allocations_;
    Block b;
    b.size = b.capacity = bytes;
    VkBufferCreateInfo bci{VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO};
    bci.size = bytes;
    bci.usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT |
                VK_BUFFER_USAGE_TRANSFER_DST_BIT;
    bci.sharingMode = VK_SHARING_MODE_EXCLUSIVE;
    check(vkCreateBuffer(device_, &bci, nullptr, &b.buffer), "vkCreateBuffer");
    VkMemoryRequirements req;
    vkGetBufferMemoryRequirements(device_, b.buffer, &req);
    const VkMemoryPropertyFlags visible =
        VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
    uint32_t type = UINT32_MAX;
    if (host) {
      type = memory_type(req.memoryTypeBits, visible | VK_MEMORY_PROPERTY_HOST_CACHED_BIT);
      if (type == UINT32_MAX) type = memory_type(req.memoryTypeBits, visible);
    } else if (direct_) {
      type = memory_type(req.memoryTypeBits, visible | VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT);
    } else {
      type = memory_type(req.memoryTypeBits, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT);
    }
    if (type == UINT32_MAX) type = memory_type(req.memoryTypeBits, 0);
    VkMemoryAllocateInfo mai{VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO};
    mai.allocationSize = req.size;
    mai.memoryTypeIndex = type;
    VkResult r = vkAllocateMemory(device_, &mai, nullptr, &b.memory);
    if (r != VK_SUCCESS) {
      vkDestroyBuffer(device_, b.buffer, nullptr);
      if (r == VK_ERROR_OUT_OF_DEVICE_MEMORY || r == VK_ERROR_OUT_OF_HOST_MEMORY)
        throw Error("vulkan: out of memory allocating " + std::to_string(bytes) + " bytes");
      check(r, "vkAllocateMemory");
    }
    check(vkBindBufferMemory(device_, b.buffer, b.memory, 0), "vkBindBufferMemory");
    if (memory_.memoryTypes[type].propertyFlags & VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT) {
      void* p = nullptr;
      check(vkMapMemory(device_, b.memory, 0, VK_WHOLE_SIZE, 0, &p), "vkMapMemory");
      b.mapped = static_cast<std::byte*>(p);
    }
    return b;
  }

  void destroy(Block& b) {
    if (b.buffer) vkDestroyBuffer(device_, b.buffer, nullptr);
    if (b.memory) vkFreeMemory(device_, b.memory, nullptr);
    b = Block{};
  }

  const Block& block(BufferId id, size_t offset, size_t bytes, const char* what) const {
    auto it = blocks_.find(id);
    TAPML_REQUIRE(it != blocks_.end(), std::string("vulkan: ") + what + " of unknown buffer " +
                                           std::to_string(id));
    TAPML_REQUIRE(offset <= it->second.size && bytes <= it->second.size - offset,
                  std::string("vulkan: ") + what + " of " + std::to_string(bytes) +
                      " bytes at offset " + std::to_string(offset) + " lies outside buffer " +
                      std::to_string(id) + " of " + std::to_string(it->second.size));
    return it->second;
  }

  void upload(const Block& b, size_t offset, const void* src, size_t bytes) {
    if (b.mapped) {
      std::memcpy(b.mapped + offset, src, bytes);
      return;
    }
    for (size_t done = 0; done < bytes; done += kStagingBytes) {
      size_t n = std::min(kStagingBytes, bytes - done);
      std::memcpy(staging_.mapped, static_cast<const std::byte*>(src) + done, n);
      begin();
      VkBufferCopy region{0, offset + done, n};
      vkCmdCopyBuffer(cmd_, staging_.buffer, b.buffer, 1, &region);
      barrier();
      flush();
    }
  }

  void download(const Block& b, size_t offset, void* dst, size_t bytes) {
    if (b.mapped) {
      std::memcpy(dst, b.mapped + offset, bytes);
      return;
    }
    for (size_t done = 0; done < bytes; done += kStagingBytes) {
      size_t n = std::min(kStagingBytes, bytes - done);
      begin();
      VkBufferCopy region{offset + done, 0, n};
      vkCmdCopyBuffer(cmd_, b.buffer, staging_.buffer, 1, &region);
      barrier();
      flush();
      std::memcpy(static_cast<std::byte*>(dst) + done, staging_.mapped, n);
    }
  }

  // Token ids and cache positions, checked on the host. They were usually just written by
  // the host, so the copy kept by write() answers without waiting for pending dispatches.
  std::vector<int32_t> read_i32(const DeviceTensor& t) {
    std::vector<int32_t> v(size_t(t.shape.numel()));
    auto it = shadow_.find(t.buffer);
    if (it != shadow_.end() && t.offset >= it->second.offset &&
        t.offset + v.size() * 4 <= it->second.offset + it->second.bytes.size()) {
      std::memcpy(v.data(), it->second.bytes.data() + (t.offset - it->second.offset), v.size() * 4);
      return v;
    }
    read(t.buffer, t.offset, v.data(), v.size() * 4);
    return v;
  }

  // The angle table for rope: rd/2 frequencies base^(-2i/rd) as doubles, then as floats.
  const Block& rope_table(double base, int64_t rd) {
    auto key = std::make_pair(base, rd);
    auto it = rope_tables_.find(key);
    if (it != rope_tables_.end()) return it->second;
    std::vector<uint32_t> words(size_t(rd / 2) * 3 + 1);
    for (int64_t i = 0; i < rd / 2; ++i) {
      double f = std::pow(base, -2.0 * double(i) / double(rd));
      float ff = float(f);
      std::memcpy(&words[size_t(2 * i)], &f, 8);
      std::memcpy(&words[size_t(rd + i)], &ff, 4);
    }
    Block b = make_block(std::max<size_t>(256, words.size() * 4), false);
    b.size = words.size() * 4;
    flush();
    upload(b, 0, words.data(), words.size() * 4);
    return rope_tables_[key] = b;
  }

  static size_t scratch_bytes(const OpCall& c) {
    return size_t(c.inputs[0].shape[0]) * size_t(c.attrs.get_int("n_heads")) *
           size_t(c.inputs[1].shape[0]) * 4;
  }

  // Attention scores. Dispatches run one after another, so one scratch block serves a whole
  // batch; growing it waits for the batch that may still use the old one.
  const Block& scratch(size_t bytes) {
    if (scratch_.capacity < std::max<size_t>(bytes, 4)) {
      flush();
      destroy(scratch_);
      scratch_ = make_block(std::max<size_t>(256, bytes * 2), false);
    }
    return scratch_;
  }

  static int64_t workgroups(const OpCall& c) {
    if (c.op == "embedding") return ceil_div(c.outputs[0].shape.numel(), 128);
    if (c.op == "rmsnorm") return c.inputs[0].shape[0];
    if (c.op == "matmul") return c.inputs[1].shape[0] * ceil_div(c.inputs[0].shape[0], 4);
    if (c.op == "rope") {
      int64_t hd = c.attrs.get_int("head_dim"), rd = c.attrs.get_int("rope_dim");
      return ceil_div(c.inputs[0].shape[0] * c.attrs.get_int("n_heads") * (hd - rd / 2), 128);
    }
    if (c.op == "kv_store") return ceil_div(c.inputs[2].shape.numel(), 128);
    if (c.op == "attention") return c.inputs[0].shape[0] * c.attrs.get_int("n_heads");
    return ceil_div(c.inputs[0].shape.numel(), 128);
  }

  void add_kernel(const std::string& name, Kernel k) {
    VkShaderModuleCreateInfo smci{VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO};
    smci.codeSize = k.words * 4;
    smci.pCode = k.code;
    VkShaderModule module;
    check(vkCreateShaderModule(device_, &smci, nullptr, &module), "vkCreateShaderModule");
    VkComputePipelineCreateInfo cpci{VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO};
    cpci.stage = {VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO};
    cpci.stage.stage = VK_SHADER_STAGE_COMPUTE_BIT;
    cpci.stage.module = module;
    cpci.stage.pName = "main";
    cpci.layout = pipeline_layout_;
    VkPipeline pipeline;
    VkResult r = vkCreateComputePipelines(device_, VK_NULL_HANDLE, 1, &cpci, nullptr, &pipeline);
    vkDestroyShaderModule(device_, module, nullptr);
    check(r, ("vkCreateComputePipelines (" + name + ")").c_str());
    pipelines_[name] = pipeline;
  }

  void begin() {
    if (recording_) return;
    VkCommandBufferBeginInfo bi{VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO};
    bi.flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT;
    check(vkBeginCommandBuffer(cmd_, &bi), "vkBeginCommandBuffer");
    recording_ = true;
  }

  // Everything written so far (by shaders or copies) is visible to everything after.
  void barrier() {
    VkMemoryBarrier mb{VK_STRUCTURE_TYPE_MEMORY_BARRIER};
    mb.srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT;
    mb.dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT |
                       VK_ACCESS_TRANSFER_READ_BIT | VK_ACCESS_TRANSFER_WRITE_BIT |
                       VK_ACCESS_HOST_READ_BIT;
    vkCmdPipelineBarrier(cmd_,
                         VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
                         VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT |
                             VK_PIPELINE_STAGE_HOST_BIT,
                         0, 1, &mb, 0, nullptr, 0, nullptr);
  }

  void flush() {
    if (!recording_) return;
    recording_ = false;
    check(vkEndCommandBuffer(cmd_), "vkEndCommandBuffer");
    VkSubmitInfo si{VK_STRUCTURE_TYPE_SUBMIT_INFO};
    si.commandBufferCount = 1;
    si.pCommandBuffers = &cmd_;
    auto t0 = std::chrono::steady_clock::now();
    check(vkQueueSubmit(queue_, 1, &si, fence_), "vkQueueSubmit");
    check(vkWaitForFences(device_, 1, &fence_, VK_TRUE, UINT64_MAX), "vkWaitForFences");
    wait_s_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    ++submissions_;
    check(vkResetFences(device_, 1, &fence_), "vkResetFences");
    check(vkResetCommandBuffer(cmd_, 0), "vkResetCommandBuffer");
    check(vkResetDescriptorPool(device_, descriptor_pool_, 0), "vkResetDescriptorPool");
    batched_ = 0;
  }

  void dispatch(const std::string& kernel, const std::vector<Binding>& bind, Params p,
                int64_t groups) {
    if (batched_ == kMaxBatch) flush();
    begin();
    VkDescriptorSetAllocateInfo dsai{VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO};
    dsai.descriptorPool = descriptor_pool_;
    dsai.descriptorSetCount = 1;
    dsai.pSetLayouts = &set_layout_;
    VkDescriptorSet set;
    check(vkAllocateDescriptorSets(device_, &dsai, &set), "vkAllocateDescriptorSets");
    // Each tensor is bound through a window that starts at its offset rounded down to the
    // device's alignment; the shader adds the remainder, passed in bytes.
    const size_t align = std::max<size_t>(1, facts_.props.limits.minStorageBufferOffsetAlignment);
    std::array<VkDescriptorBufferInfo, kBindings> infos{};
    std::array<VkWriteDescriptorSet, kBindings> writes{};
    for (uint32_t i = 0; i < kBindings; ++i) {
      if (i < bind.size()) {
        const Binding& b = bind[i];
        size_t start = b.offset / align * align;
        size_t end = std::min(b.block->capacity, (b.offset + b.bytes + 3) / 4 * 4);
        infos[i] = {b.block->buffer, start, std::max<size_t>(4, end - start)};
        p.o[i] = uint32_t(b.offset - start);
      } else {
        infos[i] = {dummy_.buffer, 0, VK_WHOLE_SIZE};
      }
      writes[i] = {VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET};
      writes[i].dstSet = set;
      writes[i].dstBinding = i;
      writes[i].descriptorCount = 1;
      writes[i].descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
      writes[i].pBufferInfo = &infos[i];
    }
    vkUpdateDescriptorSets(device_, kBindings, writes.data(), 0, nullptr);
    vkCmdBindPipeline(cmd_, VK_PIPELINE_BIND_POINT_COMPUTE, pipelines_.at(kernel));
    vkCmdBindDescriptorSets(cmd_, VK_PIPELINE_BIND_POINT_COMPUTE, pipeline_layout_, 0, 1, &set, 0,
                            nullptr);
    vkCmdPushConstants(cmd_, pipeline_layout_, VK_SHADER_STAGE_COMPUTE_BIT, 0, sizeof(Params), &p);
    // Counts past the x limit spill into y; the shaders skip the surplus groups.
    const int64_t max_x = std::min<int64_t>(facts_.props.limits.maxComputeWorkGroupCount[0], 65535);
    const int64_t gx = std::min(groups, max_x), gy = ceil_div(groups, gx);
    vkCmdDispatch(cmd_, uint32_t(gx), uint32_t(gy), 1);
    barrier();
    ++batched_;
    ++dispatches_;
  }

  Instance instance_;
  VkPhysicalDevice phys_ = VK_NULL_HANDLE;
  DeviceFacts facts_;
  uint32_t family_ = 0;
  BackendInfo info_;
  VkDevice device_ = VK_NULL_HANDLE;
  VkQueue queue_ = VK_NULL_HANDLE;
  VkPhysicalDeviceMemoryProperties memory_{};
  bool direct_ = false;
  VkCommandPool command_pool_ = VK_NULL_HANDLE;
  VkCommandBuffer cmd_ = VK_NULL_HANDLE;
  VkFence fence_ = VK_NULL_HANDLE;
  VkDescriptorPool descriptor_pool_ = VK_NULL_HANDLE;
  VkDescriptorSetLayout set_layout_ = VK_NULL_HANDLE;
  VkPipelineLayout pipeline_layout_ = VK_NULL_HANDLE;
  std::map<std::string, VkPipeline> pipelines_;
  bool recording_ = false;
  uint32_t batched_ = 0;
  uint64_t dispatches_ = 0, submissions_ = 0, allocations_ = 0;  // TAPML_VULKAN_STATS=1 prints them at exit
  double wait_s_ = 0, run_s_ = 0, write_s_ = 0, read_s_ = 0, alloc_s_ = 0;

  std::unordered_map<BufferId, Block> blocks_;
  std::unordered_map<size_t, std::vector<Block>> spare_;
  // The last small host write of each buffer, until a dispatch writes that buffer.
  struct Shadow {
    size_t offset = 0;
    std::vector<std::byte> bytes;
  };
  static constexpr size_t kShadowBytes = 4096;
  std::unordered_map<BufferId, Shadow> shadow_;
  std::map<std::pair<double, int64_t>, Block> rope_tables_;
  Block scratch_, dummy_, staging_;
  BufferId next_id_ = 1;
};

}  // namespace

std::unique_ptr<Backend> make_vulkan_backend(const BackendUri& uri) {
  uri.allow_params({});
  return std::make_unique<VulkanBackend>(uri);
}

std::vector<DeviceListing> vulkan_devices() {
  try {
    Instance instance;
    std::vector<VkPhysicalDevice> devs = instance.devices();
    if (devs.empty()) return {{"", "no Vulkan 1.1 device with a compute queue"}};
    std::vector<DeviceListing> out;
    for (size_t i = 0; i < devs.size(); ++i)
      out.push_back({"vulkan:" + std::to_string(i), describe(device_facts(devs[i]))});
    return out;
  } catch (const std::exception& e) {
    return {{"", e.what()}};
  }
}

}  // namespace tapml
