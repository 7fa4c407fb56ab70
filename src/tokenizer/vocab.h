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

// The tokenization algorithm a vocabulary is made for.
enum class VocabModel {
  Spm,        // SentencePiece BPE: score-driven merges, byte fallback (GGUF "llama")
  Bpe,        // ranked merges: byte-level (GGUF "gpt2") or on raw UTF-8 with "▁" (GGUF "gemma4")
  WordPiece,  // BERT: greedy longest match; word starts "▁x" (GGUF "bert") or continuations "##x"
  Unigram     // SentencePiece unigram: the most probable segmentation (GGUF "t5", .model files)
};

struct Vocab {
  VocabModel model = VocabModel::Spm;
  std::vector<std::string> pieces;  // as stored: SentencePiece "▁" for spaces, or " "
  std::vector<float> scores;
  std::vector<TokenKind> kinds;
  int bos = 1, eos = 2, unk = 0;
  bool add_space_prefix = true;        // SentencePiece's dummy prefix
  std::string space = "\xE2\x96\x81";  // what a space is written as in pieces

  // BPE: merges are "left right" lines ranked by their order, `pre` names the pre-tokenizer
  // split (tokenizer.ggml.pre; "default" when the file has none). Byte-level pieces
  // ("gpt2") are GPT-2 byte-to-unicode text; otherwise ("gemma4") raw UTF-8 with `space`
  // for spaces and "<0xNN>" byte fallback.
  bool byte_level = false;
  std::string pre;
  std::vector<std::string> merges;
  // What the model wants around a prompt (tokenizer.ggml.add_bos_token / add_eos_token).
  bool add_bos = true, add_eos = false;
  // Tokens that end generation (tokenizer.ggml.eos/eot/eom_token_id and the end-of-turn
  // pieces a chat vocabulary declares); `eos` is always among them.
  std::vector<int> eog;
  int sep = -1, cls = -1, pad = -1;  // -1: none

  // tokenizer.json's normalizer NFC: text is composed (Unicode NFC) before it is split.
  // GGUF files do not carry it (llama.cpp ignores it), so GGUF vocabularies leave it off.
  bool nfc = false;
  // WordPiece's BERT normalizer.
  bool lowercase = false, strip_accents = false;
  // SentencePiece's normalizer (unigram): the precompiled character map (a double-array
  // trie of replacements, as in the .model file; empty for none) and whitespace handling.
  std::string charsmap;
  bool remove_extra_whitespaces = true, escape_whitespaces = true,
       treat_whitespace_as_suffix = false;

  int size() const { return int(pieces.size()); }
};

// llama2.c tokenizer.bin: int32 max_token_length; then per token f32 score, int32 len, bytes.
// `vocab_size` comes from the model (the file does not store it). Spaces are plain " ".
Vocab load_llama2c_vocab(const std::string& path, int vocab_size);
// GGUF tokenizer.ggml.* with tokenizer.ggml.model "llama" (SentencePiece) or "gpt2"
// (byte-level BPE, with a pre-tokenizer tapml knows). Throws Error otherwise.
Vocab load_gguf_vocab(const gguf::File& file);

}  // namespace tapml
