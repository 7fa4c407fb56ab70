// Protocol version 3 carries ggml's block types: a server lists the dtypes its backend takes,
// a q4_k or q8_0 weight crosses tcp:// and the product equals ref's bit for bit, a quantized
// model runs over `tapml serve` to ref's greedy tokens, a client refuses a dtype its server
// does not list, and a version 2 server is named with both versions.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <nlohmann/json.hpp>
#include <random>

#include "backend/forwarding_backend.h"
#include "backend/host_call.h"
#include "backends/builtin.h"
#include "core/error.h"
#include "format/gguf.h"
#include "rpc/protocol.h"
#include "support/errors.h"
#include "support/running_server.h"
#include "support/shared.h"

namespace tapml::rpc {
namespace {

using testing::ask;
using testing::error_of;
using testing::RunningServer;

std::vector<float> uniform(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = u(rng);
  return v;
}

TEST(RpcQuant, EveryDtypeHasItsCode) {
  const std::pair<DType, uint8_t> codes[] = {
      {DType::F32, 0},   {DType::F16, 1},   {DType::BF16, 2},  {DType::I32, 3},   {DType::Q4_0, 4},
      {DType::Q4_1, 5},  {DType::Q5_0, 6},  {DType::Q5_1, 7},  {DType::Q8_0, 8},  {DType::Q2_K, 9},
      {DType::Q3_K, 10}, {DType::Q4_K, 11}, {DType::Q5_K, 12}, {DType::Q6_K, 13},
  };
  for (auto [d, code] : codes) {
    EXPECT_EQ(dtype_code(d), code) << dtype_name(d);
    EXPECT_EQ(dtype_from_code(code), d) << int(code);
  }
  EXPECT_NE(error_of([] { dtype_from_code(14); }).find("unknown dtype code 14"), std::string::npos);
}

// A block tensor on the wire must be rows of whole blocks, so that it has a byte size.
TEST(RpcQuant, BlockTensorsTravelInWholeBlocks) {
  Message m;
  m.type = MsgType::Run;
  m.call.op = Op::Matmul;
  m.call.inputs = {{1, 0, DType::F32, Shape{2, 512}}, {2, 0, DType::Q4_K, Shape{3, 512}}};
  m.call.outputs = {{3, 0, DType::F32, Shape{2, 3}}};
  Message back = decode_message(encode_message(m));
  ASSERT_EQ(back.call.inputs.size(), 2u);
  EXPECT_EQ(back.call.inputs[1].dtype, DType::Q4_K);
  EXPECT_EQ(back.call.inputs[1].nbytes(), 3u * 2 * 144);
  m.call.inputs[1].shape = Shape{3, 500};
  EXPECT_NE(error_of([&] { decode_message(encode_message(m)); }).find("not whole blocks of 256"),
            std::string::npos);
}

HelloOk hello_of(const RunningServer& s) {
  Socket raw = s.raw_client(false);
  Message m;
  m.type = MsgType::Hello;
  Message r = ask(raw, m);
  EXPECT_EQ(r.type, MsgType::HelloOk) << r.text;
  return r.hello_ok;
}

// ref computes every block type; cpu none: each server lists what its backend takes.
// cpu without its block-type kernels, as a backend that has none answers.
class PlainCpu final : public ForwardingBackend {
 public:
  PlainCpu() : ForwardingBackend(open_backend("cpu?threads=1")) {}
  Support supports(const OpCall& call) const override {
    for (const DeviceTensor& t : call.inputs)
      if (is_block(t.dtype)) return Support::no("plain: no block kernels");
    return ForwardingBackend::supports(call);
  }
};

TEST(RpcQuant, HelloOkListsTheBackendsDtypes) {
  RunningServer ref("ref");
  HelloOk h = hello_of(ref);
  EXPECT_EQ(h.version, 3u);
  for (DType d : kAllDTypes)
    EXPECT_NE(std::find(h.dtypes.begin(), h.dtypes.end(), d), h.dtypes.end()) << dtype_name(d);
  RunningServer plain(std::make_unique<PlainCpu>());
  EXPECT_EQ(hello_of(plain).dtypes,
            (std::vector<DType>{DType::F32, DType::F16, DType::BF16, DType::I32}));
  RunningServer cpu("cpu?threads=1");
  EXPECT_EQ(hello_of(cpu).dtypes.size(), std::size(kAllDTypes));
}

TEST(RpcQuant, QuantizedMatmulOverTcpEqualsRefBitForBit) {
  RunningServer s("ref");
  auto remote = open_backend(s.uri());
  auto local = open_backend("ref");
  const int64_t T = 3, K = 512, N = 37;
  for (DType q : {DType::Q4_K, DType::Q8_0}) {
    std::vector<Tensor> in = {Tensor::from_f32(Shape{T, K}, uniform(T * K, 1)),
                              Tensor::from_f32_as(q, Shape{N, K}, uniform(N * K, 2))};
    ASSERT_EQ(in[1].nbytes(), tensor_bytes(q, Shape{N, K}));
    HostCallResult a = run_host_call(*remote, Op::Matmul, {}, in);
    HostCallResult b = run_host_call(*local, Op::Matmul, {}, in);
    ASSERT_EQ(a.outputs.size(), 1u);
    EXPECT_TRUE(a.guards_intact[0]);
    EXPECT_EQ(std::memcmp(a.outputs[0].bytes(), b.outputs[0].bytes(), b.outputs[0].nbytes()), 0)
        << dtype_name(q);
    // The product is not the f32 weights' (the blocks arrived, not something else).
    std::vector<Tensor> plain = {in[0], Tensor::from_f32(Shape{N, K}, uniform(N * K, 2))};
    HostCallResult c = run_host_call(*local, Op::Matmul, {}, plain);
    EXPECT_NE(std::memcmp(a.outputs[0].bytes(), c.outputs[0].bytes(), c.outputs[0].nbytes()), 0);
    // An embedding table of blocks too.
    std::vector<int32_t> ids = {5, 0, 36};
    std::vector<Tensor> emb = {in[1], Tensor::from_i32(Shape{3}, ids)};
    HostCallResult e = run_host_call(*remote, Op::Embedding, {}, emb);
    HostCallResult f = run_host_call(*local, Op::Embedding, {}, emb);
    EXPECT_EQ(std::memcmp(e.outputs[0].bytes(), f.outputs[0].bytes(), f.outputs[0].nbytes()), 0);
  }
}

// The client refuses, naming the dtype and what the server takes, before sending the call.
TEST(RpcQuant, AClientRefusesADtypeItsServerDoesNotList) {
  RunningServer s(std::make_unique<PlainCpu>());
  auto remote = open_backend(s.uri());
  const int64_t K = 256;
  OpCall call;
  call.op = Op::Matmul;
  call.inputs = {{1, 0, DType::F32, Shape{1, K}}, {2, 0, DType::Q4_K, Shape{4, K}}};
  call.outputs = {{3, 0, DType::F32, Shape{1, 4}}};
  Support sup = remote->supports(call);
  EXPECT_FALSE(sup.ok);
  const std::string want = s.uri().substr(0, s.uri().size()) +
                           " does not take dtype q4_k (its backend cpu takes f32, f16, bf16, i32)";
  EXPECT_EQ(sup.reason, want);
  EXPECT_EQ(error_of([&] { remote->run(call); }), want);
  std::vector<Tensor> in = {Tensor::from_f32(Shape{1, K}, uniform(K, 1)),
                            Tensor::from_f32_as(DType::Q4_K, Shape{4, K}, uniform(4 * K, 2))};
  EXPECT_NE(error_of([&] { run_host_call(*remote, Op::Matmul, {}, in); }).find(want),
            std::string::npos);
  // The connection carries on.
  std::vector<Tensor> f32 = {in[0], Tensor::from_f32(Shape{4, K}, uniform(4 * K, 2))};
  EXPECT_EQ(run_host_call(*remote, Op::Matmul, {}, f32).outputs.size(), 1u);
}

// A version 2 server refuses this build's HELLO naming its own version; a version 2 client
// is refused with both versions in one line.
TEST(RpcQuant, Version2PeersGetTheVersionMismatch) {
  Message refusal;
  refusal.type = MsgType::Error;
  refusal.text =
      "rpc: client speaks protocol 3, this server 2 (use the same TapML release on both "
      "machines)";
  std::vector<uint8_t> unused = encode_frame(refusal);
  {
    testing::FakeServer v2(encode_frame(refusal), unused);
    EXPECT_EQ(error_of([&] { open_backend(v2.uri()); }),
              v2.uri() + ": server speaks protocol 2, this build 3");
  }
  RunningServer s("ref");
  Socket raw = s.raw_client(false);
  Message m;
  m.type = MsgType::Hello;
  m.hello.version = 2;
  Message r = ask(raw, m);
  ASSERT_EQ(r.type, MsgType::Error);
  EXPECT_EQ(r.text.rfind("rpc: client speaks protocol 2, this server 3", 0), 0u) << r.text;
}

// `tapml serve --backend ref` in a child process; its first line names the port.
class Serve {
 public:
  Serve() {
    int out[2];
    if (pipe(out) != 0) throw std::runtime_error("pipe failed");
    std::string bin = testing::tapml_binary();
    pid_ = fork();
    if (pid_ == 0) {
      dup2(out[1], 1);
      int devnull = open("/dev/null", O_WRONLY);
      dup2(devnull, 2);
      close(out[0]);
      execl(bin.c_str(), bin.c_str(), "serve", "--backend", "ref", "--listen", "127.0.0.1:0",
            static_cast<char*>(nullptr));
      _exit(127);
    }
    close(out[1]);
    fd_ = out[0];
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (line_.find('\n') == std::string::npos && std::chrono::steady_clock::now() < deadline) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 100) <= 0) continue;
      char c;
      if (read(fd_, &c, 1) != 1) break;
      line_ += c;
    }
  }
  ~Serve() {
    kill(pid_, SIGTERM);
    waitpid(pid_, nullptr, 0);
    close(fd_);
  }
  std::string uri() const {
    auto c = line_.rfind(':');
    return "tcp://127.0.0.1:" + std::to_string(std::atoi(line_.c_str() + c + 1));
  }
  const std::string& line() const { return line_; }

 private:
  pid_t pid_ = -1;
  int fd_ = -1;
  std::string line_;
};

