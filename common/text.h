#pragma once
// Small text helpers that several layers need.
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <algorithm>
#include <string>
#include <vector>

namespace vae_ebm {

// Joins names with ", " (the lists in messages and help texts).
inline std::string join_names(const std::vector<std::string>& names, const std::string& separator = ", ") {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : separator) + n;
  return out;
}

// An exception's text without the C++ backtrace LibTorch appends ("Exception raised from ..."
// and "frame #N: ..." lines, 12 or more of them for an allocation that failed).
inline std::string without_backtrace(const std::string& text) {
  size_t cut = text.size();
  for (const char* marker : {"\nException raised from", "\nframe #"}) cut = std::min(cut, text.find(marker));
  return text.substr(0, cut);
}

// A number as printf's %g writes it (six significant digits), for messages.
inline std::string short_number(double v) {
  char text[32];
  std::snprintf(text, sizeof text, "%g", v);
  return text;
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
