#include "tokenizer/text_model.h"

#include "core/error.h"
#include "tokenizer/bpe.h"
#include "tokenizer/unigram.h"
#include "tokenizer/wordpiece.h"

namespace tapml {

std::unique_ptr<TextModel> make_text_model(const Vocab& vocab) {
  switch (vocab.model) {
    case VocabModel::Bpe:
      return std::make_unique<BpeModel>(vocab);
    case VocabModel::WordPiece:
      return std::make_unique<WordPieceModel>(vocab);
    case VocabModel::Unigram:
      return std::make_unique<UnigramModel>(vocab);
    case VocabModel::Spm:
      break;
  }
  throw Error("tokenizer: SentencePiece BPE has no separate text model");
}

}  // namespace tapml