// stories260K with its matrices quantized (rows of 64 hold 32-element blocks) runs over
// `tapml serve --backend ref` to ref's greedy tokens.
TEST(RpcQuant, AQuantizedModelRunsOverTcpToRefsTokens) {
  gguf::File src = gguf::File::open(testing::shared_path("models/stories260K/stories260K.gguf"));
  Serve serve;
  ASSERT_NE(serve.line().find("127.0.0.1:"), std::string::npos) << serve.line();
  for (DType q : {DType::Q8_0, DType::Q4_0}) {
    const std::string path = testing::temp_dir() + "/s.gguf";
    gguf::Writer w;
    for (const auto& [k, v] : src.metadata())
      if (k != "general.alignment") w.set(k, v);
    int quantized = 0;
    for (const gguf::TensorInfo& ti : src.tensors()) {
      Tensor t = src.tensor(ti.name);
      if (t.shape().rank() == 2 && t.shape()[1] % block_elems(q) == 0) {
        t = Tensor::from_f32_as(q, t.shape(), t.to_f32());
        ++quantized;
      }
      w.add_tensor(ti.name, t);
    }
    w.write(path);
    ASSERT_GT(quantized, 5);
    auto run = [&](const std::string& backend) {
      auto r = testing::run_command(testing::tapml_command(
          "run --model " + testing::shell_quote(path) +
          " --prompt-ids 1,403,407,261 --steps 24 --json --backend " + backend));
      EXPECT_EQ(r.exit_code, 0) << backend << ": " << r.err;
      return r.exit_code == 0 ? nlohmann::json::parse(r.out).at("token_ids").get<std::vector<int>>()
                              : std::vector<int>{};
    };
    std::vector<int> ref = run("ref"), tcp = run(serve.uri());
    EXPECT_GE(ref.size(), size_t(8)) << dtype_name(q);
    EXPECT_EQ(tcp, ref) << dtype_name(q);
  }
}

}  // namespace
}  // namespace tapml::rpc
