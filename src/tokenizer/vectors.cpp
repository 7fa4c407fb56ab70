#include "tokenizer/vectors.h"

#include <sstream>

#include "core/error.h"
#include "core/read_file.h"

namespace tapml {

std::vector<std::string> read_vector_inputs(const std::string& inp_path) {
  const std::string sep = "\n__ggml_vocab_test__\n";
  const std::string inp = read_file_bytes(inp_path);
  std::vector<std::string> inputs;
  size_t pos = 0;
  for (size_t end; (end = inp.find(sep, pos)) != std::string::npos; pos = end + sep.size())
    inputs.push_back(inp.substr(pos, end - pos));
  if (pos < inp.size()) inputs.push_back(inp.substr(pos));
  return inputs;
}

std::vector<TokenizerVector> read_tokenizer_vectors(const std::string& inp_path) {
  std::vector<TokenizerVector> vectors;
  for (std::string& text : read_vector_inputs(inp_path)) vectors.push_back({std::move(text), {}});
  std::string out_path = inp_path;
  if (out_path.ends_with(".inp")) out_path.resize(out_path.size() - 4);
  out_path += ".out";
  std::istringstream lines(read_file_bytes(out_path));
  size_t n = 0;
  for (std::string line; std::getline(lines, line); ++n) {
    if (n >= vectors.size()) {
      ++n;
      break;
    }
    std::istringstream ids(line);
    for (int id; ids >> id;) vectors[n].ids.push_back(id);
    TAPML_REQUIRE(ids.eof(),
                  out_path + ": line " + std::to_string(n + 1) + " is not a list of ids");
  }
  TAPML_REQUIRE(n == vectors.size(),
                inp_path + " holds " + std::to_string(vectors.size()) + " inputs but " + out_path +
                    " " + (n > vectors.size() ? "more" : std::to_string(n)) + " lines of ids");
  return vectors;
}

}  // namespace tapml
