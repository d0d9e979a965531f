// The pieces of a report page (see html.h).
#include "report/html.h"

#include <cmath>
#include <cstdio>

#include "common/error.h"
#include "report/svg.h"

namespace vae_ebm::report {

std::string html_escape(const std::string& text) { return xml_escape(text); }

std::string base64(const std::string& bytes) {
  static const char* kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const uint32_t v = (static_cast<uint8_t>(bytes[i]) << 16) | (static_cast<uint8_t>(bytes[i + 1]) << 8) |
                       static_cast<uint8_t>(bytes[i + 2]);
    out += kAlphabet[v >> 18];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  if (i + 1 == bytes.size()) {
    const uint32_t v = static_cast<uint8_t>(bytes[i]) << 16;
    out += kAlphabet[v >> 18];
    out += kAlphabet[(v >> 12) & 63];
    out += "==";
  } else if (i + 2 == bytes.size()) {
    const uint32_t v = (static_cast<uint8_t>(bytes[i]) << 16) | (static_cast<uint8_t>(bytes[i + 1]) << 8);
    out += kAlphabet[v >> 18];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

std::string png_img(const std::string& png_bytes, const std::string& alt, int width) {
  return "<img class=\"grid\" alt=\"" + html_escape(alt) + "\"" +
         (width > 0 ? " width=\"" + std::to_string(width) + "\"" : std::string()) + " src=\"data:image/png;base64," +
         base64(png_bytes) + "\">";
}

std::string number_text(double value, int decimals) {
  if (!std::isfinite(value)) return std::isnan(value) ? "n/a" : (value > 0 ? "inf" : "-inf");
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%.*f", decimals, value);
  return buffer;
}

std::string with_error(double value, double std_error, int decimals) {
  if (std::isnan(std_error)) return number_text(value, decimals);
  return number_text(value, decimals) + " ± " + number_text(std_error, decimals);
}

TableFormat table_format(const std::string& name) {
  if (name == "html") return TableFormat::Html;
  if (name == "markdown") return TableFormat::Markdown;
  if (name == "latex") return TableFormat::Latex;
  throw UserError("--format must be one of html, markdown, latex, got '" + name + "'");
}

std::string Table::html() const {
  std::string out = "<table" + (id.empty() ? std::string() : " id=\"" + html_escape(id) + "\"") + ">\n";
  if (!caption.empty()) out += "<caption>" + html_escape(caption) + "</caption>\n";
  if (!header.empty()) {
    out += "<thead><tr>";
    for (size_t i = 0; i < header.size(); ++i)
      out += (i < text_columns ? "<th class=\"text\">" : "<th>") + html_escape(header[i]) + "</th>";
    out += "</tr></thead>\n";
  }
  out += "<tbody>\n";
  for (const auto& row : rows) {
    out += "<tr>";
    for (size_t i = 0; i < row.size(); ++i)
      out += (i < text_columns ? "<td class=\"text\">" : "<td>") + html_escape(row[i]) + "</td>";
    out += "</tr>\n";
  }
  return out + "</tbody></table>\n";
}

std::string Table::markdown() const {
  // A '|' inside a cell would end it; a line break would end the row.
  // HTML in a cell would be rendered by Markdown viewers: '<' and '>' go as entities (no tag
  // can form without them).
  auto cell = [](const std::string& text) {
    std::string out;
    for (const char c : text) {
      if (c == '|') out += "\\|";
      else if (c == '\n') out += ' ';
      else if (c == '<') out += "&lt;";
      else if (c == '>') out += "&gt;";
      else out += c;
    }
    return out;
  };
  std::string out;
  if (!caption.empty()) out += cell(caption) + "\n\n";
  out += "|";
  for (const auto& h : header) out += " " + cell(h) + " |";
  out += "\n|";
  for (size_t i = 0; i < header.size(); ++i) out += i < text_columns ? "---|" : "---:|";
  out += "\n";
  for (const auto& row : rows) {
    out += "|";
    for (const auto& c : row) out += " " + cell(c) + " |";
    out += "\n";
  }
  return out;
}

std::string Table::latex() const {
  auto cell = [](const std::string& text) {
    static const std::string kPlusMinus = "±";
    std::string out;
    for (size_t i = 0; i < text.size(); ++i) {
      if (text.compare(i, kPlusMinus.size(), kPlusMinus) == 0) {
        out += "$\\pm$";
        i += kPlusMinus.size() - 1;
        continue;
      }
      switch (const char c = text[i]) {
        case '&': case '%': case '$': case '#': case '_': case '{': case '}': out += std::string("\\") + c; break;
        case '~': out += "\\textasciitilde{}"; break;
        case '^': out += "\\textasciicircum{}"; break;
        case '\\': out += "\\textbackslash{}"; break;
        case '\n': out += ' '; break;
        default: out += c;
      }
    }
    return out;
  };
  std::string out = "\\begin{table}\n\\centering\n";
  if (!caption.empty()) out += "\\caption{" + cell(caption) + "}\n";
  std::string columns;
  for (size_t i = 0; i < header.size(); ++i) columns += i < text_columns ? 'l' : 'r';
  out += "\\begin{tabular}{" + columns + "}\n\\toprule\n";
  for (size_t i = 0; i < header.size(); ++i) out += (i ? " & " : "") + cell(header[i]);
  out += " \\\\\n\\midrule\n";
  for (const auto& row : rows) {
    for (size_t i = 0; i < row.size(); ++i) out += (i ? " & " : "") + cell(row[i]);
    out += " \\\\\n";
  }
  return out + "\\bottomrule\n\\end{tabular}\n\\end{table}\n";
}

std::string Table::render(TableFormat format) const {
  switch (format) {
    case TableFormat::Html: return html();
    case TableFormat::Markdown: return markdown();
    case TableFormat::Latex: return latex();
  }
  return html();
}

std::string html_page(const std::string& title, const std::string& body) {
  // Inline, so that the file needs nothing else; no script, no font, no network.
  static const char* kStyle = R"(
body { font-family: sans-serif; margin: 1.5em auto; max-width: 1120px; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 2px solid #4e79a7; padding-bottom: .2em; margin-top: 2em; }
h3 { margin-top: 1.6em; }
table { border-collapse: collapse; margin: .6em 0 1em; font-size: .92em; }
caption { text-align: left; font-weight: bold; padding: .3em 0; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: right; }
th.text, td.text { text-align: left; }
th { background: #f0f3f7; }
.figures { display: flex; flex-wrap: wrap; gap: 12px; }
figure { margin: 0 0 .6em; }
figcaption { font-size: .85em; color: #555; max-width: 520px; }
img.grid { image-rendering: pixelated; border: 1px solid #ddd; background: #fff; }
.warning { border: 2px solid #c0392b; background: #fdecea; color: #8e1b10; padding: .5em .8em; font-weight: bold; }
.note { color: #555; font-style: italic; }
pre { background: #f6f6f6; padding: .6em; overflow-x: auto; font-size: .85em; max-height: 28em; }
ul.events li { margin: .2em 0; }
nav a { margin-right: 1em; }
)";
  return "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>" + html_escape(title) +
         "</title>\n<style>" + kStyle + "</style>\n</head>\n<body>\n" + body + "</body>\n</html>\n";
}

}  // namespace vae_ebm::report
