#include "tokenizer/hf_tokenizer.h"

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <unordered_map>
#include <vector>

#include "core/error.h"
#include "format/untrusted_json.h"
#include "tokenizer/pieces.h"

namespace tapml {

namespace {

using Json = nlohmann::json;

// The largest real tokenizer.json files are tens of MiB (a 256k vocabulary with its merges);
// the parsed document takes several times the text, so the bound keeps that finite.
constexpr size_t kMaxJsonBytes = size_t(512) << 20;
constexpr size_t kMaxConfigBytes = size_t(16) << 20;
// Ids are bounded before the vocabulary is sized by them; real vocabularies stay below 2^19.
constexpr int64_t kMaxTokens = int64_t(1) << 22;
// A SentencePiece score is minus a merge rank, in a float: exact up to 2^24.
constexpr size_t kMaxScoredMerges = size_t(1) << 24;

constexpr const char* kSpace = "\xE2\x96\x81";  // "▁"

// Llama 3's and Qwen2's splits as their tokenizer.json files spell them (bpe.cpp runs the
// same expressions with "(?i:...)" spelled out, as llama.cpp does).
constexpr const char* kLlama3Split =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kQwen2Split =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// Pieces that end generation when they are special, as load_gguf_vocab recognizes them.
constexpr const char* kEndOfTurn[] = {"<|eot_id|>",    "<|im_end|>", "<|end|>", "<end_of_turn>",
                                      "<|endoftext|>", "<|eom_id|>", "<EOT>",   "<|end_of_text|>",
                                      "<eos>",         "<turn|>"};

// One JSON document being read; every defect becomes "FILE: WHERE ...".
struct Source {
  std::string name;

  [[noreturn]] void fail(const std::string& what) const { throw Error(name + ": " + what); }

  static std::string at(const std::string& where, const std::string& key) {
    return where.empty() ? key : where + "." + key;
  }
  static std::string at(const std::string& where, size_t index) {
    return where + "[" + std::to_string(index) + "]";
  }

  // obj[key], or nullptr when it is absent or null.
  static const Json* find(const Json& obj, const char* key) {
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return nullptr;
    return &*it;
  }
  const Json& need(const Json& obj, const char* key, const std::string& where) const {
    const Json* v = find(obj, key);
    if (v == nullptr) fail(at(where, key) + " is missing");
    return *v;
  }
  const Json& object(const Json& v, const std::string& where) const {
    if (!v.is_object()) fail(where + " is " + article(v) + ", expected an object");
    return v;
  }
  const Json& array(const Json& v, const std::string& where) const {
    if (!v.is_array()) fail(where + " is " + article(v) + ", expected an array");
    return v;
  }
  const std::string& string(const Json& v, const std::string& where) const {
    if (!v.is_string()) fail(where + " is " + article(v) + ", expected a string");
    return v.get_ref<const std::string&>();
  }
  bool boolean(const Json& obj, const char* key, const std::string& where, bool fallback) const {
    const Json* v = find(obj, key);
    if (v == nullptr) return fallback;
    if (!v->is_boolean()) fail(at(where, key) + " is " + article(*v) + ", expected true or false");
    return v->get<bool>();
  }
  // A token id: an integer in [0, kMaxTokens).
  int id(const Json& v, const std::string& where) const {
    if (!v.is_number_integer()) fail(where + " is " + article(v) + ", expected a token id");
    if (v.is_number_unsigned()) {
      uint64_t u = v.get<uint64_t>();
      if (u >= uint64_t(kMaxTokens))
        fail(where + " is " + std::to_string(u) + ", beyond the " + std::to_string(kMaxTokens) +
             " ids tapml reads");
      return int(u);
    }
    fail(where + " is " + std::to_string(v.get<int64_t>()) + ", a token id cannot be negative");
  }
  // The "type" of a component object (normalizer, pre_tokenizer, ...).
  const std::string& type(const Json& v, const std::string& where) const {
    return string(need(object(v, where), "type", where), at(where, "type"));
  }

