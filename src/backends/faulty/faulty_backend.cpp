// The faulty backend. A fault is injected in one of two ways:
//   - by changing the call and letting the inner kernel run it (rope_pairing, rmsnorm_eps,
//     kv_offset, rope_position): the bug is then exactly "right kernel, wrong argument";
//   - by computing the op on the host with the reference loops, changed in the one place the
//     bug lives (the rest), reading inputs from and writing outputs to the inner backend.
// Host computation keeps the inner's numbers where a fault has no effect (K % 8 == 0 for
// matmul_tail, a single KV head for gqa_map): such calls go to the inner kernel.
// The quantized-weight faults and f16_reader are host computation too: the weight's rows
// decoded with the bug, then the f64 dot products (matmul) or the copy (embedding).
#include "backends/faulty/faulty_backend.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>

#include "backend/forwarding_backend.h"
#include "core/error.h"
#include "core/pattern.h"
#include "core/quant.h"

namespace tapml {

namespace {

enum class Fault {
  SoftmaxF16,
  RopePairing,
  GqaMap,
  KvOffset,
  MatmulTail,
  RmsnormEps,
  SiluApprox,
  ExpOverflow,
  GeluForm,
  LayernormMean,
  BiasDropped,
  RopeFullHead,
  WindowOffByOne,
  SoftcapMissing,
  RouterAxis,
  MoeNorm,
  RopePosition,
  NibbleOrder,
  KquantScale,
  MinSign,
  LastBlock,
  Q6kHighBits,
  F16Reader
};

struct FaultDef {
  const char* name;
  Fault fault;
  std::vector<Op> ops;  // the ops it changes
};

const FaultDef kFaults[] = {
    {"softmax_f16", Fault::SoftmaxF16, {Op::Attention}},
    {"rope_pairing", Fault::RopePairing, {Op::Rope}},
    {"gqa_map", Fault::GqaMap, {Op::Attention}},
    {"kv_offset", Fault::KvOffset, {Op::KvStore}},
    {"matmul_tail", Fault::MatmulTail, {Op::Matmul}},
    {"rmsnorm_eps", Fault::RmsnormEps, {Op::RmsNorm}},
    {"silu_approx", Fault::SiluApprox, {Op::Swiglu}},
    {"exp_overflow", Fault::ExpOverflow, {Op::Attention, Op::Swiglu}},
    {"gelu_form", Fault::GeluForm, {Op::Gelu}},
    {"layernorm_mean", Fault::LayernormMean, {Op::LayerNorm}},
    {"bias_dropped", Fault::BiasDropped, {Op::Bias}},
    {"rope_full_head", Fault::RopeFullHead, {Op::Rope}},
    {"window_off_by_one", Fault::WindowOffByOne, {Op::Attention}},
    {"softcap_missing", Fault::SoftcapMissing, {Op::Attention, Op::Softcap}},
    {"router_axis", Fault::RouterAxis, {Op::MoeRoute}},
    {"moe_norm", Fault::MoeNorm, {Op::MoeRoute}},
    {"rope_position", Fault::RopePosition, {Op::Rope}},
    {"nibble_order", Fault::NibbleOrder, {Op::Matmul, Op::Embedding}},
    {"kquant_scale", Fault::KquantScale, {Op::Matmul, Op::Embedding}},
    {"q4_1_min_sign", Fault::MinSign, {Op::Matmul, Op::Embedding}},
    {"last_block", Fault::LastBlock, {Op::Matmul, Op::Embedding}},
    {"q6_k_high_bits", Fault::Q6kHighBits, {Op::Matmul, Op::Embedding}},
    {"f16_reader", Fault::F16Reader, {Op::Matmul, Op::Embedding}},
};

// The block types a quantized-weight fault decodes wrongly; empty for the other faults.
std::vector<DType> block_types(Fault f) {
  switch (f) {
    case Fault::NibbleOrder:
      return {DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q4_K, DType::Q5_K};
    case Fault::KquantScale:
      return {DType::Q4_K, DType::Q5_K};
    case Fault::MinSign:
      return {DType::Q4_1, DType::Q5_1, DType::Q2_K, DType::Q4_K, DType::Q5_K};
    case Fault::LastBlock:
      return {std::begin(kBlockDTypes), std::end(kBlockDTypes)};
    case Fault::Q6kHighBits:
      return {DType::Q6_K};
    default:
      return {};
  }
}

// The weight types a weight-reading fault decodes wrongly: the block types of a quantized-weight
// fault, f16 for f16_reader; empty for the other faults.
std::vector<DType> weight_types(Fault f) {
  if (f == Fault::F16Reader) return {DType::F16};
  return block_types(f);
}

// The input of matmul and embedding that holds the weight: matmul's w, embedding's table.
size_t weight_input(Op op) { return op == Op::Matmul ? 1 : 0; }

// An f16 value as f16_reader reads it: widened to f32, then cut to bf16 by dropping the low
// 16 bits (truncation, not rounding), so the mantissa keeps 7 of its 10 bits.
float through_bf16(float x) {
  uint32_t bits = 0;
  std::memcpy(&bits, &x, sizeof bits);
  bits &= 0xFFFF0000u;
  std::memcpy(&x, &bits, sizeof x);
  return x;
}

// One block as the faulty decoder reads it, written as the bytes that ggml's decoder would
// have to be given to compute the same values: the bug's one misread applied to its field,
// every other field and every float operation unchanged.
void misread(Fault f, QuantType q, uint8_t* b) {
  using namespace quant;
  auto swap_nibbles = [&](size_t at, size_t n) {
    for (size_t i = at; i < at + n; ++i) b[i] = uint8_t(b[i] >> 4 | b[i] << 4);
  };
  switch (f) {
    case Fault::NibbleOrder:
      switch (q) {
        case QuantType::Q4_0:
          return swap_nibbles(offsetof(BlockQ4_0, qs), sizeof(BlockQ4_0::qs));
        case QuantType::Q4_1:
          return swap_nibbles(offsetof(BlockQ4_1, qs), sizeof(BlockQ4_1::qs));
        case QuantType::Q5_0:
          return swap_nibbles(offsetof(BlockQ5_0, qs), sizeof(BlockQ5_0::qs));
        case QuantType::Q5_1:
          return swap_nibbles(offsetof(BlockQ5_1, qs), sizeof(BlockQ5_1::qs));
        case QuantType::Q4_K:
          return swap_nibbles(offsetof(BlockQ4_K, qs), sizeof(BlockQ4_K::qs));
        case QuantType::Q5_K:
          return swap_nibbles(offsetof(BlockQ5_K, qs), sizeof(BlockQ5_K::qs));
        default:
          break;
      }
      break;
    case Fault::KquantScale: {
      // The scale of sub-block j >= 4 is (s[j + 4] & 15) | (s[j - 4] >> 6) << 4; the faulty
      // decoder shifts s[j] in, so byte j - 4 appears to hold byte j's top 2 bits. Its low 6
      // bits (sub-block j - 4's scale) are untouched.
      const size_t at =
          q == QuantType::Q4_K ? offsetof(BlockQ4_K, scales) : offsetof(BlockQ5_K, scales);
      uint8_t* s = b + at;
      for (int j = 4; j < 8; ++j) s[j - 4] = uint8_t((s[j - 4] & 0x3F) | (s[j] & 0xC0));
      return;
    }
    case Fault::MinSign: {
      size_t at = 0;
      switch (q) {
        case QuantType::Q4_1:
          at = offsetof(BlockQ4_1, m);
          break;
        case QuantType::Q5_1:
          at = offsetof(BlockQ5_1, m);
          break;
        case QuantType::Q2_K:
          at = offsetof(BlockQ2_K, dmin);
          break;
        case QuantType::Q4_K:
          at = offsetof(BlockQ4_K, dmin);
          break;
        default:
          at = offsetof(BlockQ5_K, dmin);
          break;
      }
      b[at + 1] ^= 0x80;  // the sign of a little-endian f16: -m where +m was meant
      return;
    }
    case Fault::Q6kHighBits: {
      // qh byte l holds the top 2 bits of elements l, l + 32, l + 64, l + 96 at shifts 0, 2,
      // 4, 6; the faulty decoder takes bits 4-5 for l + 32 and bits 2-3 for l + 64.
      uint8_t* qh = b + offsetof(BlockQ6_K, qh);
      for (size_t l = 0; l < sizeof(BlockQ6_K::qh); ++l)
        qh[l] = uint8_t((qh[l] & 0xC3) | (qh[l] & 0x0C) << 2 | (qh[l] & 0x30) >> 2);
      return;
    }
    default:
      break;
  }
}

std::string fault_list() {
  std::string s;
  for (const FaultDef& f : kFaults) s += (s.empty() ? "" : ", ") + std::string(f.name);
  return s;
}

// A value as a half-precision register would hold it.
float as_f16(float x) { return f16_to_f32(f32_to_f16(x)); }

class FaultyBackend final : public ForwardingBackend {
 public:
  FaultyBackend(BackendInfo info, std::unique_ptr<Backend> inner, const FaultDef& fault,
                Pattern site)
      : ForwardingBackend(std::move(inner)),
        info_(std::move(info)),
        fault_(fault),
        site_(std::move(site)) {}

