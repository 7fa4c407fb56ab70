// JSON as text, whatever the strings inside hold: bytes that are not UTF-8 (a byte token of a
// model's vocabulary, a raw prompt, a name read from a damaged file) become U+FFFD instead of
// aborting. Every JSON document and every JSON value quoted in a message goes through here.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

namespace tapml {

template <class Json>
std::string json_text(const Json& j, int indent = -1) {
  return j.dump(indent, ' ', false, Json::error_handler_t::replace);
}

}  // namespace tapml
