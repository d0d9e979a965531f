// A small JSON reader (see json_read.h): recursive descent over the text, with the position
// of every problem in its message.
#include "report/json_read.h"

#include <charconv>
#include <cmath>
#include <limits>

#include "data/files.h"

namespace vae_ebm::report {

namespace {

const char* kind_name(JsonValue::Kind kind) {
  switch (kind) {
    case JsonValue::Kind::Null: return "null";
    case JsonValue::Kind::Boolean: return "a boolean";
    case JsonValue::Kind::Number: return "a number";
    case JsonValue::Kind::String: return "a string";
    case JsonValue::Kind::Array: return "an array";
    case JsonValue::Kind::Object: return "an object";
  }
  return "?";
}

// Deep nesting would exhaust the stack of a recursive reader; no record of ours nests past 4.
constexpr int kMaxDepth = 256;

class Parser {
 public:
  explicit Parser(const std::string& text) : text_(text) {}

  JsonValue document() {
    skip_space();
    JsonValue v = value(0);
    skip_space();
    if (pos_ < text_.size()) fail("unexpected '" + std::string(1, text_[pos_]) + "' after the value");
    return v;
  }

 private:
  const std::string& text_;
  size_t pos_ = 0;

  [[noreturn]] void fail(const std::string& what) const {
    size_t line = 1, column = 1;
    for (size_t i = 0; i < pos_ && i < text_.size(); ++i) {
      if (text_[i] == '\n') {
        ++line;
        column = 1;
      } else {
        ++column;
      }
    }
    // One-line texts (a metrics.jsonl line) need only the column.
    const std::string where = text_.find('\n') == std::string::npos
                                  ? "column " + std::to_string(column)
                                  : "line " + std::to_string(line) + ", column " + std::to_string(column);
    throw JsonError(where + ": " + what);
  }
  [[noreturn]] void truncated(const char* inside) const {
    fail(std::string("the text ends inside ") + inside + " (truncated?)");
  }

  bool at_end() const { return pos_ >= text_.size(); }
  void skip_space() {
    while (!at_end() && (text_[pos_] == ' ' || text_[pos_] == '\t' || text_[pos_] == '\n' || text_[pos_] == '\r'))
      ++pos_;
  }
  void expect_literal(const char* word, const char* inside) {
    const size_t start = pos_;
    for (const char* c = word; *c; ++c, ++pos_) {
      if (at_end()) truncated(inside);
      if (text_[pos_] != *c) {
        pos_ = start;  // the error points at the word, not at its first wrong letter
        fail(std::string("expected '") + word + "'");
      }
    }
  }

  JsonValue value(int depth) {
    if (depth > kMaxDepth) fail("nested deeper than " + std::to_string(kMaxDepth) + " levels");
    if (at_end()) truncated("a value");
    const char c = text_[pos_];
    if (c == '{') return object(depth);
    if (c == '[') return array(depth);
    if (c == '"') return JsonValue::string(string());
    if (c == 't') return expect_literal("true", "'true'"), JsonValue::boolean(true);
    if (c == 'f') return expect_literal("false", "'false'"), JsonValue::boolean(false);
    if (c == 'n') return expect_literal("null", "'null'"), JsonValue();
    if (c == '-' || (c >= '0' && c <= '9')) return JsonValue::number(number());
    fail("expected a value, found '" + std::string(1, c) + "'");
  }

  JsonValue object(int depth) {
    ++pos_;  // '{'
    std::vector<std::pair<std::string, JsonValue>> members;
    skip_space();
    if (at_end()) truncated("an object");
    if (text_[pos_] == '}') return ++pos_, JsonValue::object(std::move(members));
    for (;;) {
      skip_space();
      if (at_end()) truncated("an object");
      if (text_[pos_] != '"') fail("expected a key (a string) in an object");
      std::string key = string();
      skip_space();
      if (at_end()) truncated("an object");
      if (text_[pos_] != ':') fail("expected ':' after the key \"" + key + "\"");
      ++pos_;
      skip_space();
      if (at_end()) truncated("an object");
      JsonValue v = value(depth + 1);
      members.emplace_back(std::move(key), std::move(v));
      skip_space();
      if (at_end()) truncated("an object");
      if (text_[pos_] == '}') return ++pos_, JsonValue::object(std::move(members));
      if (text_[pos_] != ',') fail("expected ',' or '}' in an object");
      ++pos_;
    }
  }

