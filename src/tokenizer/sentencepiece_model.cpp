#include "tokenizer/sentencepiece_model.h"

#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/error.h"
#include "format/untrusted_json.h"
#include "tokenizer/pieces.h"
#include "tokenizer/unigram.h"
#include "tokenizer/utf8.h"

namespace tapml {

namespace {

// More pieces than this is no vocabulary (the largest real ones have about 2^18), and each
// costs some 40 bytes of memory for every 2 bytes of file.
constexpr size_t kMaxPieces = size_t(1) << 24;
constexpr uint64_t kMaxFileBytes = uint64_t(1) << 30;

enum WireType {
  kVarint = 0,
  kFixed64 = 1,
  kLengthDelimited = 2,
  kStartGroup = 3,
  kEndGroup = 4,
  kFixed32 = 5
};

const char* wire_type_name(int w) {
  switch (w) {
    case kVarint:
      return "varint";
    case kFixed64:
      return "fixed64";
    case kLengthDelimited:
      return "length-delimited";
    case kStartGroup:
      return "start-group";
    case kEndGroup:
      return "end-group";
    case kFixed32:
      return "fixed32";
  }
  return "invalid";
}

struct Field {
  uint32_t number = 0;
  int wire = 0;
  uint64_t varint = 0;     // kVarint
  uint32_t fixed32 = 0;    // kFixed32
  std::string_view bytes;  // kLengthDelimited
  size_t offset = 0;       // of the tag, in the file
};

// The fields of one protobuf message, in order. `what` names the message in errors
// ("PATH: trainer_spec"); `base` is where the message starts in the file.
class Fields {
 public:
  Fields(std::string_view bytes, size_t base, std::string what)
      : p_(bytes.data()),
        begin_(bytes.data()),
        end_(bytes.data() + bytes.size()),
        base_(base),
        what_(std::move(what)) {}

  // The next field that is not a group (groups are skipped), or false at the end.
  bool next(Field& f) {
    while (p_ < end_) {
      f = Field{};
      f.offset = at();
      const uint64_t tag = varint("a field tag");
      const uint64_t number = tag >> 3;
      f.wire = int(tag & 7);
      TAPML_REQUIRE(number >= 1 && number <= 0x1FFFFFFF,
                    what_ + ": field number " + std::to_string(number) + " at byte " +
                        std::to_string(f.offset) + " is not a protobuf field number");
      f.number = uint32_t(number);
      switch (f.wire) {
        case kVarint:
          f.varint = varint("field " + std::to_string(number));
          return true;
        case kFixed64:
          take(8, number);
          return true;
        case kFixed32: {
          const char* q = take(4, number);
          for (int i = 3; i >= 0; --i)
            f.fixed32 = (f.fixed32 << 8) | static_cast<unsigned char>(q[i]);
          return true;
        }
        case kLengthDelimited: {
          const uint64_t len = varint("the length of field " + std::to_string(number));
          TAPML_REQUIRE(len <= uint64_t(end_ - p_),
                        what_ + ": field " + std::to_string(number) + " at byte " +
                            std::to_string(f.offset) + " claims " + std::to_string(len) +
                            " bytes, " + std::to_string(end_ - p_) + " are left");
          f.bytes = std::string_view(p_, size_t(len));
          p_ += len;
          return true;
        }
        case kStartGroup:
          skip_group(f.number, f.offset);
          continue;
        default:
          throw Error(what_ + ": field " + std::to_string(number) + " at byte " +
                      std::to_string(f.offset) + " has wire type " + std::to_string(f.wire) +
                      (f.wire == kEndGroup ? " (end-group) outside any group"
                                           : ", which protobuf does not define"));
      }
    }
    return false;
  }

  // Where the bytes of a length-delimited field start in the file.
  size_t base_of(const Field& f) const { return base_ + size_t(f.bytes.data() - begin_); }
  const std::string& what() const { return what_; }

 private:
  size_t at() const { return base_ + size_t(p_ - begin_); }

