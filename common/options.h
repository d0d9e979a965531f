#pragma once
// One declaration per option. A component declares each of its options once, in an OptionSet
// over its own typed options struct: the name (the flag without "--", and the config.ini key),
// the field it sets, and its help. The default is the struct's, written once where the field
// is. From these declarations the command line builds its flags and its help (apps/), and reads
// what the user gave as text into OptionValues; the component turns them back into its struct
// (OptionSet::read) and validates it there, naming the option in an OptionError.
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "common/error.h"

namespace vae_ebm {

enum class OptionType { integer, real, text, flag };

struct OptionSpec {
  std::string name;          // "base-samples"
  OptionType type = OptionType::text;
  std::string default_text;  // the struct's default, as a config file writes it
  std::string help;
};

// Typed values as text (OptionError naming the option for text that is not one), and back.
int64_t option_integer(const std::string& name, const std::string& text);
double option_real(const std::string& name, const std::string& text);  // finite
bool option_flag(const std::string& name, const std::string& text);    // true/false, 1/0, yes/no, on/off
// Comma-separated positive integers, at least one ("200,200,200": an MLP's hidden widths).
std::vector<int64_t> option_widths(const std::string& name, const std::string& text);
std::string option_text(int64_t value);
std::string option_text(const std::vector<int64_t>& widths);  // "200,200,200"
std::string option_text(double value);  // the shortest text that reads back the same
std::string option_text(bool value);    // "true" / "false"

// Option values by name, as text: what a command line or a config file gave. An option it does
// not hold keeps its component's default.
class OptionValues {
 public:
  OptionValues& set(const std::string& name, std::string text);
  OptionValues& set(const std::string& name, const char* text) { return set(name, std::string(text)); }
  OptionValues& set(const std::string& name, int value) { return set(name, option_text(static_cast<int64_t>(value))); }
  OptionValues& set(const std::string& name, int64_t value) { return set(name, option_text(value)); }
  OptionValues& set(const std::string& name, double value) { return set(name, option_text(value)); }
  OptionValues& set(const std::string& name, bool value) { return set(name, option_text(value)); }
  const std::string* find(const std::string& name) const;
  const std::map<std::string, std::string>& all() const { return values_; }

 private:
  std::map<std::string, std::string> values_;
};

// The options of one component, over its options struct O (default-constructed: the defaults).
template <class O>
class OptionSet {
 public:
  template <class T>
  using Field = std::function<T&(O&)>;

  OptionSet& integer(std::string name, Field<int64_t> field, std::string help) {
    return add(std::move(name), OptionType::integer, std::move(help),
               [field](O& o, const std::string& n, const std::string& t) { field(o) = option_integer(n, t); },
               [field](O& o) { return option_text(field(o)); });
  }
  OptionSet& real(std::string name, Field<double> field, std::string help) {
    return add(std::move(name), OptionType::real, std::move(help),
               [field](O& o, const std::string& n, const std::string& t) { field(o) = option_real(n, t); },
               [field](O& o) { return option_text(field(o)); });
  }
  OptionSet& text(std::string name, Field<std::string> field, std::string help) {
    return add(std::move(name), OptionType::text, std::move(help),
               [field](O& o, const std::string&, const std::string& t) { field(o) = t; },
               [field](O& o) { return field(o); });
  }
  OptionSet& widths(std::string name, Field<std::vector<int64_t>> field, std::string help) {
    return add(std::move(name), OptionType::text, std::move(help),
               [field](O& o, const std::string& n, const std::string& t) { field(o) = option_widths(n, t); },
               [field](O& o) { return option_text(field(o)); });
  }
  OptionSet& flag(std::string name, Field<bool> field, std::string help) {
    return add(std::move(name), OptionType::flag, std::move(help),
               [field](O& o, const std::string& n, const std::string& t) { field(o) = option_flag(n, t); },
               [field](O& o) { return option_text(field(o)); });
  }

  // Sets the named option of `o` from text (OptionError for text that is not of its type).
  void set(O& o, const std::string& name, const std::string& text) const {
    for (const auto& item : items_)
      if (item.spec.name == name) return item.set(o, name, text);
    throw OptionError(name, "is not one of these options");
  }
  // Each option's value in `o`, as text, by name (what a fingerprint or a record compares).
  std::map<std::string, std::string> texts(O o) const {
    std::map<std::string, std::string> out;
    for (const auto& item : items_) out[item.spec.name] = item.get(o);
    return out;
  }
  std::vector<OptionSpec> specs() const {
    std::vector<OptionSpec> out;
    for (const auto& item : items_) out.push_back(item.spec);
    return out;
  }
  // O() with every value `values` holds for one of these options set (OptionError for text
  // that is not of the option's type); values of other options are left to their owners.
  O read(const OptionValues& values) const {
    O out;
    for (const auto& item : items_)
      if (const auto* text = values.find(item.spec.name)) item.set(out, item.spec.name, *text);
    return out;
  }
 private:
  struct Item {
    OptionSpec spec;
    std::function<void(O&, const std::string&, const std::string&)> set;
    std::function<std::string(O&)> get;
  };
  OptionSet& add(std::string name, OptionType type, std::string help,
                 std::function<void(O&, const std::string&, const std::string&)> set,
                 const std::function<std::string(O&)>& default_text) {
    O defaults;
    OptionSpec spec{std::move(name), type, default_text(defaults), std::move(help)};
    items_.push_back(Item{std::move(spec), std::move(set), default_text});
    return *this;
  }
  std::vector<Item> items_;
};

}  // namespace vae_ebm
