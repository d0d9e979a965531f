#pragma once
// A small JSON writer for metrics logs and reports (writing only; keys keep their order).
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace vae_ebm {

class Json {
 public:
  static Json object();
  static Json array();
  static Json number(double v);  // NaN and infinities are written as null
  static Json integer(int64_t v);
  static Json string(const std::string& v);
  static Json boolean(bool v);

  // Object members (throws std::logic_error on a non-object).
  Json& set(const std::string& key, Json value);
  Json& set(const std::string& key, double v) { return set(key, number(v)); }
  Json& set(const std::string& key, int64_t v) { return set(key, integer(v)); }
  Json& set(const std::string& key, int v) { return set(key, integer(v)); }
  Json& set(const std::string& key, const std::string& v) { return set(key, string(v)); }
  Json& set(const std::string& key, const char* v) { return set(key, string(v)); }
  Json& set(const std::string& key, bool v) { return set(key, boolean(v)); }
  // Array elements (throws std::logic_error on a non-array).
  Json& push(Json value);

  // Compact (one line) when indent < 0, else pretty-printed.
  std::string dump(int indent = -1) const;

 private:
  enum class Kind { Object, Array, Scalar };
  Kind kind_ = Kind::Scalar;
  std::string scalar_;  // the literal text of a scalar
  std::vector<std::pair<std::string, Json>> members_;
  std::vector<Json> elements_;
  void dump_to(std::string& out, int indent, int depth) const;
};

}  // namespace vae_ebm
