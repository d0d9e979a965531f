// Charts as inline SVG (see svg.h).
#include "report/svg.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

namespace vae_ebm::report {

namespace {

constexpr int kLegendRow = 16;

std::string px(double v) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.1f", v);
  return buffer;
}

bool finite(double v) { return std::isfinite(v); }

// Legend entries as drawn: a swatch, a gap and the name, about 6.5 pixels per character.
double legend_entry_width(const Series& s) { return 30 + 6.5 * static_cast<double>(s.name.size()) + 14; }

}  // namespace

std::string palette_colour(size_t i) {
  // Tableau 10: distinguishable, and readable on white.
  static const char* kColours[] = {"#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
                                   "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"};
  return kColours[i % 10];
}

std::string xml_escape(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

std::vector<double> nice_ticks(double lo, double hi, int target) {
  if (!finite(lo) || !finite(hi) || hi < lo) return {0, 1};
  if (hi == lo) {
    const double pad = lo == 0 ? 1 : std::abs(lo) * 0.05;
    lo -= pad;
    hi += pad;
  }
  const double rough = (hi - lo) / std::max(1, target);
  const double magnitude = std::pow(10.0, std::floor(std::log10(rough)));
  const double normalised = rough / magnitude;
  const double step = magnitude * (normalised < 1.5 ? 1 : normalised < 3 ? 2 : normalised < 7 ? 5 : 10);
  const double first = std::floor(lo / step + 1e-9) * step;
  const double last = std::ceil(hi / step - 1e-9) * step;
  std::vector<double> ticks;
  for (int i = 0;; ++i) {
    double v = first + i * step;  // from the start each time: no accumulated rounding
    if (std::abs(v) < step * 1e-9) v = 0;
    ticks.push_back(v);
    if (v >= last - step * 1e-9 || i > 1000) break;
  }
  if (ticks.size() < 2) ticks.push_back(first + step);
  return ticks;
}

std::string tick_label(double v, double step) {
  char buffer[48];
  if (std::abs(v) >= 1e6 || (step > 0 && step < 1e-4)) {
    std::snprintf(buffer, sizeof buffer, "%.3g", v);
  } else {
    const int decimals = step > 0 ? std::max(0, static_cast<int>(-std::floor(std::log10(step) + 1e-9))) : 0;
    std::snprintf(buffer, sizeof buffer, "%.*f", decimals, v);
  }
  return buffer;
}

Chart::Chart(std::string title, std::string x_label, std::string y_label)
    : title_(std::move(title)), x_label_(std::move(x_label)), y_label_(std::move(y_label)) {}

Chart& Chart::add(Series series) {
  if (series.colour.empty()) series.colour = palette_colour(series_.size());
  series_.push_back(std::move(series));
  return *this;
}

Chart& Chart::size(int width, int height) {
  width_ = width;
  height_ = height;
  return *this;
}

bool Chart::empty() const {
  for (const auto& s : series_)
    for (size_t i = 0; i < std::min(s.x.size(), s.y.size()); ++i)
      if (finite(s.x[i]) && finite(s.y[i])) return false;
  return true;
}

Scale Chart::fit(bool x_axis) const {
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  auto take = [&](double v) {
    if (finite(v)) lo = std::min(lo, v), hi = std::max(hi, v);
  };
  for (const auto& s : series_) {
    const size_t n = std::min(s.x.size(), s.y.size());
    for (size_t i = 0; i < n; ++i) {
      if (!finite(s.x[i]) || !finite(s.y[i])) continue;
      if (x_axis) {
        take(s.x[i]);
      } else {
        take(s.y[i]);
        if (i < s.band_low.size()) take(s.band_low[i]);
        if (i < s.band_high.size()) take(s.band_high[i]);
      }
    }
  }
  Scale scale;
  scale.ticks = finite(lo) ? nice_ticks(lo, hi) : std::vector<double>{0, 1};
  scale.lo = scale.ticks.front();
  scale.hi = scale.ticks.back();
  if (x_axis) {
    scale.px_lo = kLeft;
    scale.px_hi = width_ - kRight;
  } else {
    scale.px_lo = height_ - kBottom;  // y grows upwards
    scale.px_hi = kTop;
  }
  return scale;
}

Scale Chart::x_scale() const { return fit(true); }
Scale Chart::y_scale() const { return fit(false); }

int Chart::legend_rows() const {
  int rows = 0;
  double used = 0;
  const double room = width_ - kLeft - kRight;
  for (const auto& s : series_) {
    if (s.name.empty()) continue;
    const double w = legend_entry_width(s);
    if (rows == 0 || used + w > room) {
      ++rows;
      used = 0;
    }
    used += w;
  }
  return rows;
}

std::string Chart::svg() const {
  const Scale xs = x_scale(), ys = y_scale();
  const int total_height = height_ + legend_rows() * kLegendRow + (legend_rows() ? 4 : 0);
  std::string out;
  out += "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" width=\"" + std::to_string(width_) +
         "\" height=\"" + std::to_string(total_height) + "\" viewBox=\"0 0 " + std::to_string(width_) + " " +
         std::to_string(total_height) + "\" role=\"img\" aria-label=\"" + xml_escape(title_) +
         "\" font-family=\"sans-serif\" font-size=\"11\">\n";
  out += "<title>" + xml_escape(title_) + "</title>\n";
  out += "<rect width=\"100%\" height=\"100%\" fill=\"#fff\"/>\n";
  out += "<text x=\"" + px(width_ / 2.0) + "\" y=\"18\" text-anchor=\"middle\" font-size=\"13\" font-weight=\"bold\">" +
         xml_escape(title_) + "</text>\n";

  // Grid lines and tick labels.
  const double x_step = xs.ticks.size() > 1 ? xs.ticks[1] - xs.ticks[0] : 1;
  const double y_step = ys.ticks.size() > 1 ? ys.ticks[1] - ys.ticks[0] : 1;
  out += "<g stroke=\"#e4e4e4\" stroke-width=\"1\">\n";
  for (double t : xs.ticks)
    out += "<line x1=\"" + px(xs(t)) + "\" y1=\"" + px(ys.px_hi) + "\" x2=\"" + px(xs(t)) + "\" y2=\"" + px(ys.px_lo) + "\"/>\n";
  for (double t : ys.ticks)
    out += "<line x1=\"" + px(xs.px_lo) + "\" y1=\"" + px(ys(t)) + "\" x2=\"" + px(xs.px_hi) + "\" y2=\"" + px(ys(t)) + "\"/>\n";
  out += "</g>\n<g fill=\"#333\">\n";
  for (double t : xs.ticks)
    out += "<text x=\"" + px(xs(t)) + "\" y=\"" + px(ys.px_lo + 14) + "\" text-anchor=\"middle\">" +
           xml_escape(tick_label(t, x_step)) + "</text>\n";
  for (double t : ys.ticks)
    out += "<text x=\"" + px(xs.px_lo - 5) + "\" y=\"" + px(ys(t) + 4) + "\" text-anchor=\"end\">" +
           xml_escape(tick_label(t, y_step)) + "</text>\n";
  out += "</g>\n";
  // Axes and their labels.
  out += "<path d=\"M" + px(xs.px_lo) + " " + px(ys.px_hi) + "V" + px(ys.px_lo) + "H" + px(xs.px_hi) +
         "\" fill=\"none\" stroke=\"#333\"/>\n";
  out += "<text x=\"" + px((xs.px_lo + xs.px_hi) / 2) + "\" y=\"" + px(ys.px_lo + 32) + "\" text-anchor=\"middle\">" +
         xml_escape(x_label_) + "</text>\n";
  out += "<text transform=\"translate(14 " + px((ys.px_lo + ys.px_hi) / 2) + ") rotate(-90)\" text-anchor=\"middle\">" +
         xml_escape(y_label_) + "</text>\n";

  // Bands first, under every line.
  for (const auto& s : series_) {
    const size_t n = std::min({s.x.size(), s.y.size(), s.band_low.size(), s.band_high.size()});
    std::string upper, lower;  // the band's outline: along the top, then back along the bottom
    std::vector<std::pair<double, double>> bottom;
    for (size_t i = 0; i < n; ++i) {
      if (!finite(s.x[i]) || !finite(s.band_low[i]) || !finite(s.band_high[i])) continue;
      upper += (upper.empty() ? "M" : "L") + px(xs(s.x[i])) + " " + px(ys(s.band_high[i]));
      bottom.emplace_back(xs(s.x[i]), ys(s.band_low[i]));
    }
    if (bottom.empty()) continue;
    for (auto it = bottom.rbegin(); it != bottom.rend(); ++it) lower += "L" + px(it->first) + " " + px(it->second);
    out += "<path class=\"band\" d=\"" + upper + lower + "Z\" fill=\"" + s.colour + "\" fill-opacity=\"0.2\" stroke=\"none\"/>\n";
  }
  for (const auto& s : series_) {
    const size_t n = std::min(s.x.size(), s.y.size());
    if (s.line) {
      std::string d;
      bool pen_down = false;
      for (size_t i = 0; i < n; ++i) {
        if (!finite(s.x[i]) || !finite(s.y[i])) {
          pen_down = false;  // a gap where the value is missing
          continue;
        }
        d += (pen_down ? "L" : "M") + px(xs(s.x[i])) + " " + px(ys(s.y[i]));
        pen_down = true;
      }
      if (!d.empty())
        out += "<path class=\"line\" d=\"" + d + "\" fill=\"none\" stroke=\"" + s.colour +
               "\" stroke-width=\"1.6\" stroke-linejoin=\"round\"/>\n";
    }
    if (s.markers) {
      out += "<g fill=\"" + s.colour + "\"" + (s.line ? "" : " fill-opacity=\"0.65\"") + ">";
      for (size_t i = 0; i < n; ++i)
        if (finite(s.x[i]) && finite(s.y[i]))
          out += "<circle cx=\"" + px(xs(s.x[i])) + "\" cy=\"" + px(ys(s.y[i])) + "\" r=\"" + px(s.marker_radius) + "\"/>";
      out += "</g>\n";
    }
  }

  // Legend: entries flow in rows under the x-axis label.
  double x = kLeft, y = height_ + 8;
  bool first = true;
  for (const auto& s : series_) {
    if (s.name.empty()) continue;
    const double w = legend_entry_width(s);
    if (first || x + w > width_ - kRight) {
      x = kLeft;
      y += first ? 0 : kLegendRow;
      first = false;
    }
    if (!s.band_low.empty())
      out += "<rect x=\"" + px(x) + "\" y=\"" + px(y - 5) + "\" width=\"22\" height=\"10\" fill=\"" + s.colour +
             "\" fill-opacity=\"0.2\"/>";
    if (s.line)
      out += "<line x1=\"" + px(x) + "\" y1=\"" + px(y) + "\" x2=\"" + px(x + 22) + "\" y2=\"" + px(y) + "\" stroke=\"" +
             s.colour + "\" stroke-width=\"2\"/>";
    if (s.markers) out += "<circle cx=\"" + px(x + 11) + "\" cy=\"" + px(y) + "\" r=\"3\" fill=\"" + s.colour + "\"/>";
    out += "<text x=\"" + px(x + 28) + "\" y=\"" + px(y + 4) + "\">" + xml_escape(s.name) + "</text>\n";
    x += w;
  }
  out += "</svg>\n";
  return out;
}

}  // namespace vae_ebm::report
