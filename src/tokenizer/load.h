// Finds a model's tokenizer: an explicit llama2.c tokenizer.bin, or the vocabulary embedded
// in a GGUF file. Checks that its size matches the model's vocabulary.
#pragma once
#include <string>

#include "tokenizer/tokenizer.h"

namespace tapml {

namespace gguf {
class File;
}

// `tokenizer_path` may be empty when `embedded` holds a vocabulary. Throws Error when there
// is no tokenizer to be had or its size differs from `model_vocab_size`.
Tokenizer load_tokenizer(const std::string& tokenizer_path, const gguf::File* embedded,
                         int model_vocab_size);

}  // namespace tapml
