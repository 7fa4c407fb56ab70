// Writes small valid files into the seed corpora:
//   fuzz_seeds GGUF_DIR LLAMA2C_DIR [SAFETENSORS_DIR [TOKENIZER_DIR]]
// Mutating a valid file reaches the deep parts of a reader much sooner than random bytes;
// the shared models are too large to be whole seeds (fuzz/run.sh adds their first bytes).
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "core/error.h"
#include "format/gguf.h"
#include "format/safetensors.h"

using namespace tapml;

namespace {

Tensor ramp(DType dt, Shape shape) {
  Tensor t(dt, std::move(shape));
  for (int64_t i = 0; i < t.numel(); ++i) {
    float x = float(i % 13) * 0.25f - 1.0f;
    if (dt == DType::F32) t.mutable_data<float>()[i] = x;
    if (dt == DType::F16) t.mutable_data<uint16_t>()[i] = f32_to_f16(x);
    if (dt == DType::BF16) t.mutable_data<uint16_t>()[i] = f32_to_bf16(x);
  }
  return t;
}

// dim 8, hidden 16, 4 heads (2 KV), vocab 6: a model that passes validate_model.
void write_llama(const std::string& path, DType matrices, uint32_t alignment, bool classifier) {
  gguf::Writer w;
  w.set_string("general.architecture", "llama");
  w.set_u32("llama.embedding_length", 8);
  w.set_u32("llama.feed_forward_length", 16);
  w.set_u32("llama.block_count", 1);
  w.set_u32("llama.attention.head_count", 4);
  w.set_u32("llama.attention.head_count_kv", 2);
  w.set_u32("llama.context_length", 32);
  w.set_u32("llama.rope.dimension_count", 2);
  w.set_f32("llama.rope.freq_base", 10000.0f);
  w.set_f32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  w.set_string("tokenizer.ggml.model", "llama");
  w.set_string_array("tokenizer.ggml.tokens", {"<unk>", "<s>", "</s>", "a", "b", "ab"});
  w.set_f32_array("tokenizer.ggml.scores", {0, 0, 0, -1, -2, -3});
  w.set_i32_array("tokenizer.ggml.token_type", {2, 3, 3, 1, 1, 1});
  if (alignment != 32) w.set_alignment(alignment);
  w.add_tensor("token_embd.weight", ramp(matrices, {6, 8}));
  w.add_tensor("blk.0.attn_norm.weight", ramp(DType::F32, {8}));
  w.add_tensor("blk.0.attn_q.weight", ramp(matrices, {8, 8}));
  w.add_tensor("blk.0.attn_k.weight", ramp(matrices, {4, 8}));
  w.add_tensor("blk.0.attn_v.weight", ramp(matrices, {4, 8}));
  w.add_tensor("blk.0.attn_output.weight", ramp(matrices, {8, 8}));
  w.add_tensor("blk.0.ffn_norm.weight", ramp(DType::F32, {8}));
  w.add_tensor("blk.0.ffn_gate.weight", ramp(matrices, {16, 8}));
  w.add_tensor("blk.0.ffn_down.weight", ramp(matrices, {8, 16}));
  w.add_tensor("blk.0.ffn_up.weight", ramp(matrices, {16, 8}));
  w.add_tensor("output_norm.weight", ramp(DType::F32, {8}));
  if (classifier) w.add_tensor("output.weight", ramp(matrices, {6, 8}));
  w.write(path);
}

// Every metadata type, nested arrays, and tensors of rank 1 to 4.
void write_kitchen_sink(const std::string& path) {
  using gguf::Value;
  using gguf::ValueType;
  gguf::Writer w;
  w.set("a.u8", Value{ValueType::U8, uint64_t(200)});
  w.set("a.i8", Value{ValueType::I8, int64_t(-100)});
  w.set("a.u16", Value{ValueType::U16, uint64_t(60000)});
  w.set("a.i16", Value{ValueType::I16, int64_t(-30000)});
  w.set("a.u64", Value{ValueType::U64, uint64_t(1) << 40});
  w.set("a.i64", Value{ValueType::I64, int64_t(-1) << 40});
  w.set("a.f64", Value{ValueType::F64, 2.5});
  w.set_bool("a.bool", true);
  w.set("a.nested", Value{ValueType::ARRAY,
                          gguf::Array{Value{ValueType::ARRAY,
                                            gguf::Array{Value{ValueType::STRING, std::string("x")}},
                                            ValueType::STRING},
                                      Value{ValueType::ARRAY, gguf::Array{}, ValueType::U8}},
                          ValueType::ARRAY});
  w.add_tensor("r1", ramp(DType::F32, {3}));
  w.add_tensor("r2", ramp(DType::F16, {2, 3}));
  w.add_tensor("r3", ramp(DType::BF16, {2, 1, 3}));
  w.add_tensor("r4", ramp(DType::F32, {1, 2, 1, 2}));
  w.write(path);
}

void write_llama2c(const std::string& path, bool separate_classifier) {
  // dim 8, hidden 12, 1 layer, 4 heads, 2 KV heads, vocab 6, seq_len 4.
  const int32_t header[7] = {8, 12, 1, 4, 2, separate_classifier ? -6 : 6, 4};
  const size_t D = 8, H = 12, KV = 4, V = 6, S = 4, hs = 2;
  size_t n = V * D + D + D * D + 2 * KV * D + D * D + D + 3 * H * D + D + 2 * S * (hs / 2);
  if (separate_classifier) n += V * D;
  std::vector<float> w(n);
  for (size_t i = 0; i < n; ++i) w[i] = float(i % 17) * 0.125f;
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(header), sizeof header);
  f.write(reinterpret_cast<const char*>(w.data()), std::streamsize(n * 4));
  if (!f) throw Error(path + ": cannot write");
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), std::streamsize(bytes.size()));
  if (!f) throw Error(path + ": cannot write");
}

