#pragma once
// config.ini: a run's resolved configuration, and the one place its format is read and written
// (the commands, rollback, resume and `report`). Comment lines ("# ...") come first: what wrote
// it, how to repeat it, the data's fingerprint ("# data: ..."), the BLAS kernel; then one
// key=value line per flag, in the order written. The commands read the keys into their flags
// with Boost.Program_options (apps/cli.cpp), which takes the same syntax; every other reader and
// editor goes through this class. Lines it does not recognise (blank ones, a hand-edited file's
// stray text) are kept as they are.
#include <string>
#include <utility>
#include <vector>

namespace vae_ebm {

class RunConfig {
 public:
  RunConfig() = default;
  explicit RunConfig(const std::string& text);

  // The file's text: every line as read or set, each ending in a newline.
  std::string text() const;
  // The value of the key's first line ("" when absent), and whether there is one.
  std::string value(const std::string& key) const;
  bool has(const std::string& key) const;
  // Every key=value line, in order.
  std::vector<std::pair<std::string, std::string>> entries() const;
  // The first comment line that begins with `lead` after "# " (without the "# "), or "".
  std::string comment(const std::string& lead) const;

  // Sets the key's first line to key=value, or adds that line at the end.
  RunConfig& set(const std::string& key, const std::string& value);
  // Adds "# LINE" lines after the leading comment lines.
  RunConfig& add_comments(const std::vector<std::string>& lines);

 private:
  std::vector<std::string> lines_;
};

}  // namespace vae_ebm