  uint64_t varint(const std::string& of) {
    const size_t start = at();
    uint64_t v = 0;
    for (int i = 0; i < 10; ++i) {
      TAPML_REQUIRE(p_ < end_, what_ + ": the varint of " + of + " at byte " +
                                   std::to_string(start) + " is cut off by the end of the data");
      const auto b = static_cast<unsigned char>(*p_++);
      TAPML_REQUIRE(i < 9 || b <= 1, what_ + ": the varint of " + of + " at byte " +
                                         std::to_string(start) + " overflows 64 bits");
      v |= uint64_t(b & 0x7F) << (7 * i);
      if (b < 0x80) return v;
    }
    throw Error(what_ + ": the varint of " + of + " at byte " + std::to_string(start) +
                " is longer than 10 bytes");
  }

  const char* take(size_t n, uint64_t number) {
    TAPML_REQUIRE(size_t(end_ - p_) >= n, what_ + ": field " + std::to_string(number) +
                                              " is cut off by the end of the data (needs " +
                                              std::to_string(n) + " bytes, " +
                                              std::to_string(end_ - p_) + " are left)");
    const char* q = p_;
    p_ += n;
    return q;
  }

  // Skips a group and the groups nested in it, up to its matching end-group tag.
  void skip_group(uint32_t number, size_t offset) {
    std::vector<uint32_t> open{number};
    while (!open.empty()) {
      TAPML_REQUIRE(p_ < end_, what_ + ": the group of field " + std::to_string(number) +
                                   " at byte " + std::to_string(offset) + " has no end");
      const uint64_t tag = varint("a field tag");
      const uint64_t n = tag >> 3;
      switch (int(tag & 7)) {
        case kVarint:
          varint("field " + std::to_string(n));
          break;
        case kFixed64:
          take(8, n);
          break;
        case kFixed32:
          take(4, n);
          break;
        case kLengthDelimited: {
          const uint64_t len = varint("the length of field " + std::to_string(n));
          TAPML_REQUIRE(len <= uint64_t(end_ - p_), what_ + ": field " + std::to_string(n) +
                                                        " in a group claims " +
                                                        std::to_string(len) + " bytes, " +
                                                        std::to_string(end_ - p_) + " are left");
          p_ += len;
          break;
        }
        case kStartGroup:
          open.push_back(uint32_t(n));
          break;
        case kEndGroup:
          TAPML_REQUIRE(n == open.back(), what_ + ": the group of field " +
                                              std::to_string(open.back()) + " ends with field " +
                                              std::to_string(n));
          open.pop_back();
          break;
        default:
          throw Error(what_ + ": a field in the group of field " + std::to_string(number) +
                      " has wire type " + std::to_string(tag & 7) +
                      ", which protobuf does not define");
      }
    }
  }

