#pragma once
// Charts as inline SVG, drawn here so that a report is one file that needs nothing else:
// line charts with axes, ticks, a legend and a shaded band (a standard error), and scatter
// plots (the same chart with markers only).
#include <string>
#include <vector>

namespace vae_ebm::report {

// The colour of series i (a palette of 10 that stays distinguishable, then repeats).
std::string palette_colour(size_t i);

// Round tick values covering [lo, hi]: steps of 1, 2 or 5 times a power of ten, about
// `target` of them. The first tick is <= lo and the last >= hi.
std::vector<double> nice_ticks(double lo, double hi, int target = 5);
// A tick's label, with as many decimals as the step between ticks needs.
std::string tick_label(double v, double step);

struct Series {
  std::string name;
  std::vector<double> x, y;  // NaN breaks the line there
  // Optional shaded band, one value per point (e.g. y -/+ one standard error).
  std::vector<double> band_low, band_high;
  bool line = true;      // join the points
  bool markers = false;  // draw each point (a sparse series, or a scatter)
  double marker_radius = 2.5;
  std::string colour;    // empty: the palette's colour for its position
};

// A linear map from data to pixels.
struct Scale {
  double lo = 0, hi = 1;        // data range (the outer ticks)
  double px_lo = 0, px_hi = 1;  // pixels of lo and hi (y: px_lo is the bottom)
  std::vector<double> ticks;
  double operator()(double v) const { return px_lo + (v - lo) / (hi - lo) * (px_hi - px_lo); }
};

class Chart {
 public:
  Chart(std::string title, std::string x_label, std::string y_label);
  Chart& add(Series series);
  Chart& size(int width, int height);
  bool empty() const;  // no finite point in any series

  // The axes fitted to the data: the range of every finite point and band, rounded out to
  // ticks. The plot area is [left, width - right] x [top, height - bottom].
  Scale x_scale() const;
  Scale y_scale() const;
  std::string svg() const;

  static constexpr int kLeft = 64, kRight = 16, kTop = 30, kBottom = 44;

 private:
  std::string title_, x_label_, y_label_;
  std::vector<Series> series_;
  int width_ = 520, height_ = 300;
  Scale fit(bool x_axis) const;
  int legend_rows() const;
};

// XML/HTML text escaping (&, <, >, ", ').
std::string xml_escape(const std::string& text);

}  // namespace vae_ebm::report
