#pragma once
// Image grids as PNG.
#include <torch/torch.h>

#include <string>

namespace vae_ebm {

// images: [N, H, W] or [N, 1, H, W] (grey), [N, 3, H, W] (RGB), or [N, C, H, W] with another C
// (each channel a grey tile, an image's C tiles side by side), values in [0, 1] (clamped).
// Lays them out `nrow` images per row with `padding` pixels of white between and writes a
// PNG atomically. Throws DataError on a bad shape or a failed write.
void write_png_grid(const std::string& path, const torch::Tensor& images, int64_t nrow,
                    int64_t padding = 2);

}  // namespace vae_ebm
