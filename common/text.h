#pragma once
// Small text helpers that several layers need.
#include <string>
#include <vector>

namespace vae_ebm {

// Joins names with ", " (the lists in messages and help texts).
inline std::string join_names(const std::vector<std::string>& names, const std::string& separator = ", ") {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : separator) + n;
  return out;
}

// The first line of an exception's text: LibTorch appends a C++ stack trace to its messages.
inline std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

}  // namespace vae_ebm
