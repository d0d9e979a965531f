#pragma once
// The pieces of a report page: escaping, images as data: URIs, tables that print as HTML,
// Markdown or LaTeX, and the page around the sections (its style sheet inline, so that the
// file needs nothing else).
#include <string>
#include <vector>

namespace vae_ebm::report {

// &, <, >, " and ' as entities (the same as xml_escape).
std::string html_escape(const std::string& text);
// Standard base64 with padding (RFC 4648).
std::string base64(const std::string& bytes);
// <img> of PNG bytes as a data: URI; `alt` is escaped, `width` in CSS pixels (0: natural).
std::string png_img(const std::string& png_bytes, const std::string& alt, int width = 0);

// "-98.806 ± 0.284": a value and its standard error with `decimals` decimals; "n/a" for NaN.
std::string with_error(double value, double std_error, int decimals = 3);
// A number with `decimals` decimals, "n/a" for NaN.
std::string number_text(double value, int decimals = 3);

enum class TableFormat { Html, Markdown, Latex };
// "html" | "markdown" | "latex"; UserError listing them for anything else.
TableFormat table_format(const std::string& name);

// A table of plain-text cells (each format escapes them as it needs). In LaTeX, " ± " becomes
// $\pm$ and the table is a booktabs tabular (\usepackage{booktabs}).
struct Table {
  std::string caption;
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
  std::string id;  // HTML: the table's id attribute (optional)
  size_t text_columns = 1;  // the first columns hold text (aligned left), the others numbers (right)

  std::string html() const;
  std::string markdown() const;
  std::string latex() const;
  std::string render(TableFormat format) const;
};

// A whole HTML page: the title, the style sheet and the body given.
std::string html_page(const std::string& title, const std::string& body);

}  // namespace vae_ebm::report