// Each safetensors seed twice: as a file, and as "HEADER\nDATA", the second form
// fuzz_safetensors reads (it makes the length prefix fit).
void write_safetensors_seed(const std::string& dir, const std::string& name,
                            const std::string& header, const std::string& data) {
  uint64_t n = header.size();
  write_bytes(dir + "/" + name, std::string(reinterpret_cast<const char*>(&n), 8) + header + data);
  write_bytes(dir + "/" + name + ".text", header + "\n" + data);
}

void write_safetensors(const std::string& dir) {
  std::string sample = dir + "/sample.safetensors";
  safetensors::write(sample,
                     {{"embed", ramp(DType::F32, {3, 4})},
                      {"norm", ramp(DType::F16, {4})},
                      {"proj", ramp(DType::BF16, {2, 3})},
                      {"ids", Tensor::from_i32({2}, std::vector<int32_t>{1, -1})},
                      {"scalar", ramp(DType::F32, {})},
                      {"empty", Tensor(DType::F32, {0, 3})}},
                     {{"format", "pt"}});
  // Dtypes TapML lists but cannot compute with, as real checkpoints carry them.
  write_safetensors_seed(dir, "mixed.safetensors",
                         R"({"__metadata__":{"format":"pt"},)"
                         R"("w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                         R"("pos":{"dtype":"I64","shape":[2],"data_offsets":[8,24]},)"
                         R"("mask":{"dtype":"BOOL","shape":[2,2],"data_offsets":[24,28]},)"
                         R"("q":{"dtype":"F8_E4M3","shape":[4],"data_offsets":[28,32]},)"
                         R"("f4":{"dtype":"F4","shape":[2],"data_offsets":[32,33]},)"
                         R"("f6":{"dtype":"F6_E3M2","shape":[4],"data_offsets":[33,36]}}   )",
                         std::string(36, '\x11'));
  write_safetensors_seed(dir, "empty.safetensors", "{}      ", "");
  write_safetensors_seed(dir, "odd.safetensors",
                         R"({"x":{"dtype":"F32","shape":[1,1],"data_offsets":[0,4]}})",
                         std::string("\0\0\x80\x3f", 4));
}

