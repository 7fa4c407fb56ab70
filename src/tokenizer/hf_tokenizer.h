// Hugging Face tokenizer.json (with the tokenizer_config.json beside it, when there is one)
// read into a Vocab, so that the same Tokenizer runs it as runs a GGUF vocabulary. Two kinds
// of file are read, and each maps onto what a GGUF conversion of it holds:
//   - byte-level BPE (GPT-2, GPT-NeoX, Llama 3, Qwen2, StarCoder): model "BPE" with a
//     ByteLevel pre-tokenizer and decoder -> VocabModel::Bpe, byte_level, `pre` naming the
//     split. The split must be one tapml knows: ByteLevel's own regex is "gpt-2", a Split by
//     Llama 3's or Qwen2's regex before ByteLevel is "llama-bpe" or "qwen2", Digits before
//     ByteLevel is "starcoder"; any other pre-tokenizer is refused, never approximated.
//   - SentencePiece-style BPE (Llama 2): model "BPE" with byte_fallback whose spaces are
//     written as "▁" by the normalizer (Replace " " by "▁", and Prepend "▁" for the dummy
//     prefix) or by a Metaspace pre-tokenizer that prepends nothing -> VocabModel::Spm. Each
//     piece scores minus the rank of the first merge that makes it, so SentencePiece's
//     best-score-first order is the merge order. A Metaspace that prepends ("always",
//     "first") is refused: it skips the "▁" before text that starts with a space, which
//     SentencePiece does not.
// The normalizer NFC sets Vocab::nfc (GGUF files drop it, so their vocabularies leave it off).
// Added tokens keep their ids: special ones are Control, the others UserDefined (their
// lstrip/rstrip/single_word flags are not kept); ids the file leaves out are "[PADn]" Unused
// pieces, as llama.cpp's converter writes them. BOS/EOS/unknown/padding come from
// tokenizer_config.json when it names them, else from the post-processor's template or the
// model's unk_token; add_bos and add_eos from tokenizer_config.json's add_bos_token and
// add_eos_token, else from the template.
//
// Every defect is an Error naming the file and the defect on one line: not JSON or nested too
// deep, a value of the wrong JSON type, ids out of range or given twice, merges naming pieces
// the vocabulary lacks, and any model, normalizer, pre-tokenizer, post-processor or decoder
// tapml does not run exactly. Sizes are bounded before anything is allocated for them.
#pragma once
#include <string>
#include <string_view>

#include "tokenizer/vocab.h"

namespace tapml {

// Reads `path` (a tokenizer.json) and, when present, tokenizer_config.json in its folder.
Vocab load_hf_tokenizer_json(const std::string& path);
// The same from memory; `config_text` may be empty (no tokenizer_config.json). `name` is the
// tokenizer.json's path, for messages; the config is named as its sibling.
Vocab parse_hf_tokenizer_json(std::string_view json_text, std::string_view config_text,
                              const std::string& name);

}  // namespace tapml
