#pragma once
// One small registry for everything chosen by name: priors, objectives, data sets, networks,
// log-Z estimators. It keeps the order entries were added in (help texts list them so),
// refuses a name added twice, and names every valid entry when asked for an unknown one.
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "common/error.h"
#include "common/text.h"

namespace vae_ebm {

template <class Entry>
class Registry {
 public:
  // `what` names the kind of entry in messages: "objective", "data set", ...
  explicit Registry(std::string what) : what_(std::move(what)) {}

  // Throws std::logic_error for a name already present: a programming error, not a user's.
  Registry& add(const std::string& name, Entry entry) {
    if (contains(name)) throw std::logic_error("the " + what_ + " registry has '" + name + "' twice");
    entries_.emplace_back(name, std::move(entry));
    return *this;
  }
  bool contains(const std::string& name) const { return find(name) != nullptr; }
  // Throws UserError (a std::invalid_argument) naming the value and the valid names.
  const Entry& at(const std::string& name) const {
    if (const Entry* e = find(name)) return *e;
    throw UserError("unknown " + what_ + " '" + name + "' (valid: " + join_names(names()) + ")");
  }
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& e : entries_) out.push_back(e.first);
    return out;
  }

 private:
  const Entry* find(const std::string& name) const {
    for (const auto& e : entries_)
      if (e.first == name) return &e.second;
    return nullptr;
  }
  std::string what_;
  std::vector<std::pair<std::string, Entry>> entries_;
};

}  // namespace vae_ebm
