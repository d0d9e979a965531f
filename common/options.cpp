#include "common/options.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>

#include "common/text.h"

namespace vae_ebm {

int64_t option_integer(const std::string& name, const std::string& text) {
  errno = 0;
  char* end = nullptr;
  const long long v = text.empty() ? 0 : std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || errno == ERANGE)
    throw OptionError(name, "expects an integer, got '" + text + "'");
  return v;
}

double option_real(const std::string& name, const std::string& text) {
  char* end = nullptr;
  const double v = text.empty() ? 0 : std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0' || !std::isfinite(v))
    throw OptionError(name, "expects a finite number, got '" + text + "'");
  return v;
}

bool option_flag(const std::string& name, const std::string& text) {
  if (text == "true" || text == "1" || text == "yes" || text == "on") return true;
  if (text == "false" || text == "0" || text == "no" || text == "off") return false;
  throw OptionError(name, "expects true or false, got '" + text + "'");
}

std::vector<int64_t> option_widths(const std::string& name, const std::string& text) {
  std::vector<int64_t> out;
  size_t start = 0;
  while (!text.empty() && start <= text.size()) {
    const size_t comma = std::min(text.find(',', start), text.size());
    const std::string item = text.substr(start, comma - start);
    errno = 0;
    char* end = nullptr;
    const long long v = item.empty() ? 0 : std::strtoll(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0' || errno == ERANGE || v < 1)
      throw OptionError(name, "expects comma-separated positive integers, got '" + text + "'");
    out.push_back(v);
    start = comma + 1;
  }
  if (out.empty()) throw OptionError(name, "expects comma-separated positive integers (at least one), got '" + text + "'");
  return out;
}

std::string option_text(int64_t value) { return std::to_string(value); }
std::string option_text(const std::vector<int64_t>& widths) {
  std::string out;
  for (auto w : widths) out += (out.empty() ? "" : ",") + std::to_string(w);
  return out;
}
std::string option_text(double value) { return shortest(value); }
std::string option_text(bool value) { return value ? "true" : "false"; }

OptionValues& OptionValues::set(const std::string& name, std::string text) {
  values_[name] = std::move(text);
  return *this;
}

const std::string* OptionValues::find(const std::string& name) const {
  auto it = values_.find(name);
  return it == values_.end() ? nullptr : &it->second;
}

}  // namespace vae_ebm
