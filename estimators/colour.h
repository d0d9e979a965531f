#pragma once
// Colour coverage of RGB images (issue 29; MATH.md section 6.4): a prior whose draws show one
// colour family has missed modes that Frechet distances on a classifier's features may not show.
// Each image [3, H, W] in [0, 1] gives two colours:
//   background: the per-channel median of its border pixels (`border` wide on every side);
//   foreground: the per-channel mean of the 10% of its pixels farthest from that background
//               (Euclidean distance in RGB), where a digit drawn in colour lies.
// Each colour is quantised to `levels` levels per channel, levels^3 bins (bin r * levels^2 +
// g * levels + b, level floor(value * levels) capped at levels - 1).
#include <torch/torch.h>

#include <cstdint>

#include "data/json.h"

namespace vae_ebm {

struct ColourHistograms {
  torch::Tensor background;  // [levels^3] int64 counts
  torch::Tensor foreground;  // [levels^3] int64 counts
  int64_t count = 0;         // images
  int64_t levels = 0;
};
// images [N, 3, H, W] in [0, 1].
ColourHistograms colour_histograms(const torch::Tensor& images, int64_t levels = 4, int64_t border = 2);

// The fake images' histograms against the real ones', for background and foreground each:
//   total variation distance  (1/2) sum_b |p_b - q_b|, 0 (same) to 1 (disjoint);
//   coverage  the share of the real histogram's bins holding at least `min_share` of its images
//             that hold at least one fake image (1: no colour family the data has is missed);
//   bins      how many bins each side occupies (at least `min_share` of its images).
struct ColourCoverage {
  double background_tv = 0, foreground_tv = 0;
  double background_coverage = 0, foreground_coverage = 0;
  int64_t real_background_bins = 0, fake_background_bins = 0, real_foreground_bins = 0, fake_foreground_bins = 0;
  int64_t levels = 0, real_count = 0, fake_count = 0;
  double min_share = 0;
  Json to_json() const;
};
ColourCoverage colour_coverage(const ColourHistograms& real, const ColourHistograms& fake, double min_share = 0.001);

}  // namespace vae_ebm
