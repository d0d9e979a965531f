// Image grids as PNG (see png.h).
#include <torch/torch.h>

#include "data/png.h"

#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#endif
#include <stb_image_write.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

#include <string>
#include <vector>

#include "data/error.h"
#include "data/files.h"

namespace vae_ebm {
namespace {

void append_bytes(void* context, void* data, int size) {
  static_cast<std::string*>(context)->append(static_cast<const char*>(data),
                                             static_cast<size_t>(size));
}

std::string shape_text(const torch::Tensor& t) {
  std::string s = "[";
  for (int64_t k = 0; k < t.dim(); ++k) s += (k ? ", " : "") + std::to_string(t.size(k));
  return s + "]";
}

}  // namespace

void write_png_grid(const std::string& path, const torch::Tensor& images, int64_t nrow,
                    int64_t padding) {
  if (!images.defined()) throw DataError("write_png_grid(" + path + "): undefined tensor");
  torch::Tensor x = images.detach().to(torch::kCPU, torch::kFloat);
  if (x.dim() == 3) x = x.unsqueeze(1);
  if (x.dim() != 4 || x.size(0) < 1 || x.size(1) < 1 || x.size(2) < 1 || x.size(3) < 1) {
    throw DataError("write_png_grid(" + path + "): expected images of shape [N, H, W] or [N, C, H, W] with N >= 1, got " +
                    shape_text(images));
  }
  if (nrow < 1) throw DataError("write_png_grid(" + path + "): nrow must be >= 1, got " + std::to_string(nrow));
  if (x.size(1) != 1 && x.size(1) != 3) {
    // Neither grey nor RGB (2 channels, 4, ...): each channel a grey tile, an image's C tiles
    // side by side in its row.
    nrow *= x.size(1);
    x = x.reshape({x.size(0) * x.size(1), 1, x.size(2), x.size(3)});
  }
  if (padding < 0) {
    throw DataError("write_png_grid(" + path + "): padding must be >= 0, got " + std::to_string(padding));
  }
  const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  const int64_t cols = std::min(nrow, n);
  const int64_t rows = (n + nrow - 1) / nrow;
  // Like torchvision's make_grid: `padding` pixels around every tile.
  const int64_t width = cols * (w + padding) + padding;
  const int64_t height = rows * (h + padding) + padding;
  if (width > (1 << 24) || height > (1 << 24) || width * height * c > (int64_t{1} << 31)) {
    throw DataError("write_png_grid(" + path + "): the grid (" + std::to_string(width) + "x" +
                    std::to_string(height) + ") is too large");
  }
  // [N, C, H, W] in [0, 1] -> [N, H, W, C] bytes.
  const torch::Tensor bytes = torch::nan_to_num(x, 0.0, 1.0, 0.0)
                                  .clamp(0.0, 1.0)
                                  .mul(255.0)
                                  .round()
                                  .to(torch::kUInt8)
                                  .permute({0, 2, 3, 1})
                                  .contiguous();
  const uint8_t* src = bytes.data_ptr<uint8_t>();
  std::vector<uint8_t> canvas(static_cast<size_t>(width * height * c), 255);  // white
  for (int64_t i = 0; i < n; ++i) {
    const int64_t top = padding + (i / nrow) * (h + padding);
    const int64_t left = padding + (i % nrow) * (w + padding);
    for (int64_t y = 0; y < h; ++y) {
      const uint8_t* row = src + ((i * h + y) * w) * c;
      std::copy(row, row + w * c, canvas.begin() + ((top + y) * width + left) * c);
    }
  }
  std::string png;
  const int ok = stbi_write_png_to_func(append_bytes, &png, static_cast<int>(width),
                                        static_cast<int>(height), static_cast<int>(c),
                                        canvas.data(), static_cast<int>(width * c));
  if (ok == 0 || png.empty()) throw DataError("write_png_grid(" + path + "): PNG encoding failed");
  atomic_write(path, png);
}

}  // namespace vae_ebm
