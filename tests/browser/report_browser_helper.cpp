// What tests/browser/test_report.sh needs besides the vae-ebm binary and Chromium:
//   report_browser_helper data PATH             a small labelled HDF5 data set to train on
//   report_browser_helper region PNG X Y W H    the spread of a screenshot's pixels in a region
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "data/hdf5_io.h"

#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#endif
#include <stb_image.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

namespace {

// 8x8 binary images of four shapes (a horizontal bar, a vertical bar, a diagonal, a frame),
// labelled 0-3, each pixel flipped with probability 0.05: enough structure for a tiny VAE to
// show in samples, reconstructions and a latent space coloured by label.
int write_data(const std::string& path) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(7);
  auto shapes = torch::zeros({4, 8, 8});
  shapes[0].narrow(0, 3, 2).fill_(1);
  shapes[1].narrow(1, 3, 2).fill_(1);
  for (int i = 0; i < 8; ++i) shapes[2][i][i] = 1;
  shapes[3][0].fill_(1);
  shapes[3][7].fill_(1);
  shapes[3].select(1, 0).fill_(1);
  shapes[3].select(1, 7).fill_(1);
  vae_ebm::H5Writer writer(path);
  for (const auto& [name, n] : std::vector<std::pair<std::string, int64_t>>{{"train", 256}, {"validation", 64}, {"test", 128}}) {
    auto labels = torch::randint(0, 4, {n}, gen, torch::kLong);
    auto flips = torch::bernoulli(torch::full({n, 8, 8}, 0.05), gen);
    auto images = (shapes.index_select(0, labels) + flips).remainder(2).to(torch::kUInt8);
    writer.write(name, images);
    writer.write(name + "_labels", labels);
  }
  writer.close();
  return 0;
}

// "std=S coloured=C": the standard deviation of the grey level (0-255) over the region, and
// the fraction of its pixels with colour (channels apart by more than 60: chart lines,
// markers, headings; text and MNIST-like images are grey).
int region(const std::string& png, int x, int y, int w, int h) {
  int width = 0, height = 0, channels = 0;
  unsigned char* pixels = stbi_load(png.c_str(), &width, &height, &channels, 3);
  if (!pixels) {
    std::fprintf(stderr, "cannot read %s: %s\n", png.c_str(), stbi_failure_reason());
    return 1;
  }
  const int x1 = std::min(width, x + w), y1 = std::min(height, y + h);
  double sum = 0, squares = 0, count = 0, coloured = 0;
  for (int row = std::max(0, y); row < y1; ++row)
    for (int col = std::max(0, x); col < x1; ++col) {
      const unsigned char* p = pixels + 3 * (static_cast<size_t>(row) * width + col);
      const double grey = 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];
      sum += grey;
      squares += grey * grey;
      count += 1;
      const int hi = std::max({p[0], p[1], p[2]}), lo = std::min({p[0], p[1], p[2]});
      if (hi - lo > 60) coloured += 1;
    }
  stbi_image_free(pixels);
  if (count == 0) {
    std::printf("std=0 coloured=0 (the region [%d %d %d %d] is outside the %dx%d screenshot)\n", x, y, w, h, width, height);
    return 0;
  }
  const double mean = sum / count;
  std::printf("std=%.2f coloured=%.4f\n", std::sqrt(std::max(0.0, squares / count - mean * mean)), coloured / count);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "data" && argc == 3) return write_data(argv[2]);
  if (mode == "region" && argc == 7)
    return region(argv[2], std::atoi(argv[3]), std::atoi(argv[4]), std::atoi(argv[5]), std::atoi(argv[6]));
  std::fprintf(stderr, "usage: %s data PATH | region PNG X Y W H\n", argv[0]);
  return 2;
}
