// SentencePiece .model files: a serialized sentencepiece.ModelProto (protobuf) holding the
// pieces with their scores and types, the trainer's settings (model type, special pieces,
// byte fallback) and the normalizer's (precompiled charsmap, dummy prefix, whitespace).
// The reader checks the file as the sentencepiece library does when it loads one (one
// unknown piece, no piece twice, byte pieces only with byte fallback and then all 256) and
// checks everything a hostile file could abuse: varints, lengths, counts, UTF-8 of pieces,
// ids, piece types and the charsmap's trie. Any defect is an Error naming the file and the
// defect, never a crash or an allocation larger than the file calls for.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "tokenizer/vocab.h"

namespace tapml {

// model_type UNIGRAM gives VocabModel::Unigram, BPE VocabModel::Spm (score-driven merges, as
// GGUF "llama"); WORD and CHAR are refused. bos, eos and pad are the pieces the trainer spec
// names ("<s>", "</s>", "<pad>" by default) when they are control pieces, else -1, as
// SentencePieceProcessor::bos_id() finds them; unk is the piece of type UNKNOWN. add_bos is
// set for BPE models (Llama's convention), add_eos never: the file does not say.
Vocab load_sentencepiece_model(const std::string& path);
// The same from memory; `name` stands for the path in messages.
Vocab parse_sentencepiece_model(const uint8_t* data, size_t size, const std::string& name);

}  // namespace tapml
