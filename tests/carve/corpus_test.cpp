// The corpus store: bit-exact round trips, content dedup, weights by reference, clear errors
// for foreign, truncated, damaged and newer files, crash safety under SIGKILL, and the
// export folder (safetensors + manifest) read back by TapML and by numpy.
#include "carve/corpus.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "format/gguf.h"
#include "format/safetensors.h"
#include "support/errors.h"
#include "support/shared.h"
#include "support/tiny_model.h"

namespace tapml {
namespace {

namespace fs = std::filesystem;
using testing::contains;
using testing::error_of;

std::string temp_path(const std::string& name) { return testing::temp_dir() + "/" + name; }

std::string read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

// Random values in a dtype; f32 data also carries the values a careless copy would alter
// (NaN payloads, -0, infinities, subnormals) when `specials` is set.
Tensor random_tensor(DType dtype, Shape shape, uint32_t seed, bool specials = false) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  Tensor t(dtype, std::move(shape));
  for (int64_t i = 0; i < t.numel(); ++i) {
    float x = normal(rng);
    switch (dtype) {
      case DType::F32:
        t.mutable_data<float>()[i] = x;
        break;
      case DType::F16:
        t.mutable_data<uint16_t>()[i] = f32_to_f16(x);
        break;
      case DType::BF16:
        t.mutable_data<uint16_t>()[i] = f32_to_bf16(x);
        break;
      case DType::I32:
        t.mutable_data<int32_t>()[i] = int32_t(rng() % 1000) - 500;
        break;
      default:
        break;  // block types are not drawn here
    }
  }
  if (specials && dtype == DType::F32 && t.numel() >= 5) {
    uint32_t nan_payload = 0x7fc12345, subnormal = 0x00000123;
    std::memcpy(t.mutable_data<float>(), &nan_payload, 4);
    t.mutable_data<float>()[1] = -0.0f;
    t.mutable_data<float>()[2] = INFINITY;
    t.mutable_data<float>()[3] = -INFINITY;
    std::memcpy(t.mutable_data<float>() + 4, &subnormal, 4);
  }
  return t;
}

bool same_tensor(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() && a.nbytes() == b.nbytes() &&
         std::memcmp(a.bytes(), b.bytes(), a.nbytes()) == 0;
}

// Equal in everything but the id, with noise compared bit for bit (NaN included).
void expect_same_test(const TestCase& want, const TestCase& got) {
  EXPECT_EQ(got.op, want.op);
  EXPECT_EQ(got.attrs.items(), want.attrs.items());
  EXPECT_EQ(got.site, want.site);

  EXPECT_EQ(got.phase, want.phase);
  EXPECT_EQ(got.call_index, want.call_index);
  EXPECT_EQ(got.prompt_index, want.prompt_index);
  EXPECT_EQ(got.kept_because, want.kept_because);
  EXPECT_EQ(got.signature(), want.signature());
  ASSERT_EQ(got.inputs.size(), want.inputs.size());
  ASSERT_EQ(got.outputs.size(), want.outputs.size());
  for (size_t i = 0; i < want.inputs.size(); ++i)
    EXPECT_TRUE(same_tensor(got.inputs[i], want.inputs[i])) << want.op << " input " << i;
  for (size_t i = 0; i < want.outputs.size(); ++i)
    EXPECT_TRUE(same_tensor(got.outputs[i], want.outputs[i])) << want.op << " output " << i;
  ASSERT_EQ(got.input_weights.size(), want.inputs.size());
  for (size_t i = 0; i < want.inputs.size(); ++i)
    EXPECT_EQ(got.input_weights[i], i < want.input_weights.size() ? want.input_weights[i] : "");
  ASSERT_EQ(got.noise.size(), want.noise.size());
  for (size_t i = 0; i < want.noise.size(); ++i)
    EXPECT_TRUE(got.noise[i] == want.noise[i] ||
                (std::isnan(got.noise[i]) && std::isnan(want.noise[i])));
}

TestCase matmul_test(uint32_t seed, DType wdtype, const Tensor* shared_w = nullptr) {
  TestCase t;
  t.op = Op::Matmul;
  t.site = Site::parse("blk.0.attn_q");
  t.phase = Phase::parse("prefill");
  t.call_index = seed;
  t.inputs = {random_tensor(DType::F32, {2, 8}, seed, true),
              shared_w ? *shared_w : random_tensor(wdtype, {4, 8}, seed + 1)};
  t.outputs = {random_tensor(DType::F32, {2, 4}, seed + 2)};
  t.input_weights = {"", "blk.0.attn_q.weight"};
  t.noise = {1.5e-7};
  t.kept_because = "first";
  return t;
}

// An in-place op: five inputs, two outputs that overwrite the caches.
TestCase kv_store_test(uint32_t seed) {
  TestCase t;
  t.op = Op::KvStore;
  t.site = Site::parse("blk.1.kv_store");
  t.phase = Phase::parse("decode_3");
  t.call_index = 41;
  t.prompt_index = 2;
  t.inputs = {random_tensor(DType::F32, {6, 4}, seed), random_tensor(DType::F32, {6, 4}, seed + 1),
              random_tensor(DType::F32, {1, 4}, seed + 2),
              random_tensor(DType::F32, {1, 4}, seed + 3), Tensor::from_i32({1}, {{3}})};
  t.outputs = {random_tensor(DType::F32, {6, 4}, seed + 4),
               random_tensor(DType::F32, {6, 4}, seed + 5)};
  t.noise = {-1, std::nan("")};
  t.kept_because = "late_decode";
  return t;
}

TestCase embedding_test(uint32_t seed) {
  TestCase t;
  t.op = Op::Embedding;
  t.site = Site::parse("token_embd");
  t.phase = Phase::parse("prefill");
  t.inputs = {random_tensor(DType::BF16, {10, 8}, seed), Tensor::from_i32({3}, {{1, 9, 0}})};
  t.outputs = {random_tensor(DType::F32, {3, 8}, seed + 1)};
  t.input_weights = {"token_embd.weight", ""};
  return t;
}

TestCase rope_test(uint32_t seed) {
  TestCase t;
  t.op = Op::Rope;
  t.site = Site::parse("blk.0.rope_q");
  t.phase = Phase::parse("decode_1");
  // Deliberately not alphabetical: the order must survive.
  t.attrs = {{"n_heads", 2}, {"head_dim", 4}, {"rope_dim", 4}, {"base", 10000.0}, {"pairing", 1}};
  t.inputs = {random_tensor(DType::F32, {3, 8}, seed), Tensor::from_i32({3}, {{0, 1, 2}})};
  t.outputs = {random_tensor(DType::F32, {3, 8}, seed + 1)};
  return t;
}

TestCase rmsnorm_test(uint32_t seed) {
  TestCase t;
  t.op = Op::RmsNorm;
  t.site = Site::parse("blk.0.attn_norm");
  t.phase = Phase::parse("prefill");
  t.attrs = {{"eps", 1e-5}};
  t.inputs = {random_tensor(DType::F32, {3, 8}, seed), random_tensor(DType::F16, {8}, seed + 1)};
  t.outputs = {random_tensor(DType::F32, {3, 8}, seed + 2)};
  t.input_weights = {"", "blk.0.attn_norm.weight"};
  return t;
}

std::vector<TestCase> assorted_tests() {
  return {matmul_test(1, DType::F32),
          matmul_test(10, DType::F16),
          matmul_test(20, DType::BF16),
          kv_store_test(30),
          embedding_test(40),
          rope_test(50),
          rmsnorm_test(60)};
}

TEST(Corpus, RoundTripsEveryDtypeBitExactly) {
  std::string path = temp_path("round.db");
  std::vector<TestCase> tests = assorted_tests();
  std::vector<int64_t> ids;
  {
    Corpus c = Corpus::create(path);
    for (const TestCase& t : tests) ids.push_back(c.add(t));
    c.set_meta("model", "tiny.gguf");
  }
  Corpus c = Corpus::open(path);
  EXPECT_EQ(c.meta("model"), "tiny.gguf");
  EXPECT_EQ(c.meta("schema_version"), "1");
  EXPECT_EQ(c.meta("nonesuch"), std::nullopt);
  for (size_t i = 0; i < tests.size(); ++i) {
    TestCase got = c.load(ids[i]);
    EXPECT_EQ(got.id, ids[i]);
    expect_same_test(tests[i], got);
  }
  std::vector<TestInfo> all = c.list();
  ASSERT_EQ(all.size(), tests.size());
  EXPECT_EQ(all[3].op, "kv_store");
  EXPECT_EQ(all[3].site, "blk.1.kv_store");
  EXPECT_EQ(all[3].phase, "decode_3");
  EXPECT_EQ(all[3].layer, 1);
  EXPECT_EQ(all[3].call_index, 41);
  EXPECT_EQ(all[3].prompt_index, 2);
  EXPECT_EQ(all[3].kept_because, "late_decode");
  EXPECT_EQ(all[3].signature, tests[3].signature());
  EXPECT_EQ(c.list("^matmul$").size(), 3u);
  EXPECT_EQ(c.list("", "^blk\\.0\\.").size(), 5u);
  EXPECT_EQ(c.list("rope", "blk\\.0").size(), 1u);
  EXPECT_TRUE(contains(error_of([&] { c.list("(("); }), "regular expression"));
  EXPECT_TRUE(contains(error_of([&] { c.load(9999); }), "no test with id 9999"));
  EXPECT_TRUE(contains(error_of([&] { c.set_meta("schema_version", "7"); }), "cannot be set"));
}

// A call that leaves out an optional input and one that has it are stored, loaded,
// exported and imported with the inputs they have.
TEST(Corpus, CarriesCallsWithAndWithoutOptionalInputs) {
  const std::string path = temp_path("optional.db");
  TestCase plain = rope_test(70);
  TestCase scaled = rope_test(80);
  scaled.inputs.push_back(random_tensor(DType::F32, {2}, 81));
  scaled.input_weights = {"", "", "rope_freqs.weight"};
  EXPECT_NE(plain.signature(), scaled.signature());
  std::vector<int64_t> ids;
  {
    Corpus c = Corpus::create(path);
    ids = {c.add(plain), c.add(scaled)};
  }
  Corpus c = Corpus::open(path);
  const std::vector<TestCase> want = {plain, scaled};
  for (size_t i = 0; i < 2; ++i) {
    TestCase got = c.load(ids[i]);
    EXPECT_EQ(got.inputs.size(), want[i].inputs.size());
    expect_same_test(want[i], got);
    const std::string dir = temp_path("optional_export_" + std::to_string(i));
    c.export_test(ids[i], dir);
    expect_same_test(want[i], Corpus::import_test(dir));
  }
  // The catalog still decides: freq_factors of the wrong length is refused.
  TestCase bad = scaled;
  bad.inputs[2] = random_tensor(DType::F32, {3}, 82);
  EXPECT_TRUE(contains(error_of([&] { c.add(bad); }), "rope: freq_factors must be"));
}

TEST(Corpus, CreateRefusesAnExistingFileUnlessOverwriting) {
  std::string path = temp_path("exists.db");
  { Corpus::create(path).add(rope_test(1)); }
  EXPECT_TRUE(contains(error_of([&] { Corpus::create(path); }), "already exists"));
  Corpus c = Corpus::create(path, true);
  EXPECT_EQ(c.summary().tests, 0);
}

TEST(Corpus, RejectsTestsTheCatalogRejects) {
  Corpus c = Corpus::create(temp_path("bad.db"));
  TestCase t = matmul_test(1, DType::F32);
  t.inputs.pop_back();
  t.input_weights.pop_back();
  EXPECT_TRUE(contains(error_of([&] { c.add(t); }), "takes 2 inputs"));
  t = matmul_test(1, DType::F32);
  t.outputs[0] = random_tensor(DType::F32, {2, 5}, 3);
  EXPECT_TRUE(contains(error_of([&] { c.add(t); }), "the op gives f32 [2, 4]"));
  t = matmul_test(1, DType::F32);
  t.attrs.set("frobnicate", 1);
  EXPECT_TRUE(contains(error_of([&] { c.add(t); }), "unknown attribute 'frobnicate'"));
  EXPECT_EQ(c.summary().tests, 0);
}

TEST(Corpus, StoresSharedValuesOnce) {
  std::string path = temp_path("dedup.db");
  Tensor w = random_tensor(DType::F16, {4, 8}, 99);
  Corpus c = Corpus::create(path);
  c.add(matmul_test(1, DType::F16, &w));
  c.add(matmul_test(2, DType::F16, &w));
  c.add(matmul_test(1, DType::F16, &w));  // an identical test again adds no blob
  CorpusSummary s = c.summary();
  EXPECT_EQ(s.tests, 3);
  EXPECT_EQ(s.tests_per_op["matmul"], 3);
  // x1, x2, out1, out2 and one w.
  EXPECT_EQ(s.blobs, 5);
  EXPECT_EQ(s.blob_bytes, int64_t(2 * 64 + 2 * 32 + 64));
  EXPECT_EQ(s.referenced_bytes, 0);
  EXPECT_GT(s.file_bytes, 0);
  EXPECT_EQ(s.meta["format"], "tapml-corpus");
  expect_same_test(matmul_test(2, DType::F16, &w), c.load(2));
}

// A small llama GGUF whose weights tests can point at.
std::string write_model(const std::string& name, uint32_t seed) {
  ModelFile m = testing::make_tiny_llama(seed, DType::F16);
  gguf::Writer w;
  w.set_string("general.architecture", "llama");
  w.set_u32("llama.embedding_length", uint32_t(m.config.dim));
  w.set_u32("llama.feed_forward_length", uint32_t(m.config.hidden_dim));
  w.set_u32("llama.block_count", uint32_t(m.config.n_layers));
  w.set_u32("llama.attention.head_count", uint32_t(m.config.n_heads));
  w.set_u32("llama.attention.head_count_kv", uint32_t(m.config.n_kv_heads));
  w.set_u32("llama.context_length", uint32_t(m.config.max_seq_len));
  for (auto& [n, t] : m.weights) w.add_tensor(n, t);
  std::string path = temp_path(name);
  w.write(path);
  return path;
}

TEST(Corpus, StoresWeightsByReferenceAndVerifiesThem) {
  std::string dir = testing::temp_dir();
  std::string model = write_model("model.gguf", 7);
  std::string path = dir + "/byref.db";
  ModelFile m = load_model(model);
  const Tensor& wq = m.weights.at("blk.0.attn_q.weight");  // [32, 32] f16
  TestCase t;
  t.op = Op::Matmul;
  t.site = Site::parse("blk.0.attn_q");
  t.phase = Phase::parse("prefill");
  t.inputs = {random_tensor(DType::F32, {3, 32}, 1), wq};
  t.outputs = {random_tensor(DType::F32, {3, 32}, 2)};
  t.input_weights = {"", "blk.0.attn_q.weight"};
  // The same weight name over bytes that are not the file's (a converted copy) is stored
  // by value.
  TestCase converted = t;
  converted.inputs[1] = random_tensor(DType::F16, {32, 32}, 3);
  {
    Corpus c = Corpus::create(path);
    c.store_weights_by_reference(model);
    c.add(t);
    c.add(converted);
    CorpusSummary s = c.summary();
    EXPECT_EQ(s.referenced_bytes, int64_t(wq.nbytes()));
    EXPECT_EQ(s.blob_bytes, int64_t(2 * 3 * 32 * 4 + 32 * 32 * 2));
  }
  {
    Corpus c = Corpus::open(path);
    expect_same_test(t, c.load(1));
    expect_same_test(converted, c.load(2));
    // An export carries the referenced weight's bytes.
    c.export_test(1, dir + "/export");
    expect_same_test(t, Corpus::import_test(dir + "/export"));
  }
  // Another model written over the file: the weight no longer hashes the same.
  fs::rename(write_model("other.gguf", 8), model);
  {
    Corpus c = Corpus::open(path);
    std::string e = error_of([&] { c.load(1); });
    EXPECT_TRUE(contains(e, path + ": weight blk.0.attn_q.weight of " +
                                fs::absolute(model).lexically_normal().string() +
                                " has changed (hash "));
    expect_same_test(converted, c.load(2));  // stored by value: unaffected
  }
  fs::remove(model);
  Corpus c = Corpus::open(path);
  EXPECT_TRUE(contains(error_of([&] { c.load(1); }), "model file " + model + " is gone"));
}

TEST(Corpus, ForeignFilesAreClearErrors) {
  std::string dir = testing::temp_dir();
  auto open_error = [](const std::string& p) { return error_of([&] { Corpus::open(p); }); };

  std::string missing = dir + "/missing.db";
  EXPECT_TRUE(contains(open_error(missing), missing + ": no such corpus file"));
  EXPECT_FALSE(fs::exists(missing)) << "open must not create a file";

  std::string random = dir + "/random.db";
  std::string noise(5000, 0);
  std::mt19937 rng(1);
  for (char& ch : noise) ch = char(rng());
  write_bytes(random, noise);
  EXPECT_TRUE(contains(open_error(random), random + ": not a TapML corpus (not an SQLite file)"));

  std::string text = dir + "/notes.txt";
  write_bytes(text, "these are my notes, not a corpus\n");
  EXPECT_TRUE(contains(open_error(text), "not a TapML corpus (not an SQLite file)"));

  std::string empty = dir + "/empty.db";
  write_bytes(empty, "");
  EXPECT_TRUE(contains(open_error(empty), "empty file"));
  EXPECT_TRUE(contains(open_error(dir), "is a directory"));

  // SQLite databases that are not ours: no meta table; a meta table of another format.
  auto make_db = [&](const std::string& name, const char* sql) {
    std::string p = dir + "/" + name;
    sqlite3* db = nullptr;
    EXPECT_EQ(sqlite3_open(p.c_str(), &db), SQLITE_OK);
    EXPECT_EQ(sqlite3_exec(db, sql, nullptr, nullptr, nullptr), SQLITE_OK);
    sqlite3_close(db);
    return p;
  };
  std::string people = make_db("people.db",
                               "CREATE TABLE people(name TEXT); "
                               "INSERT INTO people VALUES ('ada');");
  std::string before = read_bytes(people);
  EXPECT_TRUE(contains(open_error(people), people + ": not a TapML corpus"));
  EXPECT_EQ(read_bytes(people), before) << "opening a foreign database must not change it";
  std::string other = make_db("other.db",
                              "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT);"
                              "INSERT INTO meta VALUES ('format', 'photos');");
  EXPECT_TRUE(contains(open_error(other), "not a TapML corpus (its meta table says format"));
}

TEST(Corpus, NewerSchemaVersionIsRefused) {
  std::string path = temp_path("newer.db");
  { Corpus::create(path).add(rope_test(1)); }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "UPDATE meta SET value = '3' WHERE key = 'schema_version'", nullptr,
                         nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  EXPECT_TRUE(contains(error_of([&] { Corpus::open(path); }),
                       path + ": schema version 3, this build reads 1"));
}

// Opening, listing and loading every test of a damaged file: an Error somewhere, never a
// crash; returns the message.
std::string first_error_reading(const std::string& path) {
  try {
    Corpus c = Corpus::open(path);
    for (const TestInfo& t : c.list()) c.load(t.id);
    c.summary();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Corpus, TruncatedFilesAreClearErrors) {
  std::string dir = testing::temp_dir();
  std::string path = dir + "/full.db";
  {
    Corpus c = Corpus::create(path);
    for (uint32_t i = 0; i < 6; ++i) {
      TestCase t = matmul_test(100 + i, DType::F32);
      t.inputs[0] = random_tensor(DType::F32, {2, 1024}, i);  // spans several pages
      t.inputs[1] = random_tensor(DType::F32, {4, 1024}, i + 50);
      c.add(t);
    }
  }
  std::string bytes = read_bytes(path);
  ASSERT_GT(bytes.size(), 40000u);
  for (size_t cut : {size_t(5), size_t(16), size_t(60), size_t(100), size_t(4096), size_t(5000),
                     bytes.size() / 2, bytes.size() - 4096, bytes.size() - 1}) {
    std::string p = dir + "/cut" + std::to_string(cut) + ".db";
    write_bytes(p, bytes.substr(0, cut));
    std::string e = first_error_reading(p);
    EXPECT_TRUE(contains(e, p + ": ")) << "cut at " << cut;
    EXPECT_TRUE(e.find("truncated") != std::string::npos ||
                e.find("not an SQLite file") != std::string::npos)
        << e;
  }
  // Without a trustworthy page count in the header, SQLite opens a cut file as it is and
  // only finds the missing pages when a query reaches them: that too is an Error.
  for (size_t cut : {size_t(8192), bytes.size() / 2, bytes.size() - 3 * 4096}) {
    std::string p = dir + "/uncounted" + std::to_string(cut) + ".db";
    std::string b = bytes.substr(0, cut);
    std::memset(b.data() + 28, 0, 4);
    write_bytes(p, b);
    EXPECT_TRUE(contains(first_error_reading(p), p + ": damaged or truncated corpus file"))
        << "cut at " << cut;
  }
}

TEST(Corpus, DamagedBlobIsCaughtByItsHash) {
  std::string path = temp_path("flipped.db");
  TestCase t = rope_test(5);
  std::vector<float> marker(64);
  for (size_t i = 0; i < marker.size(); ++i) marker[i] = 1000.0f + float(i);
  t.inputs[0] = Tensor::from_f32({8, 8}, marker);
  t.outputs[0] = random_tensor(DType::F32, {8, 8}, 1);
  t.inputs[1] = Tensor::from_i32({8}, {{0, 1, 2, 3, 4, 5, 6, 7}});
  { Corpus::create(path).add(t); }
  std::string bytes = read_bytes(path);
  size_t at = bytes.find(std::string(reinterpret_cast<const char*>(marker.data()), 256));
  ASSERT_NE(at, std::string::npos);
  bytes[at + 100] ^= 0x40;
  write_bytes(path, bytes);
  EXPECT_TRUE(
      contains(error_of([&] { Corpus::open(path).load(1); }), "no longer matches its hash"));
}

// A child process appends tests until it is SIGKILLed at a random moment; every test the
// parent then finds must load complete and equal to what the child wrote.
TestCase crash_test(uint32_t n, const Tensor& shared_w) {
  TestCase t;
  t.op = Op::Matmul;
  t.site = Site::parse("crash." + std::to_string(n));
  t.phase = Phase::parse("prefill");
  t.call_index = n;
  t.inputs = {random_tensor(DType::F32, {16, 256}, n), shared_w};
  t.outputs = {random_tensor(DType::F32, {16, 64}, n + 7777777)};
  return t;
}

TEST(Corpus, SurvivesSigkillAtAnyMoment) {
  std::string path = temp_path("crash.db");
  { Corpus::create(path); }
  Tensor w = random_tensor(DType::F32, {64, 256}, 424242);
  std::mt19937 rng(2024);
  size_t seen = 0;
  for (uint32_t round = 0; round < 5; ++round) {
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      try {
        Corpus c = Corpus::open(path);
        for (uint32_t i = 0;; ++i) c.add(crash_test(round * 1000000 + i, w));
      } catch (...) {
      }
      ::_exit(3);  // not exit(): the parent's atexit handlers must not run here
    }
    ::usleep(useconds_t(5000 + rng() % 60000));
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    ASSERT_TRUE(WIFSIGNALED(status)) << "the child stopped by itself (status " << status << ")";

    Corpus c = Corpus::open(path);
    std::vector<TestInfo> tests = c.list();
    EXPECT_GE(tests.size(), seen);
    seen = tests.size();
    for (const TestInfo& info : tests) {
      TestCase got = c.load(info.id);
      uint32_t n = uint32_t(std::stoul(got.site.str().substr(6)));
      expect_same_test(crash_test(n, w), got);
    }
  }
  EXPECT_GT(seen, 0u) << "no test was ever committed before the kill";
}

TEST(Corpus, ExportImportRoundTripsBitExactly) {
  std::string dir = testing::temp_dir();
  std::string path = dir + "/src.db";
  std::vector<TestCase> tests = assorted_tests();
  Corpus c = Corpus::create(path);
  for (const TestCase& t : tests) c.add(t);
  Corpus copy = Corpus::create(dir + "/dst.db");
  for (size_t i = 0; i < tests.size(); ++i) {
    std::string folder = dir + "/export" + std::to_string(i);
    c.export_test(int64_t(i + 1), folder);
    EXPECT_TRUE(fs::exists(folder + "/manifest.json"));
    TestCase back = Corpus::import_test(folder);
    expect_same_test(tests[i], back);
    expect_same_test(tests[i], copy.load(copy.add(back)));
  }
  // The manifest names tensors as the catalog does and keeps the attribute order.
  nlohmann::ordered_json m =
      nlohmann::ordered_json::parse(read_bytes(dir + "/export5/manifest.json"));
  EXPECT_EQ(m["format"], "tapml-test");
  EXPECT_EQ(m["version"], 1);
  EXPECT_EQ(m["op"], "rope");
  std::vector<std::string> order;
  for (auto& [k, v] : m["attrs"].items()) order.push_back(k);
  EXPECT_EQ(order,
            (std::vector<std::string>{"n_heads", "head_dim", "rope_dim", "base", "pairing"}));
  EXPECT_EQ(m["attr_pairs"][3][0], "base");
  EXPECT_EQ(m["inputs"][1]["name"], "pos");
  safetensors::Contents kv = safetensors::read(dir + "/export3/tensors.safetensors");
  std::vector<std::string> names;
  for (auto& e : kv.tensors) names.push_back(e.name);
  EXPECT_EQ(names, (std::vector<std::string>{"in.0.k_cache", "in.1.v_cache", "in.2.k", "in.3.v",
                                             "in.4.pos", "out.0.k_cache", "out.1.v_cache"}));
  EXPECT_EQ(kv.metadata["format"], "tapml-test");
  // The data starts 8-byte aligned.
  std::string raw = read_bytes(dir + "/export3/tensors.safetensors");
  uint64_t header_len;
  std::memcpy(&header_len, raw.data(), 8);
  EXPECT_EQ(header_len % 8, 0u);

  // Writing over an earlier export is fine; over someone's folder it is not.
  c.export_test(1, dir + "/export3");
  expect_same_test(tests[0], Corpus::import_test(dir + "/export3"));
  fs::create_directories(dir + "/mine");
  write_bytes(dir + "/mine/thesis.tex", "\\documentclass{article}");
  EXPECT_TRUE(contains(error_of([&] { c.export_test(1, dir + "/mine"); }), "not empty"));
}

TEST(Corpus, ImportRejectsDamagedExports) {
  std::string dir = testing::temp_dir();
  Corpus c = Corpus::create(dir + "/c.db");
  c.add(matmul_test(1, DType::F16));
  auto fresh = [&](const std::string& name) {
    std::string f = dir + "/" + name;
    c.export_test(1, f);
    return f;
  };
  auto import_error = [](const std::string& f) {
    return error_of([&] { Corpus::import_test(f); });
  };
  EXPECT_TRUE(contains(import_error(dir), "no manifest.json"));

  auto edit_manifest = [&](const std::string& f, auto change) {
    auto m = nlohmann::ordered_json::parse(read_bytes(f + "/manifest.json"));
    change(m);
    write_bytes(f + "/manifest.json", m.dump());
  };
  std::string f = fresh("newer");
  edit_manifest(f, [](auto& m) { m["version"] = 2; });
  EXPECT_TRUE(contains(import_error(f), "manifest version 2, this build reads 1"));
  f = fresh("shape");
  edit_manifest(f, [](auto& m) { m["inputs"][1]["shape"] = {8, 4}; });
  EXPECT_TRUE(contains(import_error(f), "is f16 [4, 8] but the manifest says f16 [8, 4]"));
  f = fresh("dtype");
  edit_manifest(f, [](auto& m) { m["inputs"][1]["dtype"] = "q9"; });
  EXPECT_TRUE(contains(import_error(f), "unknown dtype 'q9'"));
  f = fresh("order");
  edit_manifest(f, [](auto& m) { m["attrs"]["extra"] = 1; });
  EXPECT_TRUE(contains(import_error(f), "disagree"));
  f = fresh("op");
  edit_manifest(f, [](auto& m) { m["op"] = "conv9d"; });
  EXPECT_TRUE(contains(import_error(f), "unknown op 'conv9d'"));
  f = fresh("json");
  write_bytes(f + "/manifest.json", "{ not json");
  EXPECT_TRUE(contains(import_error(f), "not a JSON object"));

  f = fresh("cut");
  std::string st = read_bytes(f + "/tensors.safetensors");
  write_bytes(f + "/tensors.safetensors", st.substr(0, st.size() - 10));
  EXPECT_TRUE(contains(import_error(f), "outside the"));
  write_bytes(f + "/tensors.safetensors", st.substr(0, 20));
  EXPECT_TRUE(contains(import_error(f), "runs past the end"));
  write_bytes(f + "/tensors.safetensors", st + "xx");
  EXPECT_TRUE(contains(import_error(f), "bytes after the last tensor"));

  // A file with a tensor the manifest does not list.
  f = fresh("extra");
  safetensors::Contents all = safetensors::read(f + "/tensors.safetensors");
  all.tensors.push_back({"stowaway", Tensor::from_i32({1}, {{7}})});
  safetensors::write(f + "/tensors.safetensors", all.tensors, all.metadata);
  EXPECT_TRUE(contains(import_error(f), "'stowaway' is not in the manifest"));
}

TEST(CorpusSafetensors, RejectsHostileHeaders) {
  std::string dir = testing::temp_dir();
  auto file_with_header = [&](const std::string& name, const std::string& header,
                              size_t data_bytes) {
    std::string p = dir + "/" + name;
    uint64_t n = header.size();
    std::string bytes(reinterpret_cast<const char*>(&n), 8);
    write_bytes(p, bytes + header + std::string(data_bytes, '\0'));
    return p;
  };
  auto read_error = [](const std::string& p) { return error_of([&] { safetensors::read(p); }); };
  EXPECT_TRUE(contains(read_error(file_with_header("a", "[1,2]", 0)), "not a JSON object"));
  EXPECT_TRUE(contains(read_error(file_with_header(
                           "b", R"({"x":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}})", 8)),
                       "TapML reads F32"));
  EXPECT_TRUE(contains(read_error(file_with_header(
                           "c", R"({"x":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8)),
                       "needs 12"));
  EXPECT_TRUE(contains(
      read_error(file_with_header("d",
                                  R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                                  R"("y":{"dtype":"F32","shape":[1],"data_offsets":[2,6]}})",
                                  8)),
      "overlaps"));
  EXPECT_TRUE(contains(read_error(file_with_header(
                           "e", R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8)),
                       "hole"));
  EXPECT_TRUE(contains(
      read_error(file_with_header(
          "f", R"({"x":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}})", 4)),
      "impossibly large"));
  EXPECT_TRUE(contains(read_error(file_with_header(
                           "g", R"({"x":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4)),
                       "bad dimension"));
}

TEST(Corpus, NumpyReadsAnExport) {
  if (::access("/usr/bin/python3", X_OK) != 0) GTEST_SKIP() << "/usr/bin/python3 is missing";
  if (testing::run_command("/usr/bin/python3 -c 'import numpy' 2>/dev/null").exit_code != 0)
    GTEST_SKIP() << "numpy is not installed for /usr/bin/python3";
  std::string dir = testing::temp_dir();
  Corpus c = Corpus::create(dir + "/np.db");
  std::vector<TestCase> tests = {matmul_test(1, DType::BF16), kv_store_test(2), rmsnorm_test(3),
                                 embedding_test(4)};
  tests[0].inputs[0] = random_tensor(DType::F32, {2, 8}, 1);  // no NaN: sums must be finite
  std::string script = std::string(TAPML_SOURCE_DIR) + "/tests/carve/read_export.py";
  for (size_t i = 0; i < tests.size(); ++i) {
    std::string folder = dir + "/t" + std::to_string(i);
    c.export_test(c.add(tests[i]), folder);
    auto r = testing::run_command("/usr/bin/python3 " + testing::shell_quote(script) + " " +
                                  testing::shell_quote(folder));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    auto j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j["op"], std::string(op_name(tests[i].op)));
    const OpDef& def = op_def(tests[i].op);
    auto check = [&](const Tensor& t, const std::string& name) {
      SCOPED_TRACE(name);
      ASSERT_TRUE(j["tensors"].contains(name));
      const auto& e = j["tensors"][name];
      EXPECT_EQ(e["shape"].get<std::vector<int64_t>>(), t.shape().dims());
      double sum = 0, magnitude = 0;
      for (float x : t.to_f32()) sum += x, magnitude += std::fabs(x);
      EXPECT_NEAR(e["sum"].get<double>(), sum, 1e-9 * (magnitude + 1));
      uint64_t byte_sum = 0;
      for (size_t k = 0; k < t.nbytes(); ++k) byte_sum += uint8_t(t.bytes()[k]);
      EXPECT_EQ(e["byte_sum"].get<uint64_t>(), byte_sum);
    };
    for (size_t k = 0; k < def.inputs.size(); ++k)
      check(tests[i].inputs[k], "in." + std::to_string(k) + "." + def.inputs[k]);
    for (size_t k = 0; k < def.outputs.size(); ++k)
      check(tests[i].outputs[k], "out." + std::to_string(k) + "." + def.outputs[k]);
  }
}

}  // namespace
}  // namespace tapml