  ~FaultyBackend() override {
    if (pos_buffer_ == 0) return;
    try {
      inner().free(pos_buffer_);
    } catch (...) {  // a destructor must not throw; the inner frees it with itself anyway
    }
  }

  const BackendInfo& info() const override { return info_; }

  void run(const OpCall& call) override {
    if (!touches(call)) return inner().run(call);
    switch (fault_.fault) {
      case Fault::RopePairing: {
        OpCall c = call;
        c.attrs.set("pairing", call.attrs.get_int("pairing") == 1 ? 0 : 1);
        return inner().run(c);
      }
      case Fault::RmsnormEps: {
        OpCall c = call;
        c.attrs.set("eps", 0);
        return inner().run(c);
      }
      case Fault::KvOffset:
        return kv_store_off_by_one(call);
      case Fault::MatmulTail:
        return matmul_without_tail(call);
      case Fault::SiluApprox:
      case Fault::ExpOverflow:
        if (call.op == Op::Swiglu) return swiglu(call);
        return attention(call);
      case Fault::SoftmaxF16:
      case Fault::GqaMap:
        return attention(call);
      case Fault::GeluForm:
        return inner().run(with(call, "approx", call.attrs.get_int("approx") == 1 ? 0 : 1));
      case Fault::LayernormMean:
        return layernorm_without_mean(call);
      case Fault::BiasDropped:
        return copy_input(call);
      case Fault::RopeFullHead:
        // Rotates every dimension of the head, as if partial rotary were not there.
        return inner().run(with(call, "rope_dim", double(call.attrs.get_int("head_dim"))));
      case Fault::WindowOffByOne: {
        // window + 1 keys visible: a `<=` where the mask wanted `<`.
        int64_t w = int64_t(call.attrs.get_or("window", 0));
        return inner().run(w > 0 ? with(call, "window", double(w + 1)) : call);
      }
      case Fault::SoftcapMissing:
        if (call.op == Op::Softcap) return copy_input(call);
        return inner().run(without(call, "softcap"));
      case Fault::RouterAxis:
        return route_over_tokens(call);
      case Fault::MoeNorm:
        return inner().run(with(call, "norm", call.attrs.get_int("norm") == 1 ? 0 : 1));
      case Fault::NibbleOrder:
      case Fault::KquantScale:
      case Fault::MinSign:
      case Fault::LastBlock:
      case Fault::Q6kHighBits:
      case Fault::F16Reader:
        return misread_weight(call);
      case Fault::RopePosition:
        return rope_one_position_late(call);
    }
  }

