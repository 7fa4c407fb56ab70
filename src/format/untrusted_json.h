// JSON read from files TapML does not control (safetensors headers, config.json, shard
// indexes). nlohmann keeps the last of two equal keys silently, so a header could name one
// tensor twice and have readers disagree on which entry counts; here a repeated key is an
// error, as the safetensors specification says. Nesting is bounded so that no later
// recursive walk (dumping, comparing) can exhaust the stack.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace tapml {

// Parses `text`, which must hold one JSON value and nothing but whitespace after it.
// Throws Error("WHERE is not valid JSON: ...", "WHERE repeats the key 'k' in 'a'.'b'",
// "WHERE nests deeper than N levels"); `where` is the file, e.g. "PATH: header" or "PATH".
template <class Json>
Json parse_untrusted_json(std::string_view text, const std::string& where, int max_depth = 64);

extern template nlohmann::json parse_untrusted_json<nlohmann::json>(std::string_view,
                                                                    const std::string&, int);
extern template nlohmann::ordered_json parse_untrusted_json<nlohmann::ordered_json>(
    std::string_view, const std::string&, int);

// `s` in single quotes on one printable line: control bytes, quotes and backslashes escaped
// (\n, \x01), longer names cut at 120 bytes with "...". For names read from files.
std::string quote_name(std::string_view s);

}  // namespace tapml
