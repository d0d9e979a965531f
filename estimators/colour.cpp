#include <torch/torch.h>

#include "estimators/colour.h"

namespace vae_ebm {

namespace {

// Quantised colours [N, 3] in [0, 1] -> bin indices [N].
torch::Tensor colour_bins(const torch::Tensor& colours, int64_t levels) {
  auto q = (colours * static_cast<double>(levels)).floor().clamp(0, static_cast<double>(levels - 1)).to(torch::kLong);
  return q.select(1, 0) * levels * levels + q.select(1, 1) * levels + q.select(1, 2);
}

struct Compared {
  double tv = 0, coverage = 0;
  int64_t real_bins = 0, fake_bins = 0;
};

Compared compare(const torch::Tensor& real_counts, const torch::Tensor& fake_counts, double min_share) {
  auto p = real_counts.to(torch::kDouble) / real_counts.sum().item<double>();
  auto q = fake_counts.to(torch::kDouble) / fake_counts.sum().item<double>();
  Compared out;
  out.tv = 0.5 * (p - q).abs().sum().item<double>();
  auto real_occupied = p >= min_share;
  out.real_bins = real_occupied.sum().item<int64_t>();
  out.fake_bins = (q >= min_share).sum().item<int64_t>();
  out.coverage = out.real_bins == 0 ? 1.0
                                    : (real_occupied & (fake_counts > 0)).sum().item<double>() /
                                          static_cast<double>(out.real_bins);
  return out;
}

}  // namespace

ColourHistograms colour_histograms(const torch::Tensor& images, int64_t levels, int64_t border) {
  TORCH_CHECK(levels >= 1 && levels <= 64, "colour_histograms: levels must be in [1, 64], got ", levels);
  TORCH_CHECK(images.dim() == 4 && images.size(1) == 3, "colour_histograms: images must be [N, 3, H, W], got ",
              images.sizes());
  const int64_t n = images.size(0), h = images.size(2), w = images.size(3);
  TORCH_CHECK(n > 0, "colour_histograms: no images");
  TORCH_CHECK(border >= 1 && 2 * border < h && 2 * border < w, "colour_histograms: a border of ", border,
              " pixels does not fit images of ", h, "x", w);
  torch::NoGradGuard no_grad;
  auto x = images.to(torch::kCPU, torch::kDouble).clamp(0, 1);
  auto mask = torch::ones({h, w}, torch::kBool);
  mask.narrow(0, border, h - 2 * border).narrow(1, border, w - 2 * border).fill_(false);
  auto pixels = x.reshape({n, 3, h * w});                                      // [N, 3, P]
  auto border_pixels = pixels.index({torch::indexing::Slice(), torch::indexing::Slice(), mask.reshape({-1})});
  auto background = std::get<0>(border_pixels.median(2));                      // [N, 3]
  auto distance = (pixels - background.unsqueeze(2)).pow(2).sum(1);            // [N, P]
  const int64_t top = std::max<int64_t>(1, (h * w) / 10);
  auto far = std::get<1>(distance.topk(top, 1));                               // [N, top]
  auto foreground = pixels.gather(2, far.unsqueeze(1).expand({n, 3, top})).mean(2);  // [N, 3]
  ColourHistograms out;
  out.levels = levels;
  out.count = n;
  const int64_t bins = levels * levels * levels;
  out.background = torch::bincount(colour_bins(background, levels), {}, bins);
  out.foreground = torch::bincount(colour_bins(foreground, levels), {}, bins);
  return out;
}

ColourCoverage colour_coverage(const ColourHistograms& real, const ColourHistograms& fake, double min_share) {
  TORCH_CHECK(real.levels == fake.levels && real.levels > 0, "colour_coverage: histograms of ", real.levels, " and ",
              fake.levels, " levels");
  TORCH_CHECK(min_share > 0 && min_share < 1, "colour_coverage: min_share must be in (0, 1), got ", min_share);
  ColourCoverage out;
  const auto b = compare(real.background, fake.background, min_share);
  const auto f = compare(real.foreground, fake.foreground, min_share);
  out.background_tv = b.tv;
  out.foreground_tv = f.tv;
  out.background_coverage = b.coverage;
  out.foreground_coverage = f.coverage;
  out.real_background_bins = b.real_bins;
  out.fake_background_bins = b.fake_bins;
  out.real_foreground_bins = f.real_bins;
  out.fake_foreground_bins = f.fake_bins;
  out.levels = real.levels;
  out.real_count = real.count;
  out.fake_count = fake.count;
  out.min_share = min_share;
  return out;
}

Json ColourCoverage::to_json() const {
  Json j = Json::object();
  j.set("levels_per_channel", levels)
      .set("min_share", min_share)
      .set("background_tv", background_tv)
      .set("foreground_tv", foreground_tv)
      .set("background_coverage", background_coverage)
      .set("foreground_coverage", foreground_coverage)
      .set("real_background_bins", real_background_bins)
      .set("fake_background_bins", fake_background_bins)
      .set("real_foreground_bins", real_foreground_bins)
      .set("fake_foreground_bins", fake_foreground_bins)
      .set("real_count", real_count)
      .set("fake_count", fake_count);
  return j;
}

}  // namespace vae_ebm