  JsonValue array(int depth) {
    ++pos_;  // '['
    std::vector<JsonValue> elements;
    skip_space();
    if (at_end()) truncated("an array");
    if (text_[pos_] == ']') return ++pos_, JsonValue::array(std::move(elements));
    for (;;) {
      skip_space();
      if (at_end()) truncated("an array");
      elements.push_back(value(depth + 1));
      skip_space();
      if (at_end()) truncated("an array");
      if (text_[pos_] == ']') return ++pos_, JsonValue::array(std::move(elements));
      if (text_[pos_] != ',') fail("expected ',' or ']' in an array");
      ++pos_;
    }
  }

  static void append_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  uint32_t hex4() {
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i, ++pos_) {
      if (at_end()) truncated("a \\u escape");
      const char c = text_[pos_];
      v <<= 4;
      if (c >= '0' && c <= '9') v |= static_cast<uint32_t>(c - '0');
      else if (c >= 'a' && c <= 'f') v |= static_cast<uint32_t>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') v |= static_cast<uint32_t>(c - 'A' + 10);
      else fail("expected four hex digits after \\u");
    }
    return v;
  }

  std::string string() {
    ++pos_;  // '"'
    std::string out;
    for (;;) {
      if (at_end()) truncated("a string");
      const char c = text_[pos_];
      if (c == '"') return ++pos_, out;
      if (static_cast<unsigned char>(c) < 0x20) fail("a control character inside a string (escape it)");
      if (c != '\\') {
        out += c;
        ++pos_;
        continue;
      }
      ++pos_;
      if (at_end()) truncated("a string");
      const char e = text_[pos_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          uint32_t cp = hex4();
          // A UTF-16 surrogate pair is one character; a lone half becomes U+FFFD.
          if (cp >= 0xD800 && cp < 0xDC00 && pos_ + 1 < text_.size() && text_[pos_] == '\\' && text_[pos_ + 1] == 'u') {
            const size_t save = pos_;
            pos_ += 2;
            const uint32_t low = hex4();
            if (low >= 0xDC00 && low < 0xE000) {
              cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
            } else {
              pos_ = save;
              cp = 0xFFFD;
            }
          } else if (cp >= 0xD800 && cp < 0xE000) {
            cp = 0xFFFD;
          }
          append_utf8(out, cp);
          break;
        }
        default:
          --pos_;
          fail("unknown escape '\\" + std::string(1, e) + "' in a string");
      }
    }
  }

  double number() {
    // JSON's grammar: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
    const size_t start = pos_;
    auto digits = [&] {
      const size_t from = pos_;
      while (!at_end() && text_[pos_] >= '0' && text_[pos_] <= '9') ++pos_;
      return pos_ - from;
    };
    if (text_[pos_] == '-') ++pos_;
    if (at_end()) truncated("a number");
    if (text_[pos_] == '0') {
      ++pos_;
    } else if (digits() == 0) {
      fail("expected a digit in a number");
    }
    if (!at_end() && text_[pos_] == '.') {
      ++pos_;
      if (digits() == 0) at_end() ? truncated("a number") : fail("expected a digit after '.' in a number");
    }
    if (!at_end() && (text_[pos_] == 'e' || text_[pos_] == 'E')) {
      ++pos_;
      if (!at_end() && (text_[pos_] == '+' || text_[pos_] == '-')) ++pos_;
      if (digits() == 0) at_end() ? truncated("a number") : fail("expected a digit in a number's exponent");
    }
    // from_chars, unlike strtod, does not depend on the locale's decimal point.
    double v = 0;
    const auto result = std::from_chars(text_.data() + start, text_.data() + pos_, v);
    if (result.ec == std::errc::result_out_of_range) {
      // Beyond double's range: infinity (or 0 for an underflow), as strtod would give.
      const bool negative = text_[start] == '-';
      const auto e = text_.find_first_of("eE", start);
      const bool tiny = e < pos_ && text_[e + 1] == '-';
      return tiny ? (negative ? -0.0 : 0.0)
                  : (negative ? -std::numeric_limits<double>::infinity() : std::numeric_limits<double>::infinity());
    }
    if (result.ec != std::errc()) fail("not a number");
    return v;
  }
};

}  // namespace