 private:
  bool touches(const OpCall& call) const {
    bool op = std::find(fault_.ops.begin(), fault_.ops.end(), call.op) != fault_.ops.end();
    if (!op || !site_.search(call.site)) return false;
    const std::vector<DType> types = weight_types(fault_.fault);
    if (types.empty()) return true;
    // A weight-reading fault: only the weight types it names (a malformed call goes to the
    // inner backend, which says what is wrong).
    const size_t w = weight_input(call.op);
    return w < call.inputs.size() &&
           std::find(types.begin(), types.end(), call.inputs[w].dtype) != types.end();
  }

  // Host computation reads the inputs itself, so it checks the call against the catalog
  // first (the inner kernel would have); buffer bounds are checked by the inner's read().
  void check(const OpCall& c) const {
    try {
      validate(c);
    } catch (const Error& e) {
      throw Error(std::string("faulty: ") + e.what());
    }
  }

  std::vector<float> read_floats(const DeviceTensor& t) {
    std::vector<std::byte> bytes(t.nbytes());
    inner().read(t.buffer, t.offset, bytes.data(), bytes.size());
    std::vector<float> v(static_cast<size_t>(t.shape.numel()));
    for (size_t i = 0; i < v.size(); ++i) {
      uint16_t h = 0;
      switch (t.dtype) {
        case DType::F32:
          std::memcpy(&v[i], bytes.data() + 4 * i, 4);
          break;
        case DType::F16:
          std::memcpy(&h, bytes.data() + 2 * i, 2);
          v[i] = f16_to_f32(h);
          break;
        case DType::BF16:
          std::memcpy(&h, bytes.data() + 2 * i, 2);
          v[i] = bf16_to_f32(h);
          break;
        default:
          throw Error("faulty: expected a float tensor, got " + std::string(dtype_name(t.dtype)));
      }
    }
    return v;
  }

