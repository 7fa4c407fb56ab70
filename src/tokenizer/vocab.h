// A vocabulary: the pieces a tokenizer works with, independent of where they came from.
#pragma once
#include <string>
#include <unordered_map>
#include <vector>

namespace tapml {

namespace gguf {
class File;
}

enum class TokenKind : int {
  Normal = 1,
  Unknown = 2,
  Control = 3,
  UserDefined = 4,
  Unused = 5,
  Byte = 6
};

struct Vocab {
  std::vector<std::string> pieces;  // as stored: SentencePiece "▁" for spaces, or " "
  std::vector<float> scores;
  std::vector<TokenKind> kinds;
  int bos = 1, eos = 2, unk = 0;
  bool add_space_prefix = true;        // SentencePiece's dummy prefix
  std::string space = "\xE2\x96\x81";  // what a space is written as in pieces

  // Byte-level BPE (tokenizer.ggml.model "gpt2"): pieces are GPT-2 byte-to-unicode text,
  // merges are "left right" lines ranked by their order, `pre` names the pre-tokenizer
  // split (tokenizer.ggml.pre; "default" when the file has none).
  bool byte_level = false;
  std::string pre;
  std::vector<std::string> merges;
  // What the model wants around a prompt (tokenizer.ggml.add_bos_token / add_eos_token).
  bool add_bos = true, add_eos = false;

  int size() const { return int(pieces.size()); }
};

// llama2.c tokenizer.bin: int32 max_token_length; then per token f32 score, int32 len, bytes.
// `vocab_size` comes from the model (the file does not store it). Spaces are plain " ".
Vocab load_llama2c_vocab(const std::string& path, int vocab_size);
// GGUF tokenizer.ggml.* with tokenizer.ggml.model "llama" (SentencePiece) or "gpt2"
// (byte-level BPE, with a pre-tokenizer tapml knows). Throws Error otherwise.
Vocab load_gguf_vocab(const gguf::File& file);

}  // namespace tapml