JsonValue JsonValue::boolean(bool v) {
  JsonValue j;
  j.kind_ = Kind::Boolean;
  j.boolean_ = v;
  return j;
}
JsonValue JsonValue::number(double v) {
  JsonValue j;
  j.kind_ = Kind::Number;
  j.number_ = v;
  return j;
}
JsonValue JsonValue::string(std::string v) {
  JsonValue j;
  j.kind_ = Kind::String;
  j.string_ = std::move(v);
  return j;
}
JsonValue JsonValue::array(std::vector<JsonValue> elements) {
  JsonValue j;
  j.kind_ = Kind::Array;
  j.elements_ = std::move(elements);
  return j;
}
JsonValue JsonValue::object(std::vector<std::pair<std::string, JsonValue>> members) {
  JsonValue j;
  j.kind_ = Kind::Object;
  j.members_ = std::move(members);
  return j;
}

static void require(const JsonValue& v, JsonValue::Kind want) {
  if (v.kind() != want)
    throw JsonError(std::string("expected ") + kind_name(want) + ", found " + kind_name(v.kind()));
}

bool JsonValue::as_bool() const {
  require(*this, Kind::Boolean);
  return boolean_;
}
double JsonValue::as_number() const {
  if (kind_ == Kind::Null) return std::numeric_limits<double>::quiet_NaN();
  require(*this, Kind::Number);
  return number_;
}
const std::string& JsonValue::as_string() const {
  require(*this, Kind::String);
  return string_;
}
const std::vector<JsonValue>& JsonValue::as_array() const {
  require(*this, Kind::Array);
  return elements_;
}
const std::vector<std::pair<std::string, JsonValue>>& JsonValue::members() const {
  require(*this, Kind::Object);
  return members_;
}

const JsonValue* JsonValue::find(const std::string& key) const {
  if (kind_ != Kind::Object) return nullptr;
  for (auto it = members_.rbegin(); it != members_.rend(); ++it)
    if (it->first == key) return &it->second;
  return nullptr;
}

double JsonValue::number(const std::string& key) const {
  const JsonValue* v = find(key);
  return v && v->is_number() ? v->number_ : std::numeric_limits<double>::quiet_NaN();
}

std::string JsonValue::text(const std::string& key, const std::string& fallback) const {
  const JsonValue* v = find(key);
  return v && v->is_string() ? v->string_ : fallback;
}

JsonValue parse_json(const std::string& text) { return Parser(text).document(); }

JsonLines read_json_lines(const std::string& path) { return parse_json_lines(read_file(path), path); }

JsonLines parse_json_lines(const std::string& text, const std::string& path) {
  JsonLines out;
  size_t start = 0;
  int64_t line_number = 0;
  while (start < text.size()) {
    ++line_number;
    const size_t end = text.find('\n', start);
    const bool last_without_newline = end == std::string::npos;
    const std::string line = text.substr(start, last_without_newline ? std::string::npos : end - start);
    start = last_without_newline ? text.size() : end + 1;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    try {
      out.records.push_back(parse_json(line));
    } catch (const JsonError& e) {
      if (last_without_newline) {
        out.note = path + ": the last line (" + std::to_string(line_number) +
                   ") is incomplete, left out (a process stopped while writing it; train --resume removes it)";
        break;
      }
      throw DataError(path + ": line " + std::to_string(line_number) + " is not valid JSON: " + e.what());
    }
  }
  return out;
}

JsonValue read_json_file(const std::string& path) { return parse_json_file(read_file(path), path); }

JsonValue parse_json_file(const std::string& text, const std::string& path) {
  try {
    return parse_json(text);
  } catch (const JsonError& e) {
    throw DataError(path + " is not valid JSON: " + e.what());
  }
}

}  // namespace vae_ebm::report