  const char* p_;
  const char* begin_;
  const char* end_;
  size_t base_;
  std::string what_;
};

// Known fields must come with the wire type their declaration gives them.
void expect_wire(const Fields& fields, const Field& f, int wire, const char* name) {
  TAPML_REQUIRE(f.wire == wire, fields.what() + ": field " + std::to_string(f.number) + " (" +
                                    name + ") at byte " + std::to_string(f.offset) + " is " +
                                    wire_type_name(f.wire) + ", expected " + wire_type_name(wire));
}

int32_t as_int32(const Fields& fields, const Field& f, const char* name) {
  expect_wire(fields, f, kVarint, name);
  // int32 travels sign-extended to 64 bits.
  const auto v = int64_t(f.varint);
  TAPML_REQUIRE(v >= INT32_MIN && v <= INT32_MAX,
                fields.what() + ": " + name + " is " + std::to_string(v) + ", not an int32");
  return int32_t(v);
}

bool as_bool(const Fields& fields, const Field& f, const char* name) {
  expect_wire(fields, f, kVarint, name);
  return f.varint != 0;
}

float as_float(const Fields& fields, const Field& f, const char* name) {
  expect_wire(fields, f, kFixed32, name);
  float x;
  std::memcpy(&x, &f.fixed32, 4);
  return x;
}

std::string_view as_bytes(const Fields& fields, const Field& f, const char* name) {
  expect_wire(fields, f, kLengthDelimited, name);
  return f.bytes;
}

// The first bytes of `s` in hex, for pieces that cannot be shown as text.
std::string hex_prefix(std::string_view s) {
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < s.size() && i < 16; ++i) {
    if (i > 0) out += ' ';
    out += kHex[static_cast<unsigned char>(s[i]) >> 4];
    out += kHex[static_cast<unsigned char>(s[i]) & 15];
  }
  if (s.size() > 16) out += " ...";
  return out;
}

struct TrainerSpec {
  int32_t model_type = 1;  // UNIGRAM
  bool byte_fallback = false, treat_whitespace_as_suffix = false;
  int32_t unk_id = 0, bos_id = 1, eos_id = 2, pad_id = -1;
  std::string unk_piece = "<unk>", bos_piece = "<s>", eos_piece = "</s>", pad_piece = "<pad>";
};

struct NormalizerSpec {
  std::string_view charsmap;
  size_t charsmap_offset = 0;
  bool add_dummy_prefix = true, remove_extra_whitespaces = true, escape_whitespaces = true;
};

// Fields of an embedded message that appears twice merge, as protobuf merges them.
void parse_trainer_spec(Fields fields, TrainerSpec& t) {
  for (Field f; fields.next(f);) {
    switch (f.number) {
      case 3:
        t.model_type = as_int32(fields, f, "model_type");
        break;
      case 24:
        t.treat_whitespace_as_suffix = as_bool(fields, f, "treat_whitespace_as_suffix");
        break;
      case 35:
        t.byte_fallback = as_bool(fields, f, "byte_fallback");
        break;
      case 40:
        t.unk_id = as_int32(fields, f, "unk_id");
        break;
      case 41:
        t.bos_id = as_int32(fields, f, "bos_id");
        break;
      case 42:
        t.eos_id = as_int32(fields, f, "eos_id");
        break;
      case 43:
        t.pad_id = as_int32(fields, f, "pad_id");
        break;
      case 45:
        t.unk_piece = as_bytes(fields, f, "unk_piece");
        break;
      case 46:
        t.bos_piece = as_bytes(fields, f, "bos_piece");
        break;
      case 47:
        t.eos_piece = as_bytes(fields, f, "eos_piece");
        break;
      case 48:
        t.pad_piece = as_bytes(fields, f, "pad_piece");
        break;
      default:
        break;  // training settings the tokenizer does not use
    }
  }
}

void parse_normalizer_spec(Fields fields, NormalizerSpec& n) {
  for (Field f; fields.next(f);) {
    switch (f.number) {
      case 2:
        n.charsmap = as_bytes(fields, f, "precompiled_charsmap");
        n.charsmap_offset = fields.base_of(f);
        break;
      case 3:
        n.add_dummy_prefix = as_bool(fields, f, "add_dummy_prefix");
        break;
      case 4:
        n.remove_extra_whitespaces = as_bool(fields, f, "remove_extra_whitespaces");
        break;
      case 5:
        n.escape_whitespaces = as_bool(fields, f, "escape_whitespaces");
        break;
      default:
        break;  // the rule's name and its source TSV
    }
  }
}

}  // namespace

