// open_hf_folder: single-file and sharded folders written here, every way a folder can be
// inconsistent, and the shared family folders that transformers wrote.
#include "format/hf_folder.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "support/errors.h"
#include "support/shared.h"

namespace tapml {
namespace {

using testing::contains;
using testing::error_of;

namespace fs = std::filesystem;

void write_text(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary);
  f << text;
  ASSERT_TRUE(bool(f)) << path;
}

Tensor filled(Shape shape, float start) {
  std::vector<float> v(size_t(shape.numel()));
  for (size_t k = 0; k < v.size(); ++k) v[k] = start + float(k);
  return Tensor::from_f32(std::move(shape), v);
}

const char kConfig[] = R"({"model_type": "llama", "hidden_size": 4})";

// A folder with config.json and the tensors a, b (shard 1) and c (shard 2), indexed.
std::string sharded_folder() {
  std::string dir = testing::temp_dir();
  write_text(dir + "/config.json", kConfig);
  safetensors::write(dir + "/model-00001-of-00002.safetensors",
                     {{"a", filled({2, 2}, 0)}, {"b", filled({4}, 10)}}, {{"format", "pt"}});
  safetensors::write(dir + "/model-00002-of-00002.safetensors", {{"c", filled({3}, 20)}}, {});
  write_text(dir + "/model.safetensors.index.json",
             R"({"metadata": {"total_size": 44}, "weight_map": {)"
             R"("a": "model-00001-of-00002.safetensors", "b": "model-00001-of-00002.safetensors",)"
             R"("c": "model-00002-of-00002.safetensors"}})");
  return dir;
}

void write_index(const std::string& dir, const std::string& weight_map) {
  write_text(dir + "/model.safetensors.index.json", R"({"weight_map": )" + weight_map + "}");
}

std::string open_error(const std::string& dir) {
  std::string e = error_of([&] { open_hf_folder(dir); });
  EXPECT_EQ(e.find('\n'), std::string::npos) << e;
  return e;
}

TEST(HfFolder, SingleFile) {
  std::string dir = testing::temp_dir();
  write_text(dir + "/config.json", kConfig);
  safetensors::write(dir + "/model.safetensors", {{"w", filled({2, 3}, 1)}}, {});
  EXPECT_TRUE(is_hf_folder(dir));
  HfFolder f = open_hf_folder(dir);
  EXPECT_EQ(f.dir, dir);
  EXPECT_EQ(f.config["model_type"], "llama");
  ASSERT_EQ(f.tensors.size(), 1u);
  EXPECT_EQ(f.tensor("w").to_f32(), filled({2, 3}, 1).to_f32());
  EXPECT_THROW(f.tensors.at("w").mutable_bytes(), Error);  // borrowed from the mapping
  EXPECT_EQ(f.sources.at("w").file, dir + "/model.safetensors");
  EXPECT_EQ(f.sources.at("w").entry.dtype, "F32");
  EXPECT_TRUE(contains(error_of([&] { f.tensor("v"); }), dir + ": no tensor named 'v'"));
}

TEST(HfFolder, TensorsOutliveTheFolderAndItsFiles) {
  std::string dir = testing::temp_dir();
  write_text(dir + "/config.json", kConfig);
  safetensors::write(dir + "/model.safetensors", {{"w", filled({5}, 3)}}, {});
  Tensor w;
  {
    HfFolder f = open_hf_folder(dir);
    w = f.tensor("w");
  }
  fs::remove_all(dir);
  EXPECT_EQ(w.to_f32(), filled({5}, 3).to_f32());
}

TEST(HfFolder, Sharded) {
  std::string dir = sharded_folder();
  HfFolder f = open_hf_folder(dir);
  ASSERT_EQ(f.tensors.size(), 3u);
  EXPECT_EQ(f.tensor("a").to_f32(), filled({2, 2}, 0).to_f32());
  EXPECT_EQ(f.tensor("b").to_f32(), filled({4}, 10).to_f32());
  EXPECT_EQ(f.tensor("c").to_f32(), filled({3}, 20).to_f32());
  EXPECT_EQ(f.sources.at("b").file, dir + "/model-00001-of-00002.safetensors");
  EXPECT_EQ(f.sources.at("c").file, dir + "/model-00002-of-00002.safetensors");
  // Other .safetensors files beside an index (Mistral's consolidated.safetensors) are not
  // read.
  safetensors::write(dir + "/consolidated.safetensors", {{"a", filled({1}, 0)}}, {});
  EXPECT_EQ(open_hf_folder(dir).tensors.size(), 3u);
}

TEST(HfFolder, ShardsMayBeSymbolicLinks) {
  // The Hub's cache: snapshots/REV/ holds links into ../../blobs/.
  std::string root = testing::temp_dir();
  std::string dir = root + "/snapshots/rev";
  fs::create_directories(dir);
  fs::create_directories(root + "/blobs");
  safetensors::write(root + "/blobs/1", {{"w", filled({2}, 1)}}, {});
  write_text(root + "/blobs/2", kConfig);
  fs::create_symlink("../../blobs/1", dir + "/model.safetensors");
  fs::create_symlink("../../blobs/2", dir + "/config.json");
  EXPECT_TRUE(is_hf_folder(dir));
  EXPECT_EQ(open_hf_folder(dir).tensor("w").to_f32(), filled({2}, 1).to_f32());
}

TEST(HfFolder, MissingShard) {
  std::string dir = sharded_folder();
  fs::remove(dir + "/model-00002-of-00002.safetensors");
  EXPECT_TRUE(contains(open_error(dir), dir + "/model-00002-of-00002.safetensors: missing, but "
                                              "model.safetensors.index.json puts 'c' there"));
  fs::remove(dir + "/model-00001-of-00002.safetensors");
  EXPECT_TRUE(contains(open_error(dir), dir + "/model-00001-of-00002.safetensors: missing, but "
                                              "model.safetensors.index.json puts 'a' and 1 more "
                                              "tensor there"));
}

TEST(HfFolder, TensorInTheWrongShard) {
  std::string dir = sharded_folder();
  write_index(
      dir, R"({"a": "model-00001-of-00002.safetensors", "b": "model-00001-of-00002.safetensors",)"
           R"("c": "model-00001-of-00002.safetensors"})");
  // Shard 2 is no longer listed, so 'c' is in no shard read.
  EXPECT_TRUE(contains(open_error(dir), dir + "/model-00001-of-00002.safetensors: no tensor 'c', "
                                              "which model.safetensors.index.json puts there"));
  write_index(
      dir, R"({"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors",)"
           R"("c": "model-00002-of-00002.safetensors"})");
  EXPECT_TRUE(contains(open_error(dir), dir +
                                            "/model.safetensors.index.json: weight_map puts "
                                            "tensor 'b' in 'model-00002-of-00002.safetensors', "
                                            "but " +
                                            dir + "/model-00001-of-00002.safetensors holds it"));
  write_index(
      dir,
      R"({"a": "model-00001-of-00002.safetensors", "zz": "model-00002-of-00002.safetensors"})");
  EXPECT_TRUE(contains(open_error(dir), "no tensor 'zz'"));
}

TEST(HfFolder, TensorInTwoShards) {
  std::string dir = sharded_folder();
  safetensors::write(dir + "/model-00002-of-00002.safetensors",
                     {{"b", filled({4}, 10)}, {"c", filled({3}, 20)}}, {});
  EXPECT_TRUE(contains(open_error(dir), dir +
                                            "/model-00002-of-00002.safetensors: tensor 'b' is "
                                            "also in " +
                                            dir + "/model-00001-of-00002.safetensors"));
}

TEST(HfFolder, ShardNamesMustStayInTheFolder) {
  std::string dir = sharded_folder();
  // A real safetensors file one level up, which a careless reader would open.
  fs::copy_file(dir + "/model-00002-of-00002.safetensors", dir + "/../escape.safetensors",
                fs::copy_options::overwrite_existing);
  for (std::string shard :
       std::vector<std::string>{"../escape.safetensors", dir + "/model-00002-of-00002.safetensors",
                                "/etc/passwd", "sub/x.safetensors", "..", ".", "", "a\\b"}) {
    write_index(dir, R"({"a": "model-00001-of-00002.safetensors", "c": )" +
                         nlohmann::json(shard).dump() + "}");
    EXPECT_TRUE(contains(open_error(dir), dir + "/model.safetensors.index.json: weight_map puts "
                                                "tensor 'c' in '"))
        << shard;
    EXPECT_TRUE(contains(open_error(dir), "which is not a file name inside the folder")) << shard;
  }
}

TEST(HfFolder, MalformedIndex) {
  std::string dir = sharded_folder();
  std::string index = dir + "/model.safetensors.index.json";
  write_text(index, "[]");
  EXPECT_TRUE(contains(open_error(dir), index + ": not a JSON object"));
  write_text(index, R"({"metadata": {}})");
  EXPECT_TRUE(contains(open_error(dir), index + ": no \"weight_map\" object"));
  write_index(dir, R"({"a": 1})");
  EXPECT_TRUE(
      contains(open_error(dir), "weight_map gives tensor 'a' a shard that is not a string"));
  write_index(dir, "{}");
  EXPECT_TRUE(contains(open_error(dir), "weight_map lists no tensors"));
  write_index(dir, R"({"a": "x.safetensors", "a": "y.safetensors"})");
  EXPECT_TRUE(contains(open_error(dir), index + ": the file repeats the key 'a' in 'weight_map'"));
  write_text(index, "{");
  EXPECT_TRUE(contains(open_error(dir), index + ": the file is not valid JSON"));
}

TEST(HfFolder, ConfigIsRequired) {
  std::string dir = sharded_folder();
  write_text(dir + "/config.json", "[1, 2]");
  EXPECT_TRUE(contains(open_error(dir), dir + "/config.json: not a JSON object"));
  write_text(dir + "/config.json", "{\"a\": ");
  EXPECT_TRUE(contains(open_error(dir), dir + "/config.json: the file is not valid JSON"));
  fs::remove(dir + "/config.json");
  EXPECT_FALSE(is_hf_folder(dir));
  EXPECT_TRUE(contains(open_error(dir), dir + "/config.json: missing"));
  EXPECT_TRUE(contains(open_error(dir + "/nothing"), dir + "/nothing: no such folder"));
  EXPECT_TRUE(contains(open_error(dir + "/model-00002-of-00002.safetensors"), "not a folder"));
}

TEST(HfFolder, UnusedUnsupportedDtypesLoad) {
  // A checkpoint with a buffer TapML never computes with (GPT-2's causal mask, position
  // ids): the folder opens, and only asking for that tensor fails, naming it.
  std::string dir = testing::temp_dir();
  write_text(dir + "/config.json", kConfig);
  std::string header = R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                       R"("pos":{"dtype":"I64","shape":[2],"data_offsets":[4,20]}})";
  uint64_t n = header.size();
  write_text(dir + "/model.safetensors",
             std::string(reinterpret_cast<const char*>(&n), 8) + header + std::string(20, '\0'));
  HfFolder f = open_hf_folder(dir);
  EXPECT_EQ(f.tensors.size(), 1u);
  EXPECT_EQ(f.sources.size(), 2u);
  EXPECT_EQ(f.sources.at("pos").entry.shape, (std::vector<int64_t>{2}));
  EXPECT_EQ(f.tensor("w").numel(), 1);
  EXPECT_TRUE(contains(error_of([&] { f.tensor("pos"); }),
                       dir + "/model.safetensors: tensor 'pos' has dtype I64; TapML reads F32, "
                             "F16, BF16 and I32"));
}

TEST(HfFolder, OtherSingleFilesOnlyWhenThereIsOne) {
  std::string dir = testing::temp_dir();
  write_text(dir + "/config.json", kConfig);
  EXPECT_TRUE(contains(open_error(dir), dir + ": no model.safetensors, "
                                              "model.safetensors.index.json or other "
                                              ".safetensors file"));
  write_text(dir + "/pytorch_model.bin", "pickle");
  EXPECT_TRUE(contains(open_error(dir), "pytorch_model.bin is a pickle"));
  safetensors::write(dir + "/weights.safetensors", {{"w", filled({2}, 1)}}, {});
  EXPECT_EQ(open_hf_folder(dir).tensor("w").numel(), 2);
  safetensors::write(dir + "/adapter.safetensors", {{"v", filled({2}, 1)}}, {});
  EXPECT_TRUE(contains(open_error(dir), dir + ": 2 .safetensors files (adapter.safetensors, "
                                              "weights.safetensors) and no "
                                              "model.safetensors.index.json"));
  // model.safetensors is the one to read, whatever else is there.
  safetensors::write(dir + "/model.safetensors", {{"m", filled({2}, 1)}}, {});
  EXPECT_EQ(open_hf_folder(dir).tensors.count("m"), 1u);
}

TEST(HfFolder, DamagedWeightsNameTheFile) {
  std::string dir = sharded_folder();
  write_text(dir + "/model-00002-of-00002.safetensors", "garbage!!");
  EXPECT_TRUE(contains(open_error(dir), dir + "/model-00002-of-00002.safetensors: "));
}

TEST(HfFolder, IsHfFolder) {
  std::string dir = testing::temp_dir();
  EXPECT_FALSE(is_hf_folder(dir));
  write_text(dir + "/config.json", "{}");
  EXPECT_TRUE(is_hf_folder(dir));
  EXPECT_FALSE(is_hf_folder(dir + "/config.json"));
  EXPECT_FALSE(is_hf_folder(dir + "/missing"));
  EXPECT_FALSE(is_hf_folder(""));
}

TEST(HfFolder, OpensEverySharedFamily) {
  std::string root = testing::shared_path("models/families");
  int folders = 0;
  for (const fs::directory_entry& d : fs::directory_iterator(root)) {
    if (!d.is_directory()) continue;
    SCOPED_TRACE(d.path().string());
    ++folders;
    ASSERT_TRUE(is_hf_folder(d.path().string()));
    HfFolder f = open_hf_folder(d.path().string());
    EXPECT_GT(f.tensors.size(), 0u);
    EXPECT_EQ(f.tensors.size(), f.sources.size());
    ASSERT_TRUE(f.config.contains("model_type"));
    EXPECT_TRUE(f.config["model_type"].is_string());
  }
  EXPECT_EQ(folders, 20);
}

}  // namespace
}  // namespace tapml