  void write_floats(const DeviceTensor& t, const std::vector<float>& v) {
    inner().write(t.buffer, t.offset, v.data(), v.size() * sizeof(float));
  }

  // Runs the store at pos + 1 once pos >= 2: prefill and the first decode steps of a short
  // prompt look right, and the bug shows only later, as such bugs do.
  // The call with one attribute changed (set where it was absent).
  static OpCall with(const OpCall& call, const std::string& name, double value) {
    OpCall c = call;
    c.attrs.set(name, value);
    return c;
  }
  static OpCall without(const OpCall& call, const std::string& name) {
    OpCall c = call;
    c.attrs = Attrs{};
    for (const auto& [k, v] : call.attrs.items())
      if (k != name) c.attrs.set(k, v);
    return c;
  }

  // The output is the first input: the op was skipped (a bias never added, a cap left out).
  void copy_input(const OpCall& c) {
    check(c);
    inner().sync();
    write_floats(c.outputs[0], read_floats(c.inputs[0]));
  }

  // LayerNorm that scales by the deviation but never subtracts the mean: x / sigma * w.
  void layernorm_without_mean(const OpCall& c) {
    check(c);
    inner().sync();
    std::vector<float> x = read_floats(c.inputs[0]), w = read_floats(c.inputs[1]);
    const int64_t N = c.inputs[0].shape[1], T = c.inputs[0].shape[0];
    const double eps = c.attrs.get("eps");
    std::vector<float> out(x.size());
    for (int64_t t = 0; t < T; ++t) {
      const float* row = x.data() + t * N;
      double mean = 0, var = 0;
      for (int64_t i = 0; i < N; ++i) mean += row[i];
      mean /= double(N);
      for (int64_t i = 0; i < N; ++i) var += (row[i] - mean) * (row[i] - mean);
      double inv = 1.0 / std::sqrt(var / double(N) + eps);
      for (int64_t i = 0; i < N; ++i) out[size_t(t * N + i)] = float(row[i] * inv * w[size_t(i)]);
    }
    write_floats(c.outputs[0], out);
  }

