// Prints a JSON document on stdout. Model text may hold bytes that are not UTF-8 (a byte
// token, a raw prompt); they become U+FFFD instead of aborting the output.
#pragma once
#include <cstdio>
#include <nlohmann/json.hpp>

namespace tapml::cli {

inline void print_json(const nlohmann::json& j, int indent = 1) {
  std::puts(j.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
}

}  // namespace tapml::cli
