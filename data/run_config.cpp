#include "data/run_config.h"

#include <algorithm>

namespace vae_ebm {

namespace {
bool is_comment(const std::string& line) { return !line.empty() && line[0] == '#'; }
// A key=value line's key ("" for any other line).
std::string key_of(const std::string& line) {
  const auto eq = line.find('=');
  return is_comment(line) || eq == std::string::npos || eq == 0 ? std::string() : line.substr(0, eq);
}
}  // namespace

RunConfig::RunConfig(const std::string& text) {
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    lines_.push_back(text.substr(start, end - start));
    start = end + 1;
  }
}

std::string RunConfig::text() const {
  std::string out;
  for (const auto& line : lines_) out += line + "\n";
  return out;
}

std::string RunConfig::value(const std::string& key) const {
  for (const auto& line : lines_)
    if (key_of(line) == key && !key.empty()) return line.substr(key.size() + 1);
  return "";
}

bool RunConfig::has(const std::string& key) const {
  return !key.empty() &&
         std::any_of(lines_.begin(), lines_.end(), [&](const std::string& line) { return key_of(line) == key; });
}

std::vector<std::pair<std::string, std::string>> RunConfig::entries() const {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& line : lines_)
    if (const auto key = key_of(line); !key.empty()) out.emplace_back(key, line.substr(key.size() + 1));
  return out;
}

std::string RunConfig::comment(const std::string& lead) const {
  const std::string prefix = "# " + lead;
  for (const auto& line : lines_)
    if (line.rfind(prefix, 0) == 0) return line.substr(2);
  return "";
}

RunConfig& RunConfig::set(const std::string& key, const std::string& value) {
  for (auto& line : lines_)
    if (key_of(line) == key) {
      line = key + "=" + value;
      return *this;
    }
  lines_.push_back(key + "=" + value);
  return *this;
}

RunConfig& RunConfig::add_comments(const std::vector<std::string>& lines) {
  auto at = std::find_if(lines_.begin(), lines_.end(), [](const std::string& line) { return !is_comment(line); });
  std::vector<std::string> comments;
  for (const auto& line : lines) comments.push_back("# " + line);
  lines_.insert(at, comments.begin(), comments.end());
  return *this;
}

}  // namespace vae_ebm
