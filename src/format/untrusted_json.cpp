#include "format/untrusted_json.h"

#include <cstdio>
#include <unordered_set>
#include <vector>

#include "core/error.h"

namespace tapml {

namespace {

// One open object or array while parsing: the keys an object has had so far, and the
// latest of them, so a message can say where in the document a key repeats.
struct Level {
  bool object = false;
  std::string key;
  std::unordered_set<std::string> keys;
};

std::string location(const std::vector<Level>& stack) {
  std::string out;
  for (size_t i = 0; i + 1 < stack.size(); ++i) {
    if (!stack[i].object) continue;
    out += out.empty() ? " in " : ".";
    out += quote_name(stack[i].key);
  }
  return out;
}

// nlohmann's messages start with "[json.exception.parse_error.101] " and may quote raw
// bytes of the input, even bytes that are not UTF-8; keep what they say, on one line of
// ASCII.
std::string parse_problem(const std::string& what) {
  std::string s = what;
  if (s.rfind("[json.exception.", 0) == 0) {
    size_t end = s.find("] ");
    if (end != std::string::npos) s = s.substr(end + 2);
  }
  for (char& c : s)
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) c = '?';
  return s;
}

}  // namespace

template <class Json>
Json parse_untrusted_json(std::string_view text, const std::string& where, int max_depth) {
  std::vector<Level> stack;
  using Event = typename Json::parse_event_t;
  typename Json::parser_callback_t check = [&](int, Event event, Json& parsed) {
    switch (event) {
      case Event::object_start:
      case Event::array_start:
        if (stack.size() >= size_t(max_depth))
          throw Error(where + " nests deeper than " + std::to_string(max_depth) + " levels");
        stack.push_back({event == Event::object_start, {}, {}});
        break;
      case Event::key: {
        Level& top = stack.back();
        const std::string& key = parsed.template get_ref<const std::string&>();
        if (!top.keys.insert(key).second)
          throw Error(where + " repeats the key " + quote_name(key) + location(stack));
        top.key = key;
        break;
      }
      case Event::object_end:
      case Event::array_end:
        stack.pop_back();
        break;
      case Event::value:
        break;
    }
    return true;
  };
  try {
    return Json::parse(text.begin(), text.end(), check);
  } catch (const nlohmann::json::exception& e) {
    throw Error(where + " is not valid JSON: " + parse_problem(e.what()));
  }
}

template nlohmann::json parse_untrusted_json<nlohmann::json>(std::string_view, const std::string&,
                                                             int);
template nlohmann::ordered_json parse_untrusted_json<nlohmann::ordered_json>(std::string_view,
                                                                             const std::string&,
                                                                             int);

std::string quote_name(std::string_view s) {
  constexpr size_t kShown = 120;
  size_t n = s.size();
  bool cut = n > kShown;
  if (cut) {
    n = kShown;
    // Back up to the start of a UTF-8 sequence so the message stays valid UTF-8.
    while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xc0) == 0x80) --n;
  }
  std::string out = "'";
  for (size_t i = 0; i < n; ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '\'' || c == '\\') {
      out += '\\';
      out += char(c);
    } else if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += char(c);
    }
  }
  if (cut) out += "...";
  return out + "'";
}

}  // namespace tapml