Vocab parse_sentencepiece_model(const uint8_t* data, size_t size, const std::string& name) {
  TAPML_REQUIRE(data != nullptr || size == 0, name + ": no data");
  TAPML_REQUIRE(size > 0, name + ": the file is empty, not a SentencePiece model");
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);

  struct Piece {
    std::string_view text;
    float score = 0;
    int32_t type = 1;  // NORMAL
  };
  std::vector<Piece> pieces;
  TrainerSpec trainer;
  NormalizerSpec normalizer;
  Fields top(bytes, 0, name);
  for (Field f; top.next(f);) {
    switch (f.number) {
      case 1: {
        expect_wire(top, f, kLengthDelimited, "pieces");
        TAPML_REQUIRE(pieces.size() < kMaxPieces,
                      name + ": more than " + std::to_string(kMaxPieces) + " pieces");
        const std::string what = name + ": piece " + std::to_string(pieces.size());
        Fields fields(f.bytes, top.base_of(f), what);
        Piece p;
        bool has_text = false;
        for (Field g; fields.next(g);) {
          if (g.number == 1) {
            p.text = as_bytes(fields, g, "piece");
            has_text = true;
          } else if (g.number == 2) {
            p.score = as_float(fields, g, "score");
          } else if (g.number == 3) {
            p.type = as_int32(fields, g, "type");
          }
        }
        TAPML_REQUIRE(has_text && !p.text.empty(), what + " is empty");
        TAPML_REQUIRE(valid_utf8(p.text),
                      what + " (bytes " + hex_prefix(p.text) + ") is not valid UTF-8");
        TAPML_REQUIRE(!std::isnan(p.score), what + " " + quote_name(p.text) + " has a NaN score");
        TAPML_REQUIRE(p.type >= 1 && p.type <= 6,
                      what + " " + quote_name(p.text) + " has type " + std::to_string(p.type) +
                          ", not one of SentencePiece's 1 (NORMAL) .. 6 (BYTE)");
        pieces.push_back(p);
        break;
      }
      case 2:
        expect_wire(top, f, kLengthDelimited, "trainer_spec");
        parse_trainer_spec(Fields(f.bytes, top.base_of(f), name + ": trainer_spec"), trainer);
        break;
      case 3:
        expect_wire(top, f, kLengthDelimited, "normalizer_spec");
        parse_normalizer_spec(Fields(f.bytes, top.base_of(f), name + ": normalizer_spec"),
                              normalizer);
        break;
      default:
        break;  // self-test samples, the denormalizer, extensions
    }
  }
  TAPML_REQUIRE(!pieces.empty(), name + ": no pieces: not a SentencePiece model");
  const size_t n = pieces.size();

  switch (trainer.model_type) {
    case 1:
    case 2:
      break;
    case 3:
      throw Error(name + ": model_type WORD is not supported (tapml reads UNIGRAM and BPE)");
    case 4:
      throw Error(name + ": model_type CHAR is not supported (tapml reads UNIGRAM and BPE)");
    default:
      throw Error(name + ": model_type " + std::to_string(trainer.model_type) +
                  " is not a SentencePiece model type (1 UNIGRAM, 2 BPE, 3 WORD, 4 CHAR)");
  }
  auto check_id = [&](int32_t id, const char* key) {
    TAPML_REQUIRE(id >= -1 && int64_t(id) < int64_t(n), name + ": trainer_spec " + key + " is " +
                                                            std::to_string(id) + ", outside the " +
                                                            std::to_string(n) + " pieces");
  };
  check_id(trainer.unk_id, "unk_id");
  check_id(trainer.bos_id, "bos_id");
  check_id(trainer.eos_id, "eos_id");
  check_id(trainer.pad_id, "pad_id");

  Vocab v;
  v.model = trainer.model_type == 1 ? VocabModel::Unigram : VocabModel::Spm;
  v.pieces.reserve(n);
  v.scores.reserve(n);
  v.kinds.reserve(n);
  // What SentencePiece checks as it loads a model: normal, user-defined and unused pieces
  // must differ from each other, and so must the others (unknown, control, byte).
  std::unordered_map<std::string_view, int> normal, reserved;
  std::vector<bool> byte_seen(256, false);
  int unk = -1;
  for (size_t i = 0; i < n; ++i) {
    const Piece& p = pieces[i];
    const auto kind = TokenKind(p.type);
    const std::string what = name + ": piece " + std::to_string(i) + " " + quote_name(p.text);
    const bool is_normal =
        kind == TokenKind::Normal || kind == TokenKind::UserDefined || kind == TokenKind::Unused;
    auto [it, added] = (is_normal ? normal : reserved).emplace(p.text, int(i));
    TAPML_REQUIRE(added, what + " repeats piece " + std::to_string(it->second));
    if (kind == TokenKind::Unknown) {
      TAPML_REQUIRE(unk < 0, what + " is a second piece of type UNKNOWN (piece " +
                                 std::to_string(unk) + " is the first)");
      unk = int(i);
    }
    if (kind == TokenKind::Byte) {
      TAPML_REQUIRE(trainer.byte_fallback,
                    what + " is a byte piece, but trainer_spec byte_fallback is false");
      const int b = byte_of_piece(p.text);
      TAPML_REQUIRE(b >= 0, what + " is of type BYTE but not a byte piece \"<0xNN>\"");
      byte_seen[size_t(b)] = true;
    }
    v.pieces.emplace_back(p.text);
    v.scores.push_back(p.score);
    v.kinds.push_back(kind);
  }
  TAPML_REQUIRE(unk >= 0, name + ": no piece is of type UNKNOWN (SentencePiece needs one)");
  if (trainer.byte_fallback) {
    for (size_t b = 0; b < 256; ++b) {
      static const char kHex[] = "0123456789ABCDEF";
      TAPML_REQUIRE(byte_seen[b],
                    name + ": trainer_spec byte_fallback is true but the byte piece <0x" +
                        kHex[b >> 4] + kHex[b & 15] + "> is missing");
    }
  }
  // SentencePieceProcessor::bos_id() and friends: the piece the trainer spec names, when it
  // has the right type.
  auto special = [&](const std::string& piece, TokenKind want) {
    int id = unk;
    if (auto it = reserved.find(piece); it != reserved.end())
      id = it->second;
    else if (auto it2 = normal.find(piece); it2 != normal.end())
      id = it2->second;
    return v.kinds[size_t(id)] == want ? id : -1;
  };
  v.unk = unk;
  v.bos = special(trainer.bos_piece, TokenKind::Control);
  v.eos = special(trainer.eos_piece, TokenKind::Control);
  v.pad = special(trainer.pad_piece, TokenKind::Control);
  if (v.eos >= 0) v.eog.push_back(v.eos);
  v.add_bos = v.model == VocabModel::Spm && v.bos >= 0;
  v.add_eos = false;
  v.space = "\xE2\x96\x81";
  v.add_space_prefix = normalizer.add_dummy_prefix;
  v.remove_extra_whitespaces = normalizer.remove_extra_whitespaces;
  v.escape_whitespaces = normalizer.escape_whitespaces;
  v.treat_whitespace_as_suffix = trainer.treat_whitespace_as_suffix;
  // Checked here so that a broken map is refused when the file is read, naming the file.
  PrecompiledCharsMap(normalizer.charsmap, name + ": normalizer_spec (at byte " +
                                               std::to_string(normalizer.charsmap_offset) + ")");
  v.charsmap.assign(normalizer.charsmap);
  return v;
}

Vocab load_sentencepiece_model(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  TAPML_REQUIRE(bool(in),
                path + ": cannot open the SentencePiece model (" + std::strerror(errno) + ")");
  const std::streamoff size = in.tellg();
  TAPML_REQUIRE(size >= 0, path + ": cannot tell the size of the SentencePiece model");
  TAPML_REQUIRE(uint64_t(size) <= kMaxFileBytes,
                path + ": " + std::to_string(size) +
                    " bytes is larger than any SentencePiece model (tapml reads up to 1 GiB)");
  std::string bytes(size_t(size), '\0');
  in.seekg(0);
  in.read(bytes.data(), size);
  TAPML_REQUIRE(in.gcount() == size, path + ": read error");
  return parse_sentencepiece_model(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(),
                                   path);
}

}  // namespace tapml