  static std::string article(const Json& v) {
    switch (v.type()) {
      case Json::value_t::object:
        return "an object";
      case Json::value_t::array:
        return "an array";
      case Json::value_t::string:
        return "a string";
      case Json::value_t::boolean:
        return "a boolean";
      case Json::value_t::null:
        return "null";
      default:
        return "a number";
    }
  }
};

// --- normalizer ------------------------------------------------------------------------------

struct Normalizer {
  bool nfc = false;
  bool escape_spaces = false;  // Replace " " -> "▁"
  bool prepend = false;        // Prepend "▁"
};

void read_normalizer_step(const Source& s, const Json& n, const std::string& where,
                          Normalizer& out) {
  const std::string& type = s.type(n, where);
  if (type == "NFC") {
    out.nfc = true;
  } else if (type == "Prepend") {
    const std::string& p = s.string(s.need(n, "prepend", where), Source::at(where, "prepend"));
    if (p != kSpace)
      s.fail(where + " prepends " + quote_name(p) + "; tapml reads only Prepend \"\u2581\"");
    out.prepend = true;
  } else if (type == "Replace") {
    const Json& pattern = s.object(s.need(n, "pattern", where), Source::at(where, "pattern"));
    const Json* from = Source::find(pattern, "String");
    const std::string& to = s.string(s.need(n, "content", where), Source::at(where, "content"));
    if (from == nullptr || !from->is_string() || from->get_ref<const std::string&>() != " " ||
        to != kSpace)
      s.fail(where + " (Replace " + quote_name(pattern.dump()) + " by " + quote_name(to) +
             ") is not supported; tapml reads only Replace \" \" by \"\u2581\"");
    out.escape_spaces = true;
  } else if (type == "Sequence") {
    const Json& steps = s.array(s.need(n, "normalizers", where), Source::at(where, "normalizers"));
    for (size_t i = 0; i < steps.size(); ++i)
      read_normalizer_step(s, steps[i], Source::at(Source::at(where, "normalizers"), i), out);
  } else {
    s.fail(where + " type " + quote_name(type) +
           " is not supported (tapml reads NFC, and Prepend + Replace of SentencePiece spaces)");
  }
}

// --- pre-tokenizer ---------------------------------------------------------------------------

struct PreTokenizer {
  enum Kind { None, ByteLevel, Metaspace } kind = None;
  std::string split;  // ByteLevel: the bpe.h pre-tokenizer name
};

// A ByteLevel step: whether it splits with GPT-2's regex. Refuses add_prefix_space, which
// tapml's BPE does not do.
bool byte_level_uses_regex(const Source& s, const Json& p, const std::string& where) {
  // The tokenizers library's defaults, for files that leave the fields out.
  if (s.boolean(p, "add_prefix_space", where, true))
    s.fail(where + " is ByteLevel with add_prefix_space, which tapml does not support");
  return s.boolean(p, "use_regex", where, true);
}

// The regex of a Split step that isolates its matches, or Error.
const std::string& split_regex(const Source& s, const Json& p, const std::string& where) {
  const Json& pattern = s.object(s.need(p, "pattern", where), Source::at(where, "pattern"));
  const Json* regex = Source::find(pattern, "Regex");
  if (regex == nullptr)
    s.fail(where + " splits by " + quote_name(pattern.dump()) + ", not by a regex tapml knows");
  const std::string& r = s.string(*regex, Source::at(where, "pattern.Regex"));
  const Json* behavior = Source::find(p, "behavior");
  std::string b = behavior ? s.string(*behavior, Source::at(where, "behavior")) : "";
  if (b != "Isolated" || s.boolean(p, "invert", where, false))
    s.fail(where + " splits by " + quote_name(r) + " with behavior " + quote_name(b) +
           (s.boolean(p, "invert", where, false) ? " inverted" : "") +
           "; tapml knows only Isolated, not inverted, splits");
  return r;
}

std::string step_name(const Source& s, const Json& p, const std::string& where) {
  std::string type = s.type(p, where);
  if (type == "Split") {
    const Json* pattern = Source::find(p, "pattern");
    return "Split " + quote_name(pattern ? pattern->dump() : "");
  }
  return type;
}

PreTokenizer read_pre_tokenizer(const Source& s, const Json* p) {
  PreTokenizer out;
  if (p == nullptr) return out;
  const std::string where = "pre_tokenizer";
  const std::string& type = s.type(*p, where);
  if (type == "ByteLevel") {
    if (!byte_level_uses_regex(s, *p, where))
      s.fail(where +
             " is ByteLevel without use_regex and without a Split before it: nothing "
             "would split the text into words");
    out.kind = PreTokenizer::ByteLevel;
    out.split = "gpt-2";
    return out;
  }
  if (type == "Metaspace") {
    const Json* r = Source::find(*p, "replacement");
    if (r == nullptr || !r->is_string() || r->get_ref<const std::string&>() != kSpace)
      s.fail(where + " is Metaspace with a replacement other than \"\u2581\"");
    // Older files say add_prefix_space and always split at "▁"; newer ones say prepend_scheme
    // and split.
    if (s.boolean(*p, "split", where, true))
      s.fail(where +
             " is Metaspace with split, which cuts words at every \"\u2581\"; tapml "
             "runs SentencePiece merges across them");
    std::string scheme = "always";
    if (const Json* ps = Source::find(*p, "prepend_scheme"))
      scheme = s.string(*ps, where + ".prepend_scheme");
    else if (!s.boolean(*p, "add_prefix_space", where, true))
      scheme = "never";
    // Metaspace puts "▁" in front only where the text does not start with a space already,
    // and with "first" only at the start of the whole text; SentencePiece (and tapml) put it
    // before every stretch of text, so only "never" tokenizes the same.
    if (scheme != "never")
      s.fail(
          where + " is Metaspace with prepend_scheme " + quote_name(scheme) +
          ", which tapml does not run (it reads \"never\", or the normalizer Prepend \"\u2581\")");
    out.kind = PreTokenizer::Metaspace;
    return out;
  }
  if (type != "Sequence")
    s.fail(where + " type " + quote_name(type) +
           " is not supported (tapml reads ByteLevel, Metaspace, and the Sequence splits of "
           "Llama 3, Qwen2 and StarCoder)");

  const std::string list_at = Source::at(where, "pretokenizers");
  const Json& steps = s.array(s.need(*p, "pretokenizers", where), list_at);
  if (steps.size() == 1) return read_pre_tokenizer(s, &steps[0]);
  std::string names;
  for (size_t i = 0; i < steps.size(); ++i)
    names += (i ? ", " : "") + step_name(s, steps[i], Source::at(list_at, i));
  auto unknown = [&]() {
    s.fail(where + " Sequence [" + names +
           "] is not a split tapml knows (it knows ByteLevel alone, Split by Llama 3's or "
           "Qwen2's regex then ByteLevel, and Digits then ByteLevel)");
  };
  if (steps.size() != 2 || s.type(steps[1], Source::at(list_at, 1)) != "ByteLevel") unknown();
  const std::string first_at = Source::at(list_at, 0);
  const std::string& first = s.type(steps[0], first_at);
  bool regex = byte_level_uses_regex(s, steps[1], Source::at(list_at, 1));
  out.kind = PreTokenizer::ByteLevel;
  if (first == "Split" && !regex) {
    const std::string& r = split_regex(s, steps[0], first_at);
    if (r == kLlama3Split)
      out.split = "llama-bpe";
    else if (r == kQwen2Split)
      out.split = "qwen2";
    else
      s.fail(first_at + " splits by the regex " + quote_name(r) +
             ", which tapml does not know (it knows Llama 3's and Qwen2's)");
  } else if (first == "Digits" && regex) {
    if (!s.boolean(steps[0], "individual_digits", first_at, false))
      s.fail(first_at + " is Digits without individual_digits, which tapml does not know");
    out.split = "starcoder";  // each digit alone, then GPT-2's regex
  } else {
    unknown();
  }
  return out;
}

// --- decoder ---------------------------------------------------------------------------------

// Checks that the decoder undoes what the encoding did: ByteLevel for byte-level BPE, the
// SentencePiece steps (Replace "▁" by " ", ByteFallback, Fuse, Strip, Metaspace) otherwise.
void check_decoder(const Source& s, const Json& d, const std::string& where, bool byte_level) {
  const std::string& type = s.type(d, where);
  bool fits = true;
  if (type == "Sequence") {
    const Json& steps = s.array(s.need(d, "decoders", where), Source::at(where, "decoders"));
    for (size_t i = 0; i < steps.size(); ++i)
      check_decoder(s, steps[i], Source::at(Source::at(where, "decoders"), i), byte_level);
    return;
  } else if (type == "ByteLevel") {
    fits = byte_level;
  } else if (type == "Replace" || type == "ByteFallback" || type == "Fuse" || type == "Strip" ||
             type == "Metaspace") {
    fits = !byte_level;
  } else {
    s.fail(where + " type " + quote_name(type) +
           " is not supported (tapml reads ByteLevel, Metaspace, Replace, ByteFallback, Fuse "
           "and Strip decoders)");
  }
  if (!fits)
    s.fail(where + " is " + type + ", which does not decode a " +
           (byte_level ? "byte-level" : "SentencePiece-style") + " vocabulary");
}

// --- post-processor --------------------------------------------------------------------------

struct Template {
  int before = -1, after = -1;  // the special token put before / after the text, -1: none
  bool present = false;
};

void read_template(const Source& s, const Json& p, const std::string& where, Template& out) {
  const std::string& type = s.type(p, where);
  if (type == "ByteLevel") return;  // trims offsets only
  if (type == "Sequence") {
    const std::string list_at = Source::at(where, "processors");
    const Json& steps = s.array(s.need(p, "processors", where), list_at);
    for (size_t i = 0; i < steps.size(); ++i)
      read_template(s, steps[i], Source::at(list_at, i), out);
    return;
  }
  if (type != "TemplateProcessing")
    s.fail(where + " type " + quote_name(type) +
           " is not supported (tapml reads ByteLevel and TemplateProcessing post-processors)");
  if (out.present) s.fail(where + " is a second TemplateProcessing");
  out.present = true;
  const std::string single_at = Source::at(where, "single");
  const Json& single = s.array(s.need(p, "single", where), single_at);
  const std::string specials_at = Source::at(where, "special_tokens");
  const Json* specials = Source::find(p, "special_tokens");
  if (specials != nullptr) s.object(*specials, specials_at);
  std::vector<int> before, after;
  bool text_seen = false;
  for (size_t i = 0; i < single.size(); ++i) {
    const std::string item_at = Source::at(single_at, i);
    const Json& item = s.object(single[i], item_at);
    if (const Json* seq = Source::find(item, "Sequence")) {
      const std::string& id =
          s.string(s.need(s.object(*seq, item_at + ".Sequence"), "id", item_at + ".Sequence"),
                   item_at + ".Sequence.id");
      if (id != "A" || text_seen)
        s.fail(item_at + " puts sequence " + quote_name(id) +
               " in the single-text template; tapml reads templates of one text (A)");
      text_seen = true;
    } else if (const Json* tok = Source::find(item, "SpecialToken")) {
      const std::string tok_at = item_at + ".SpecialToken";
      const std::string& name =
          s.string(s.need(s.object(*tok, tok_at), "id", tok_at), tok_at + ".id");
      auto found = specials ? specials->find(name) : Json::const_iterator();
      const Json* entry = specials && found != specials->end() ? &*found : nullptr;
      if (entry == nullptr)
        s.fail(tok_at + " names " + quote_name(name) + ", which " + specials_at +
               " does not define");
      const std::string entry_at = Source::at(specials_at, quote_name(name));
      const Json& ids =
          s.array(s.need(s.object(*entry, entry_at), "ids", entry_at), entry_at + ".ids");
      if (ids.size() != 1)
        s.fail(entry_at + ".ids has " + std::to_string(ids.size()) +
               " ids; tapml adds one token before or after the text");
      (text_seen ? after : before).push_back(s.id(ids[0], entry_at + ".ids[0]"));
    } else {
      s.fail(item_at + " is neither a Sequence nor a SpecialToken");
    }
  }
  if (!text_seen) s.fail(single_at + " has no place for the text (Sequence A)");
  if (before.size() > 1 || after.size() > 1)
    s.fail(single_at + " adds " + std::to_string(before.size()) + " tokens before and " +
           std::to_string(after.size()) +
           " after the text; tapml adds at most one on each side (BOS, EOS)");
  if (!before.empty()) out.before = before[0];
  if (!after.empty()) out.after = after[0];
}

// --- tokenizer_config.json -------------------------------------------------------------------

// A special token as tokenizer_config.json names it: a string, {"content": ...} or null.
std::optional<std::string> config_token(const Source& s, const Json& config, const char* key) {
  const Json* v = Source::find(config, key);
  if (v == nullptr) return std::nullopt;
  if (v->is_object()) return s.string(s.need(*v, "content", key), std::string(key) + ".content");
  return s.string(*v, key);
}

std::optional<bool> config_flag(const Source& s, const Json& config, const char* key) {
  if (Source::find(config, key) == nullptr) return std::nullopt;
  return s.boolean(config, key, "", false);
}

std::string config_name(const std::string& name) {
  std::filesystem::path parent = std::filesystem::path(name).parent_path();
  return parent.empty() ? "tokenizer_config.json" : (parent / "tokenizer_config.json").string();
}

size_t characters(std::string_view s) {
  size_t n = 0;
  for (char c : s) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return n;
}

std::string read_bounded(const std::string& path, size_t limit, const char* what) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    throw Error(path + ": is a folder, expected a " + what + " file");
  std::ifstream in(path, std::ios::binary);
  TAPML_REQUIRE(bool(in), path + ": cannot open (" + std::strerror(errno) + ")");
  in.seekg(0, std::ios::end);
  std::streamoff size = in.tellg();
  TAPML_REQUIRE(size >= 0, path + ": cannot tell the file's size");
  TAPML_REQUIRE(uint64_t(size) <= limit,
                path + ": " + std::to_string(size) + " bytes, more than the " +
                    std::to_string(limit >> 20) + " MiB a " + what + " may have");
  in.seekg(0);
  std::string text(size_t(size), '\0');
  in.read(text.data(), size);
  TAPML_REQUIRE(in.gcount() == size, path + ": read error");
  return text;
}

}  // namespace