  // The router's softmax taken down each expert's column (over the tokens) instead of along
  // each token's row: with one token every probability is 1 and the first k experts win.
  void route_over_tokens(const OpCall& c) {
    check(c);
    inner().sync();
    std::vector<float> logits = read_floats(c.inputs[0]);
    const int64_t T = c.inputs[0].shape[0], E = c.inputs[0].shape[1];
    const int64_t k = c.attrs.get_int("k");
    const bool norm = c.attrs.get_int("norm") == 1;
    std::vector<double> p(logits.size());
    for (int64_t e = 0; e < E; ++e) {
      double mx = -INFINITY, sum = 0;
      for (int64_t t = 0; t < T; ++t) mx = std::max(mx, double(logits[size_t(t * E + e)]));
      for (int64_t t = 0; t < T; ++t)
        sum += p[size_t(t * E + e)] = std::exp(double(logits[size_t(t * E + e)]) - mx);
      for (int64_t t = 0; t < T; ++t) p[size_t(t * E + e)] /= sum;
    }
    std::vector<float> out(logits.size(), 0.0f);
    std::vector<int64_t> order(static_cast<size_t>(E));
    for (int64_t t = 0; t < T; ++t) {
      const double* row = p.data() + t * E;
      for (int64_t e = 0; e < E; ++e) order[size_t(e)] = e;
      std::stable_sort(order.begin(), order.end(),
                       [&](int64_t a, int64_t b) { return row[a] > row[b]; });
      double chosen = 0;
      for (int64_t i = 0; i < k; ++i) chosen += row[order[size_t(i)]];
      for (int64_t i = 0; i < k; ++i) {
        int64_t e = order[size_t(i)];
        out[size_t(t * E + e)] = float(norm ? row[e] / chosen : row[e]);
      }
    }
    write_floats(c.outputs[0], out);
  }

  void kv_store_off_by_one(const OpCall& call) {
    const DeviceTensor& pos_t = call.inputs.at(4);
    TAPML_REQUIRE(pos_t.dtype == DType::I32 && pos_t.shape.numel() == 1,
                  "faulty: kv_store pos must be one i32");
    int32_t pos = 0;
    inner().sync();
    inner().read(pos_t.buffer, pos_t.offset, &pos, sizeof pos);
    int64_t S = call.inputs.at(0).shape[0], T = call.inputs.at(2).shape[0];
    int64_t shifted = std::min<int64_t>(int64_t(pos) + 1, S - T);  // never past the cache
    if (pos < 2 || shifted <= pos) return inner().run(call);
    OpCall c = call;
    c.inputs[4] = scratch_positions({int32_t(shifted)});
    inner().run(c);
  }

  void matmul_without_tail(const OpCall& c) {
    check(c);
    int64_t T = c.inputs[0].shape[0], K = c.inputs[0].shape[1], N = c.inputs[1].shape[0];
    // A kernel that unrolls by 8 and forgets the remainder loop.
    int64_t kept = K - K % 8;
    if (kept == K) return inner().run(c);
    inner().sync();
    std::vector<float> x = read_floats(c.inputs[0]), w = read_floats(c.inputs[1]);
    std::vector<float> out(static_cast<size_t>(T * N));
    for (int64_t t = 0; t < T; ++t)
      for (int64_t n = 0; n < N; ++n) {
        double acc = 0;
        for (int64_t k = 0; k < kept; ++k)
          acc += double(x[size_t(t * K + k)]) * w[size_t(n * K + k)];
        out[size_t(t * N + n)] = float(acc);
      }
    write_floats(c.outputs[0], out);
  }

  // One weight row of K elements as the inner kernel reads it (`right`) and as the fault's
  // reader does (`wrong`); under last_block the two are equal (the kernel skips elements
  // rather than misreading them). `bytes` may be changed.
  void decode_row(DType t, std::vector<uint8_t>& bytes, std::vector<float>& right,
                  std::vector<float>& wrong, int64_t K) const {
    if (fault_.fault == Fault::F16Reader) {
      for (int64_t k = 0; k < K; ++k) {
        uint16_t h = 0;
        std::memcpy(&h, bytes.data() + 2 * k, 2);
        right[size_t(k)] = f16_to_f32(h);
        wrong[size_t(k)] = through_bf16(right[size_t(k)]);
      }
      return;
    }
    const QuantType q = *block_quant(t);
    dequantize_row(q, bytes.data(), right.data(), K);
    if (fault_.fault == Fault::LastBlock) {
      wrong = right;
      return;
    }
    const size_t bb = quant_block_bytes(q);
    for (size_t at = 0; at < bytes.size(); at += bb) misread(fault_.fault, q, bytes.data() + at);
    dequantize_row(q, bytes.data(), wrong.data(), K);
  }

