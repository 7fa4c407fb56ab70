// The vulkan backend: the catalog's ops as GLSL compute shaders (compiled to SPIR-V at build
// time and embedded), on any Vulkan 1.1 device. f32 activations; f32, f16 and bf16 weights
// read as packed 32-bit words, so no 16-bit storage feature is needed. Matmul weights and
// embedding tables may also be ggml's quantized blocks (Q4_0 ... Q6_K, as raw block bytes),
// dequantized in the shader with core's exact arithmetic (embedding rows are bit-identical to
// ref's) and accumulated in f32.
//
// URI: vulkan (device 0), vulkan:N (device index N), vulkan:NAME (first device whose name
// contains NAME, case-insensitive). Calls run in order; they are recorded into one command
// buffer and submitted when the host needs results (read(), sync(), a large write, a batch
// limit), so read() always sees the results of every earlier run(); small writes (a decode
// step's token ids and positions) are recorded in order with the calls, so a decode step is
// one submission. A pipeline barrier is recorded only before a dispatch that depends on an
// earlier one. One-row (decode) calls are held back and fused with their neighbours
// (backend/call_fusion.h): rmsnorm into the matmuls of its output, up to three matmuls of one
// input, gate/up with swiglu, a matmul with its residual add, rope of q and k, a decode
// step's rope, kv_store and attention with the output projection and its residual add
// (TAPML_VULKAN_PROJ_MAX=0: without them), and gate/up with swiglu, the down projection and
// its residual add (TAPML_VULKAN_FFN_MAX=0: without the last two); every output is written as
// the unfused calls would write it. TAPML_VULKAN_FUSE=0 runs every call alone.
// Limits of the device (storage buffer range, workgroup counts, allocation size, shared
// memory, storage buffers per dispatch for the fused shaders) are checked in supports() and
// before holding a call, which refuses a call it cannot take with the reason instead of
// letting run() fail. TAPML_VULKAN_STATS=1 prints, when the backend is destroyed, its
// dispatches (fused ones among them), pipeline barriers, submissions, writes recorded,
// allocations and the seconds spent waiting.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/registry.h"

namespace tapml {

std::unique_ptr<Backend> make_vulkan_backend(const BackendUri& uri);

// Every Vulkan device this machine has ("vulkan:0": NAME (type, Vulkan 1.3) and its limits),
// or one listing without a URI saying why there are none. Never throws.
std::vector<DeviceListing> vulkan_devices();

}  // namespace tapml