Vocab parse_hf_tokenizer_json(std::string_view json_text, std::string_view config_text,
                              const std::string& name) {
  const Source s{name};
  if (json_text.size() > kMaxJsonBytes)
    s.fail(std::to_string(json_text.size()) + " bytes, more than the " +
           std::to_string(kMaxJsonBytes >> 20) + " MiB a tokenizer.json may have");
  const Json doc = parse_untrusted_json<Json>(json_text, name);
  if (!doc.is_object()) s.fail("is " + Source::article(doc) + ", not a tokenizer.json object");

  const Source cs{config_name(name)};
  Json config = Json::object();
  if (!config_text.empty()) {
    if (config_text.size() > kMaxConfigBytes)
      cs.fail(std::to_string(config_text.size()) + " bytes, more than the " +
              std::to_string(kMaxConfigBytes >> 20) + " MiB a tokenizer_config.json may have");
    config = parse_untrusted_json<Json>(config_text, cs.name);
    if (!config.is_object()) cs.fail("is " + Source::article(config) + ", expected an object");
  }

  // The model: BPE only, without the options that tapml's merging does not have.
  const Json& model = s.object(s.need(doc, "model", ""), "model");
  std::string model_type;
  if (const Json* t = Source::find(model, "type"))
    model_type = s.string(*t, "model.type");
  else if (Source::find(model, "merges") != nullptr)
    model_type = "BPE";  // files from before the type was written
  if (model_type != "BPE")
    s.fail("model.type " + quote_name(model_type) +
           " is not supported (tapml reads BPE tokenizer.json files)");
  if (const Json* d = Source::find(model, "dropout")) {
    if (!d->is_number() || d->get<double>() != 0.0)
      s.fail("model.dropout is " + d->dump() + "; tapml tokenizes without BPE dropout");
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    const Json* v = Source::find(model, key);
    if (v != nullptr && !s.string(*v, Source::at("model", key)).empty())
      s.fail("model." + std::string(key) + " " + quote_name(v->get_ref<const std::string&>()) +
             " is not supported");
  }
  const bool byte_fallback = s.boolean(model, "byte_fallback", "model", false);
  const bool ignore_merges = s.boolean(model, "ignore_merges", "model", false);
  // Type check only: fusing unknown tokens matters where neither byte-level pieces nor byte
  // fallback cover a character, which the two kinds read here leave to a broken vocabulary.
  s.boolean(model, "fuse_unk", "model", false);

  Normalizer norm;
  if (const Json* n = Source::find(doc, "normalizer"))
    read_normalizer_step(s, *n, "normalizer", norm);
  const PreTokenizer pre = read_pre_tokenizer(s, Source::find(doc, "pre_tokenizer"));

  Vocab v;
  v.nfc = norm.nfc;
  if (pre.kind == PreTokenizer::ByteLevel) {
    if (norm.prepend || norm.escape_spaces)
      s.fail(
          "normalizer writes spaces as \"\u2581\", which a byte-level pre_tokenizer does not "
          "expect");
    if (byte_fallback) s.fail("model.byte_fallback is set for a byte-level vocabulary");
    // llama.cpp's splits each come with their merge rule; a file that differs would be
    // tokenized differently, so it is refused rather than approximated.
    const bool split_ignores = pre.split == "llama-bpe";
    if (ignore_merges != split_ignores)
      s.fail(std::string("model.ignore_merges is ") + (ignore_merges ? "true" : "false") +
             ", but tapml runs the \"" + pre.split + "\" split " +
             (split_ignores ? "with" : "without") + " ignore_merges");
    v.model = VocabModel::Bpe;
    v.byte_level = true;
    v.pre = pre.split;
    v.space = " ";
    v.add_space_prefix = false;
  } else if (norm.escape_spaces || pre.kind == PreTokenizer::Metaspace) {
    if (norm.prepend && !norm.escape_spaces)
      s.fail("normalizer prepends \"\u2581\" without writing spaces as \"\u2581\"");
    if (norm.escape_spaces && pre.kind == PreTokenizer::Metaspace)
      s.fail("both the normalizer and the Metaspace pre_tokenizer write spaces as \"\u2581\"");
    if (!byte_fallback)
      s.fail(
          "model has SentencePiece spaces but no byte_fallback; tapml reads SentencePiece-"
          "style BPE with byte fallback");
    if (ignore_merges) s.fail("model.ignore_merges is set for a SentencePiece-style vocabulary");
    v.model = VocabModel::Spm;
    v.byte_level = false;
    v.space = kSpace;
    v.add_space_prefix = norm.prepend;
  } else {
    s.fail(
        "model BPE has neither a ByteLevel pre_tokenizer nor SentencePiece spaces (a "
        "normalizer replacing \" \" by \"\u2581\", or Metaspace); tapml cannot tell how it "
        "splits text");
  }
  if (const Json* d = Source::find(doc, "decoder")) check_decoder(s, *d, "decoder", v.byte_level);

  // The vocabulary: model.vocab's pieces, then the added tokens, by their ids.
  const Json& vocab = s.need(model, "vocab", "model");
  if (!vocab.is_object())
    s.fail("model.vocab is " + Source::article(vocab) + ", expected an object of piece: id");
  if (vocab.empty()) s.fail("model.vocab is empty");
  const Json* added_json = Source::find(doc, "added_tokens");
  if (added_json != nullptr) s.array(*added_json, "added_tokens");
  struct Added {
    std::string content;
    int id;
    bool special;
  };
  std::vector<Added> added;
  int64_t n = 0;
  for (const auto& [piece, id_json] : vocab.items())
    n = std::max<int64_t>(n, s.id(id_json, "model.vocab[" + quote_name(piece) + "]") + 1);
  if (added_json != nullptr) {
    for (size_t i = 0; i < added_json->size(); ++i) {
      const std::string at = Source::at("added_tokens", i);
      const Json& a = s.object((*added_json)[i], at);
      Added t{s.string(s.need(a, "content", at), at + ".content"),
              s.id(s.need(a, "id", at), at + ".id"), s.boolean(a, "special", at, false)};
      for (const char* key : {"single_word", "lstrip", "rstrip", "normalized"})
        s.boolean(a, key, at, false);
      if (t.content.empty()) s.fail(at + " has empty content");
      n = std::max<int64_t>(n, t.id + 1);
      added.push_back(std::move(t));
    }
  }
  const int64_t given = int64_t(vocab.size() + added.size());
  // Ids the file skips become padding; a few are normal, a sea of them is a broken file.
  if (n > 2 * given + 1024)
    s.fail("ids run up to " + std::to_string(n - 1) + " but the file gives only " +
           std::to_string(given) + " tokens");

  v.pieces.assign(size_t(n), std::string());
  v.kinds.assign(size_t(n), TokenKind::Unused);
  std::vector<char> filled(size_t(n), 0);
  std::unordered_map<std::string, int> model_ids, ids;
  model_ids.reserve(vocab.size());
  for (const auto& [piece, id_json] : vocab.items()) {
    int id = id_json.get<int>();
    if (filled[size_t(id)])
      s.fail("model.vocab gives id " + std::to_string(id) + " to both " +
             quote_name(v.pieces[size_t(id)]) + " and " + quote_name(piece));
    filled[size_t(id)] = 1;
    v.pieces[size_t(id)] = piece;
    v.kinds[size_t(id)] = TokenKind::Normal;
    model_ids.emplace(piece, id);
  }
  ids = model_ids;
  for (size_t i = 0; i < added.size(); ++i) {
    const Added& t = added[i];
    const std::string at = Source::at("added_tokens", i);
    auto known = ids.find(t.content);
    if (known != ids.end() && known->second != t.id)
      s.fail(at + " " + quote_name(t.content) + " has id " + std::to_string(t.id) +
             ", but the token already has id " + std::to_string(known->second));
    if (filled[size_t(t.id)] && v.pieces[size_t(t.id)] != t.content)
      s.fail(at + " " + quote_name(t.content) + " has id " + std::to_string(t.id) +
             ", which is already " + quote_name(v.pieces[size_t(t.id)]));
    filled[size_t(t.id)] = 1;
    v.pieces[size_t(t.id)] = t.content;
    v.kinds[size_t(t.id)] = t.special ? TokenKind::Control : TokenKind::UserDefined;
    ids.emplace(t.content, t.id);
  }
  for (size_t i = 0; i < size_t(n); ++i) {
    if (!filled[i]) v.pieces[i] = "[PAD" + std::to_string(i) + "]";
    if (v.model == VocabModel::Spm && v.kinds[i] == TokenKind::Normal &&
        byte_of_piece(v.pieces[i]) >= 0)
      v.kinds[i] = TokenKind::Byte;
  }

  // Merges, each of pieces model.vocab has, making a piece it has (as the tokenizers library
  // requires too). Byte-level BPE keeps them ranked; SentencePiece-style BPE turns the ranks
  // into scores.
  const Json& merges = s.array(s.need(model, "merges", "model"), "model.merges");
  if (v.model == VocabModel::Spm && merges.size() > kMaxScoredMerges)
    s.fail("model.merges has " + std::to_string(merges.size()) + " merges, more than the " +
           std::to_string(kMaxScoredMerges) + " tapml can rank");
  v.scores.assign(size_t(n), 0.0f);
  std::vector<char> made(size_t(n), 0);
  if (v.byte_level) v.merges.reserve(merges.size());
  std::string joined;
  for (size_t i = 0; i < merges.size(); ++i) {
    const std::string at = Source::at("model.merges", i);
    std::string_view left, right;
    if (merges[i].is_string()) {
      const std::string& m = merges[i].get_ref<const std::string&>();
      size_t sp = m.find(' ');
      if (sp == std::string::npos || m.find(' ', sp + 1) != std::string::npos)
        s.fail(at + " " + quote_name(m) + " is not two pieces separated by one space");
      left = std::string_view(m).substr(0, sp);
      right = std::string_view(m).substr(sp + 1);
    } else if (merges[i].is_array() && merges[i].size() == 2) {
      left = s.string(merges[i][0], at + "[0]");
      right = s.string(merges[i][1], at + "[1]");
    } else {
      s.fail(at + " is " + Source::article(merges[i]) +
             ", expected \"left right\" or [left, right]");
    }
    for (std::string_view side : {left, right}) {
      if (side.empty()) s.fail(at + " names an empty piece");
      if (model_ids.find(std::string(side)) == model_ids.end())
        s.fail(at + " names " + quote_name(side) + ", which model.vocab does not have");
      if (v.byte_level && side.find(' ') != std::string_view::npos)
        s.fail(at + " names " + quote_name(side) +
               ", a piece with a space, which byte-level merges cannot hold");
    }
    joined.assign(left);
    joined.append(right);
    auto result = model_ids.find(joined);
    if (result == model_ids.end())
      s.fail(at + " makes " + quote_name(joined) + ", which model.vocab does not have");
    if (v.byte_level) {
      v.merges.push_back(std::string(left) + " " + std::string(right));
    } else if (!made[size_t(result->second)]) {
      // SentencePiece merges the best-scoring pair first; the first merge that makes a piece
      // is the earliest the tokenizers library could make it.
      made[size_t(result->second)] = 1;
      v.scores[size_t(result->second)] = -float(i);
    }
  }
  if (v.model == VocabModel::Spm) {
    // A longer piece that no merge makes is never made by the tokenizers library; here it
    // would merge whenever its two halves meet, so it comes after every listed merge.
    for (size_t i = 0; i < size_t(n); ++i)
      if (!made[i] && v.kinds[i] == TokenKind::Normal && characters(v.pieces[i]) > 1)
        v.scores[i] = -float(merges.size());
  }

  // Special ids: tokenizer_config.json, then the template, then the model's own.
  Template tmpl;
  if (const Json* p = Source::find(doc, "post_processor"))
    read_template(s, *p, "post_processor", tmpl);
  for (int id : {tmpl.before, tmpl.after})
    if (id >= n)
      s.fail("post_processor adds token id " + std::to_string(id) + ", beyond the vocabulary of " +
             std::to_string(n));
  auto token_id = [&](const Source& src, const std::string& key, const std::string& content) {
    auto it = ids.find(content);
    if (it == ids.end()) src.fail(key + " " + quote_name(content) + " is not a token of " + name);
    return it->second;
  };
  auto first_known = [&](std::initializer_list<const char*> names) {
    for (const char* t : names) {
      auto it = ids.find(t);
      if (it != ids.end() && v.kinds[size_t(it->second)] == TokenKind::Control) return it->second;
    }
    return -1;
  };
  int unk = -1;
  if (const Json* u = Source::find(model, "unk_token"))
    unk = token_id(s, "model.unk_token", s.string(*u, "model.unk_token"));
  else if (auto c = config_token(cs, config, "unk_token"))
    unk = token_id(cs, "unk_token", *c);
  int bos = tmpl.before, eos = tmpl.after;
  if (auto c = config_token(cs, config, "bos_token")) bos = token_id(cs, "bos_token", *c);
  if (auto c = config_token(cs, config, "eos_token")) eos = token_id(cs, "eos_token", *c);
  if (auto c = config_token(cs, config, "pad_token")) v.pad = token_id(cs, "pad_token", *c);
  if (bos < 0) bos = first_known({"<s>", "<|begin_of_text|>", "<bos>", "<|endoftext|>"});
  if (eos < 0) eos = first_known({"</s>", "<|end_of_text|>", "<eos>", "<|endoftext|>"});

  v.add_bos = config_flag(cs, config, "add_bos_token").value_or(tmpl.before >= 0);
  v.add_eos = config_flag(cs, config, "add_eos_token").value_or(tmpl.after >= 0);
  if (v.add_bos && bos < 0) cs.fail("add_bos_token is true, but no BOS token is named");
  if (v.add_eos && eos < 0) cs.fail("add_eos_token is true, but no EOS token is named");
  // transformers rebuilds the tokenizer from tokenizer.model when add_prefix_space disagrees
  // with tokenizer.json; tapml has only tokenizer.json, so it refuses rather than differ.
  if (auto aps = config_flag(cs, config, "add_prefix_space")) {
    if (*aps != v.add_space_prefix)
      cs.fail(std::string("add_prefix_space is ") + (*aps ? "true" : "false") + ", but " + name +
              (v.add_space_prefix ? " puts" : " does not put") + " a space before the text");
  }

  // Vocabularies name no unknown, BOS or EOS token at times (GPT-2's has one token for all);
  // 0 stands in, as for GGUF files without the keys.
  if (unk >= 0 && v.kinds[size_t(unk)] == TokenKind::Control)
    v.kinds[size_t(unk)] = TokenKind::Unknown;
  v.unk = unk >= 0 ? unk : 0;
  v.bos = bos >= 0 ? bos : eos >= 0 ? eos : 0;
  v.eos = eos >= 0 ? eos : v.bos;
  auto add_eog = [&](int id) {
    if (std::find(v.eog.begin(), v.eog.end(), id) == v.eog.end()) v.eog.push_back(id);
  };
  add_eog(v.eos);
  for (size_t i = 0; i < size_t(n); ++i) {
    if (v.kinds[i] != TokenKind::Control && v.kinds[i] != TokenKind::UserDefined) continue;
    for (const char* t : kEndOfTurn)
      if (v.pieces[i] == t) add_eog(int(i));
  }
  return v;
}

Vocab load_hf_tokenizer_json(const std::string& path) {
  std::string json = read_bounded(path, kMaxJsonBytes, "tokenizer.json");
  std::string config;
  std::string config_path = config_name(path);
  std::error_code ec;
  if (std::filesystem::is_regular_file(config_path, ec))
    config = read_bounded(config_path, kMaxConfigBytes, "tokenizer_config.json");
  return parse_hf_tokenizer_json(json, config, path);
}

}  // namespace tapml