  // matmul or embedding over a weight the fault's reader gets wrong (a block type dequantized
  // with the bug, or f16 under f16_reader). Each row read is also decoded correctly, to tell
  // whether the bug changes anything here; if it changes nothing, the inner kernel runs the
  // call.
  void misread_weight(const OpCall& c) {
    check(c);
    const bool matmul = c.op == Op::Matmul;
    const DeviceTensor& w = c.inputs[weight_input(c.op)];
    const int64_t K = w.shape[1], V = w.shape[0];
    const size_t rb = row_bytes(w.dtype, K);
    const bool last_block = fault_.fault == Fault::LastBlock;
    // Elements of a row the kernel uses: all but the last block under last_block.
    const int64_t kept = last_block ? K - quant_block_elems(*block_quant(w.dtype)) : K;
    inner().sync();
    // The weight rows this call reads: all of them (matmul) or the ids' (embedding).
    std::vector<int64_t> rows;
    if (matmul) {
      for (int64_t n = 0; n < V; ++n) rows.push_back(n);
    } else {
      const DeviceTensor& ids_t = c.inputs[1];
      std::vector<int32_t> ids(static_cast<size_t>(ids_t.shape.numel()));
      inner().read(ids_t.buffer, ids_t.offset, ids.data(), ids.size() * sizeof(int32_t));
      for (int32_t id : ids) {
        TAPML_REQUIRE(id >= 0 && id < V, "faulty: embedding: token id " + std::to_string(id) +
                                             " outside the vocabulary of " + std::to_string(V));
        rows.push_back(id);
      }
    }
    const int64_t T = matmul ? c.inputs[0].shape[0] : int64_t(rows.size());
    std::vector<float> x;
    if (matmul) x = read_floats(c.inputs[0]);
    // matmul: [T, V] dot products; embedding: [T, K] decoded rows.
    std::vector<float> out(static_cast<size_t>(T * (matmul ? V : K)));
    std::vector<uint8_t> bytes(rb);
    std::vector<float> right(static_cast<size_t>(K)), wrong(static_cast<size_t>(K));
    bool changes = false;
    for (size_t r = 0; r < rows.size(); ++r) {
      inner().read(w.buffer, w.offset + size_t(rows[r]) * rb, bytes.data(), rb);
      decode_row(w.dtype, bytes, right, wrong, K);
      changes |= wrong != right;
      for (int64_t k = kept; k < K; ++k) changes |= right[size_t(k)] != 0.0f;
      if (!matmul) {
        std::copy(wrong.begin(), wrong.end(), out.begin() + int64_t(r) * K);
        continue;
      }
      for (int64_t t = 0; t < T; ++t) {
        double acc = 0;
        for (int64_t k = 0; k < kept; ++k) acc += double(x[size_t(t * K + k)]) * wrong[size_t(k)];
        out[size_t(t * V + int64_t(r))] = float(acc);
      }
    }
    if (!matmul && last_block) {
      // Each output row's last block is never written.
      const DeviceTensor& o = c.outputs[0];
      for (int64_t t = 0; t < T; ++t)
        inner().write(o.buffer, o.offset + size_t(t * K) * sizeof(float), out.data() + t * K,
                      size_t(kept) * sizeof(float));
      return;
    }
    if (!changes) return inner().run(c);
    write_floats(c.outputs[0], out);
  }

  // rope with every position one late (pos + 1), as when a kernel indexes its angle table
  // from 1. q and k both turn one step further, so q.k, and attention, stay as they were.
  void rope_one_position_late(const OpCall& call) {
    const DeviceTensor& pos_t = call.inputs.at(1);
    TAPML_REQUIRE(pos_t.dtype == DType::I32, "faulty: rope pos must be i32");
    std::vector<int32_t> pos(static_cast<size_t>(pos_t.shape.numel()));
    inner().sync();  // also: no queued call still reads the scratch buffer rewritten below
    inner().read(pos_t.buffer, pos_t.offset, pos.data(), pos.size() * sizeof(int32_t));
    for (int32_t& p : pos) ++p;
    OpCall c = call;
    c.inputs[1] = scratch_positions(pos);
    inner().run(c);
  }

