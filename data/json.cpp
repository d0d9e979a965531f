// A small JSON writer (see json.h).
#include "data/json.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>

namespace vae_ebm {
namespace {

std::string format_double(double v) {
  if (!std::isfinite(v)) return "null";
  char buffer[40];
  // The shortest of %.15g, %.16g, %.17g that reads back as the same double.
  for (int precision = 15; precision <= 17; ++precision) {
    std::snprintf(buffer, sizeof buffer, "%.*g", precision, v);
    if (precision == 17 || std::strtod(buffer, nullptr) == v) break;
  }
  return buffer;
}

std::string quote(const std::string& s) {
  std::string out;
  out.reserve(s.size() + 2);
  out.push_back('"');
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          char buffer[8];
          std::snprintf(buffer, sizeof buffer, "\\u%04x", static_cast<unsigned>(c));
          out += buffer;
        } else {
          out.push_back(ch);  // UTF-8 bytes pass through unchanged
        }
    }
  }
  out.push_back('"');
  return out;
}

void newline(std::string& out, int indent, int depth) {
  out.push_back('\n');
  out.append(static_cast<size_t>(indent) * static_cast<size_t>(depth), ' ');
}

}  // namespace

Json Json::object() {
  Json j;
  j.kind_ = Kind::Object;
  return j;
}

Json Json::array() {
  Json j;
  j.kind_ = Kind::Array;
  return j;
}

Json Json::number(double v) {
  Json j;
  j.scalar_ = format_double(v);
  return j;
}

Json Json::integer(int64_t v) {
  Json j;
  j.scalar_ = std::to_string(v);
  return j;
}

Json Json::string(const std::string& v) {
  Json j;
  j.scalar_ = quote(v);
  return j;
}

Json Json::boolean(bool v) {
  Json j;
  j.scalar_ = v ? "true" : "false";
  return j;
}

Json& Json::set(const std::string& key, Json value) {
  if (kind_ != Kind::Object) throw std::logic_error("Json::set(\"" + key + "\") on a non-object");
  for (auto& member : members_) {
    if (member.first == key) {  // a repeated key replaces the value in place
      member.second = std::move(value);
      return *this;
    }
  }
  members_.emplace_back(key, std::move(value));
  return *this;
}

Json& Json::push(Json value) {
  if (kind_ != Kind::Array) throw std::logic_error("Json::push on a non-array");
  elements_.push_back(std::move(value));
  return *this;
}

std::string Json::dump(int indent) const {
  std::string out;
  dump_to(out, indent, 0);
  return out;
}

void Json::dump_to(std::string& out, int indent, int depth) const {
  const bool pretty = indent >= 0;
  switch (kind_) {
    case Kind::Scalar:
      out += scalar_.empty() ? "null" : scalar_;  // a default-constructed Json is null
      return;
    case Kind::Object: {
      out.push_back('{');
      if (members_.empty()) {
        out.push_back('}');
        return;
      }
      bool first = true;
      for (const auto& [key, value] : members_) {
        if (!first) out.push_back(',');
        first = false;
        if (pretty) newline(out, indent, depth + 1);
        out += quote(key);
        out += pretty ? ": " : ":";
        value.dump_to(out, indent, depth + 1);
      }
      if (pretty) newline(out, indent, depth);
      out.push_back('}');
      return;
    }
    case Kind::Array: {
      out.push_back('[');
      if (elements_.empty()) {
        out.push_back(']');
        return;
      }
      bool first = true;
      for (const auto& value : elements_) {
        if (!first) out.push_back(',');
        first = false;
        if (pretty) newline(out, indent, depth + 1);
        value.dump_to(out, indent, depth + 1);
      }
      if (pretty) newline(out, indent, depth);
      out.push_back(']');
      return;
    }
  }
}

}  // namespace vae_ebm
