#pragma once
// A small JSON reader for what the commands write: metrics.jsonl lines and evaluation records
// (data/json.h only writes). Objects keep their members' order; numbers are doubles, and null
// where a number is expected reads as NaN (data/json.h writes NaN and infinities as null).
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "data/error.h"

namespace vae_ebm::report {

// Malformed JSON: the message says where (line and column) and what was expected.
struct JsonError : DataError {
  using DataError::DataError;
};

class JsonValue {
 public:
  enum class Kind { Null, Boolean, Number, String, Array, Object };

  JsonValue() = default;  // null
  static JsonValue boolean(bool v);
  static JsonValue number(double v);
  static JsonValue string(std::string v);
  static JsonValue array(std::vector<JsonValue> elements);
  static JsonValue object(std::vector<std::pair<std::string, JsonValue>> members);

  Kind kind() const { return kind_; }
  bool is_null() const { return kind_ == Kind::Null; }
  bool is_number() const { return kind_ == Kind::Number; }
  bool is_string() const { return kind_ == Kind::String; }
  bool is_array() const { return kind_ == Kind::Array; }
  bool is_object() const { return kind_ == Kind::Object; }

  // The value as that kind; JsonError (naming both kinds) on another kind. as_number reads
  // null as NaN.
  bool as_bool() const;
  double as_number() const;
  const std::string& as_string() const;
  const std::vector<JsonValue>& as_array() const;
  const std::vector<std::pair<std::string, JsonValue>>& members() const;

  // An object's member, or nullptr when this is not an object or has no such key (the last
  // one when a key repeats, as most readers do).
  const JsonValue* find(const std::string& key) const;
  // Shorthands for optional fields: the member as a number (NaN when absent, null or not a
  // number) or a string (`fallback` when absent or not a string).
  double number(const std::string& key) const;
  std::string text(const std::string& key, const std::string& fallback = "") const;

 private:
  Kind kind_ = Kind::Null;
  bool boolean_ = false;
  double number_ = 0;
  std::string string_;
  std::vector<JsonValue> elements_;
  std::vector<std::pair<std::string, JsonValue>> members_;
};

// Parses one JSON text (surrounding white space allowed, nothing else after it). Throws
// JsonError naming the line (for a text of several lines) and column of the first problem,
// e.g. a truncated line: "column 40: the text ends inside an object (truncated?)".
JsonValue parse_json(const std::string& text);

// A JSON Lines file such as metrics.jsonl: one object per line, blank lines skipped.
struct JsonLines {
  std::vector<JsonValue> records;
  // Non-empty when a partial last line (no newline at its end, not valid JSON: a process
  // killed while appending it) was left out; says so for the reader of the report.
  std::string note;
};
// Throws DataError naming the file and line for a malformed line other than a partial last
// one, or a file that cannot be read.
JsonLines read_json_lines(const std::string& path);
// The same for text already read from `path` (named in messages).
JsonLines parse_json_lines(const std::string& text, const std::string& path);
// Reads and parses one JSON file; DataError naming the file.
JsonValue read_json_file(const std::string& path);
JsonValue parse_json_file(const std::string& text, const std::string& path);

}  // namespace vae_ebm::report