std::string file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// A protobuf field: its key, then a varint or length-delimited bytes.
void pb_key(std::string& out, int field, int wire) {
  for (uint32_t v = uint32_t(field << 3 | wire);; v >>= 7) {
    if (v < 0x80) {
      out += char(v);
      break;
    }
    out += char(0x80 | (v & 0x7F));
  }
}
void pb_varint(std::string& out, int field, uint64_t v) {
  pb_key(out, field, 0);
  for (;; v >>= 7) {
    if (v < 0x80) {
      out += char(v);
      break;
    }
    out += char(0x80 | (v & 0x7F));
  }
}
void pb_bytes(std::string& out, int field, const std::string& bytes) {
  pb_key(out, field, 2);
  for (uint64_t v = bytes.size();; v >>= 7) {
    if (v < 0x80) {
      out += char(v);
      break;
    }
    out += char(0x80 | (v & 0x7F));
  }
  out += bytes;
}

// Seeds for fuzz_tokenizer: a selector byte (0 .model, 1 GGUF, 2 tokenizer.json), then the file.
void write_tokenizer_seeds(const std::string& dir) {
  const std::vector<std::string> words = {"\xE2\x96\x81",
                                          "a",
                                          "b",
                                          "c",
                                          "\xE2\x96\x81"
                                          "a",
                                          "ab",
                                          "\xE2\x96\x81"
                                          "ab",
                                          "\xE2\x96\x81"
                                          "abc"};
  // SentencePiece unigram and BPE models: <unk>, <s>, </s>, then the words.
  for (int model_type : {1, 2}) {
    std::string proto;
    auto piece = [&](const std::string& text, float score, int type) {
      std::string p;
      pb_bytes(p, 1, text);
      pb_key(p, 2, 5);
      p.append(reinterpret_cast<const char*>(&score), 4);
      pb_varint(p, 3, uint64_t(type));
      pb_bytes(proto, 1, p);
    };
    piece("<unk>", 0, 2);
    piece("<s>", 0, 3);
    piece("</s>", 0, 3);
    for (size_t i = 0; i < words.size(); ++i) piece(words[i], -float(i), 1);
    std::string trainer, normalizer;
    pb_varint(trainer, 3, uint64_t(model_type));
    pb_bytes(normalizer, 1, "identity");
    pb_varint(normalizer, 3, 1);
    pb_bytes(proto, 2, trainer);
    pb_bytes(proto, 3, normalizer);
    write_bytes(dir + "/spm_" + std::to_string(model_type) + ".model",
                std::string(1, '\0') + proto);
  }
  // GGUF vocabularies of each tokenizer model.
  auto gguf_vocab = [&](const std::string& name, const std::string& model,
                        std::vector<std::string> pieces, std::vector<std::string> merges) {
    gguf::Writer w;
    w.set_string("general.architecture", "llama");
    w.set_string("tokenizer.ggml.model", model);
    w.set_string_array("tokenizer.ggml.tokens", pieces);
    std::vector<float> scores(pieces.size());
    std::vector<int32_t> types(pieces.size(), 1);
    for (size_t i = 0; i < pieces.size(); ++i) scores[i] = -float(i);
    types[0] = 2;
    types[1] = types[2] = 3;
    w.set_f32_array("tokenizer.ggml.scores", scores);
    w.set_i32_array("tokenizer.ggml.token_type", types);
    if (!merges.empty()) w.set_string_array("tokenizer.ggml.merges", merges);
    w.set_u32("tokenizer.ggml.unknown_token_id", 0);
    w.set_u32("tokenizer.ggml.bos_token_id", 1);
    w.set_u32("tokenizer.ggml.eos_token_id", 2);
    w.set_u32("tokenizer.ggml.cls_token_id", 1);  // BERT's [CLS] and [SEP]
    w.set_u32("tokenizer.ggml.seperator_token_id", 2);
    std::string tmp = dir + "/" + name + ".tmp";
    w.write(tmp);
    write_bytes(dir + "/" + name + ".gguf", "\x01" + file_bytes(tmp));
    std::remove(tmp.c_str());
  };
  std::vector<std::string> spm = {"<unk>", "<s>", "</s>"};
  spm.insert(spm.end(), words.begin(), words.end());
  gguf_vocab("llama", "llama", spm, {});
  gguf_vocab("t5", "t5", spm, {});
  gguf_vocab("bert", "bert", spm, {});
  gguf_vocab("gemma4", "gemma4", spm,
             {"\xE2\x96\x81 a", "a b",
              "\xE2\x96\x81"
              "a b"});
  std::vector<std::string> bytes = {"<unk>",
                                    "<s>",
                                    "</s>",
                                    "a",
                                    "b",
                                    "\xC4\xA0",
                                    "ab",
                                    "\xC4\xA0"
                                    "a"};
  gguf_vocab("gpt2", "gpt2", bytes, {"a b", "\xC4\xA0 a"});
  // tokenizer.json: byte-level BPE (GPT-2 style) and SentencePiece-style BPE (Llama 2 style).
  write_bytes(dir + "/bytelevel.json",
              std::string("\x02") +
                  R"({"version":"1.0","added_tokens":[{"id":0,"content":"<|endoftext|>",)"
                  R"("special":true,"single_word":false,"lstrip":false,"rstrip":false,)"
                  R"("normalized":false}],"normalizer":null,"pre_tokenizer":{"type":"ByteLevel",)"
                  R"("add_prefix_space":false,"trim_offsets":true,"use_regex":true},)"
                  R"("post_processor":null,"decoder":{"type":"ByteLevel"},"model":{"type":"BPE",)"
                  R"("vocab":{"<|endoftext|>":0,"a":1,"b":2,"ab":3,"Ġ":4,"Ġa":5},)"
                  R"("merges":["a b","Ġ a"]}})");
  write_bytes(dir + "/spm.json",
              std::string("\x02") +
                  R"({"version":"1.0","added_tokens":[{"id":0,"content":"<unk>","special":true},)"
                  R"({"id":1,"content":"<s>","special":true},{"id":2,"content":"</s>",)"
                  R"("special":true}],"normalizer":{"type":"Sequence","normalizers":[{"type":)"
                  R"("Prepend","prepend":"▁"},{"type":"Replace","pattern":{"String":" "},)"
                  R"("content":"▁"}]},"pre_tokenizer":null,"decoder":null,"model":{"type":)"
                  R"("BPE","unk_token":"<unk>","byte_fallback":true,"fuse_unk":true,"vocab":)"
                  R"({"<unk>":0,"<s>":1,"</s>":2,"▁":3,"a":4,"▁a":5},"merges":)"
                  R"(["▁ a"]}})" +
                  std::string(1, '\0') +
                  R"({"bos_token":"<s>","eos_token":"</s>","add_bos_token":true})");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3 || argc > 5) {
    std::fprintf(stderr,
                 "usage: fuzz_seeds GGUF_DIR LLAMA2C_DIR [SAFETENSORS_DIR [TOKENIZER_DIR]]\n");
    return 2;
  }
  try {
    std::string g = argv[1], l = argv[2];
    write_llama(g + "/llama_f16.gguf", DType::F16, 32, true);
    write_llama(g + "/llama_bf16_shared.gguf", DType::BF16, 32, false);
    write_llama(g + "/llama_f32_align1.gguf", DType::F32, 1, true);
    write_llama(g + "/llama_f32_align64.gguf", DType::F32, 64, false);
    write_kitchen_sink(g + "/kitchen_sink.gguf");
    write_llama2c(l + "/shared.bin", false);
    write_llama2c(l + "/separate.bin", true);
    if (argc >= 4) write_safetensors(argv[3]);
    if (argc == 5) write_tokenizer_seeds(argv[4]);
  } catch (const Error& e) {
    std::fprintf(stderr, "fuzz_seeds: %s\n", e.what());
    return 1;
  }
  return 0;
}
