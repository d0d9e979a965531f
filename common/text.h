#pragma once
// Small text helpers that several layers need.
#include <cstdlib>
#include <sstream>
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

// The shortest text that reads back as the same double (strtod, not stod: a subnormal value
// reads back with ERANGE, which stod throws as "stod").
inline std::string shortest(double v) {
  for (int precision = 6; precision <= 17; ++precision) {
    std::ostringstream s;
    s.precision(precision);
    s << v;
    if (std::strtod(s.str().c_str(), nullptr) == v) return s.str();
  }
  return std::to_string(v);
}

}  // namespace vae_ebm