  // `pos` in a buffer of the inner backend that this wrapper owns (grown as needed).
  DeviceTensor scratch_positions(const std::vector<int32_t>& pos) {
    const size_t bytes = std::max<size_t>(pos.size(), 1) * sizeof(int32_t);
    if (pos_bytes_ < bytes) {
      if (pos_buffer_ != 0) inner().free(pos_buffer_);
      pos_buffer_ = inner().alloc(bytes);
      pos_bytes_ = bytes;
    }
    inner().write(pos_buffer_, 0, pos.data(), pos.size() * sizeof(int32_t));
    return DeviceTensor{pos_buffer_, 0, DType::I32, Shape{int64_t(pos.size())}};
  }

  void swiglu(const OpCall& c) {
    check(c);
    inner().sync();
    std::vector<float> g = read_floats(c.inputs[0]), u = read_floats(c.inputs[1]);
    std::vector<float> out(g.size());
    for (size_t i = 0; i < g.size(); ++i) {
      float sigmoid;
      if (fault_.fault == Fault::SiluApprox) {
        sigmoid = std::clamp(0.5f + g[i] / 4.0f, 0.0f, 1.0f);
      } else {  // exp_overflow: the textbook form, with exp held in half precision
        float e = as_f16(std::exp(g[i]));
        sigmoid = e / (1.0f + e);
      }
      out[i] = g[i] * sigmoid * u[i];
    }
    write_floats(c.outputs[0], out);
  }

  void attention(const OpCall& c) {
    check(c);
    int64_t T = c.inputs[0].shape[0], P = c.inputs[1].shape[0];
    int64_t H = c.attrs.get_int("n_heads"), KV = c.attrs.get_int("n_kv_heads");
    int64_t hd = c.attrs.get_int("head_dim");
    double scale = c.attrs.get("scale");
    // The sliding window and the score cap as the catalog defines them: a fault changes
    // nothing else.
    const int64_t window = int64_t(c.attrs.get_or("window", 0));
    const double cap = c.attrs.get_or("softcap", 0);
    auto capped = [&](double s) { return cap > 0 ? cap * std::tanh(s / cap) : s; };
    int64_t qw = H * hd, kw = KV * hd, group = H / KV;
    // With one KV head every query head reads it whatever the mapping.
    if (fault_.fault == Fault::GqaMap && KV == 1) return inner().run(c);
    inner().sync();
    std::vector<float> q = read_floats(c.inputs[0]), k = read_floats(c.inputs[1]),
                       v = read_floats(c.inputs[2]);
    std::vector<float> out(static_cast<size_t>(T * qw));
    std::vector<double> weight(static_cast<size_t>(P));
    for (int64_t t = 0; t < T; ++t) {
      int64_t last = P - T + t;  // causal: keys 0..last
      int64_t first = window > 0 ? std::max<int64_t>(0, last - window + 1) : 0;
      for (int64_t h = 0; h < H; ++h) {
        const float* qh = q.data() + t * qw + h * hd;
        int64_t kh = h / group;
        if (fault_.fault == Fault::GqaMap) kh = KV == H ? (h + 1) % KV : h % KV;
        auto key = [&](int64_t j) { return k.data() + j * kw + kh * hd; };
        double sum = 0;
        if (fault_.fault == Fault::SoftmaxF16) {
          // The scale is applied after the f16 dot product, so a raw q.k beyond 65504
          // overflows even though the scaled score would have fit.
          float mx = -INFINITY;
          for (int64_t j = first; j <= last; ++j) {
            float dot = 0;
            for (int64_t i = 0; i < hd; ++i) dot = as_f16(dot + as_f16(qh[i] * key(j)[i]));
            float s = as_f16(float(capped(as_f16(dot * float(scale)))));
            weight[size_t(j)] = s;
            mx = as_f16(std::max(mx, s));
          }
          float sum16 = 0;
          for (int64_t j = first; j <= last; ++j) {
            float e = as_f16(std::exp(as_f16(float(weight[size_t(j)]) - mx)));
            weight[size_t(j)] = e;
            sum16 = as_f16(sum16 + e);
          }
          sum = sum16;
        } else if (fault_.fault == Fault::ExpOverflow) {
          // exp of the raw score ("it's shift-invariant, the max is only for stability"),
          // held in half precision as a fast shader exp would be.
          float sum32 = 0;
          for (int64_t j = first; j <= last; ++j) {
            double dot = 0;
            for (int64_t i = 0; i < hd; ++i) dot += double(qh[i]) * key(j)[i];
            float e = as_f16(std::exp(float(capped(dot * scale))));
            weight[size_t(j)] = e;
            sum32 += e;
          }
          sum = sum32;
        } else {  // gqa_map: the reference softmax on the wrong head
          double mx = -INFINITY;
          for (int64_t j = first; j <= last; ++j) {
            double dot = 0;
            for (int64_t i = 0; i < hd; ++i) dot += double(qh[i]) * key(j)[i];
            weight[size_t(j)] = capped(dot * scale);
            mx = std::max(mx, weight[size_t(j)]);
          }
          for (int64_t j = first; j <= last; ++j)
            sum += (weight[size_t(j)] = std::exp(weight[size_t(j)] - mx));
        }
        for (int64_t i = 0; i < hd; ++i) {
          double acc = 0;
          for (int64_t j = first; j <= last; ++j)
            acc += weight[size_t(j)] * v[size_t(j * kw + kh * hd + i)];
          out[size_t(t * qw + h * hd + i)] = float(acc / sum);
        }
      }
    }
    write_floats(c.outputs[0], out);
  }

