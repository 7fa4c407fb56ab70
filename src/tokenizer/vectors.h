// llama.cpp's tokenizer test vectors (test-tokenizer-0's files): NAME.inp holds the inputs,
// each followed by "\n__ggml_vocab_test__\n" (inputs may be empty, hold newlines or start and
// end with spaces; the last may run to the end of the file instead), NAME.out one line of
// space-separated ids per input.
#pragma once
#include <string>
#include <vector>

namespace tapml {

struct TokenizerVector {
  std::string text;
  std::vector<int> ids;
};

// The inputs of an .inp file. Throws Error when it cannot be read.
std::vector<std::string> read_vector_inputs(const std::string& inp_path);
// Inputs with their ids, from `inp_path` and the .out beside it (the path without ".inp",
// plus ".out"). Throws Error when either cannot be read or their counts differ.
std::vector<TokenizerVector> read_tokenizer_vectors(const std::string& inp_path);

}  // namespace tapml
