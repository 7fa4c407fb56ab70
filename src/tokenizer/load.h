// Finds a model's tokenizer: an explicit file (llama2.c tokenizer.bin, a GGUF vocabulary, a
// Hugging Face tokenizer.json or a folder holding one, a SentencePiece .model), else the vocabulary
// embedded in a GGUF file, else the tokenizer.json beside a Hugging Face model's weights. Checks
// that its size fits the model's vocabulary.
#pragma once
#include <string>

#include "tokenizer/tokenizer.h"

namespace tapml {

namespace gguf {
class File;
}

// The tokenizer.json of a Hugging Face model folder, or "" when `model_folder` is no folder or
// holds none.
std::string folder_tokenizer_json(const std::string& model_folder);

// `tokenizer_path` may be empty when `embedded` holds a vocabulary or `model_folder` (a
// Hugging Face model folder, "" for a model file) holds a tokenizer.json. A tokenizer.json may
// have fewer tokens than the model, whose embedding is often rounded up: the rest become
// "[PADn]" pieces, as llama.cpp's converter writes them. Throws Error when there is no
// tokenizer to be had or its size does not fit `model_vocab_size`.
Tokenizer load_tokenizer(const std::string& tokenizer_path, const gguf::File* embedded,
                         int model_vocab_size, const std::string& model_folder = "");

}  // namespace tapml