  BackendInfo info_;
  const FaultDef& fault_;
  Pattern site_;
  // Shifted positions (kv_offset's, rope_position's) on the inner backend, and its size.
  BufferId pos_buffer_ = 0;
  size_t pos_bytes_ = 0;
};

}  // namespace

const std::vector<std::string>& known_faults() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (const FaultDef& f : kFaults) v.push_back(f.name);
    return v;
  }();
  return names;
}

std::vector<Op> fault_ops(const std::string& fault) {
  for (const FaultDef& f : kFaults)
    if (fault == f.name) return f.ops;
  throw UsageError("unknown fault '" + fault + "' (known faults: " + fault_list() + ")");
}

std::vector<DType> fault_block_types(const std::string& fault) {
  for (const FaultDef& f : kFaults)
    if (fault == f.name) return block_types(f.fault);
  throw UsageError("unknown fault '" + fault + "' (known faults: " + fault_list() + ")");
}

std::unique_ptr<Backend> make_faulty_backend(const BackendUri& uri) {
  const std::string where = "backend URI '" + uri.text + "': ";
  uri.allow_params({"fault", "site"});
  TAPML_REQUIRE_USAGE(!uri.target.empty(),
                      where + "name the backend to wrap, as in faulty:cpu?fault=NAME");
  auto named = uri.params.find("fault");
  TAPML_REQUIRE_USAGE(named != uri.params.end(),
                      where + "missing fault=NAME (known faults: " + fault_list() + ")");
  const FaultDef* fault = nullptr;
  for (const FaultDef& f : kFaults)
    if (named->second == f.name) fault = &f;
  TAPML_REQUIRE_USAGE(fault != nullptr, where + "unknown fault '" + named->second +
                                            "' (known faults: " + fault_list() + ")");
  std::string site = uri.param("site", "");
  Pattern site_re(site, where + "site=");
  // Through the registry rather than the built-in list: backends know nothing of each other.
  std::unique_ptr<Backend> inner;
  try {
    inner = make_backend(uri.target);
  } catch (const UsageError& e) {
    throw UsageError(where + "inner backend: " + e.what());
  } catch (const Error& e) {
    throw Error(where + "inner backend: " + e.what());
  }
  BackendInfo info{uri.text, "faulty",
                   uri.target + " with fault " + fault->name + " at " +
                       (site.empty() ? "every site" : "sites " + site),
                   inner->info().max_buffer_bytes, inner->info().memory_bytes};
  return std::make_unique<FaultyBackend>(std::move(info), std::move(inner), *fault,
                                         std::move(site_re));
}

}  // namespace tapml
