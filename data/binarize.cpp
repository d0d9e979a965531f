// Bernoulli binarisation of grey images (see binarize.h).
#include <torch/torch.h>

#include "data/binarize.h"

#include <ATen/Parallel.h>

#include "data/error.h"
#include "data/seed.h"

namespace vae_ebm {
namespace {

inline uint64_t image_key(uint64_t seed, uint64_t split, uint64_t image) { return mix_seed(seed, split, image); }

inline double to_unit(uint64_t h) {
  return static_cast<double>(h >> 11) * (1.0 / 9007199254740992.0);  // top 53 bits / 2^53
}

}  // namespace

double counter_uniform(uint64_t seed, uint64_t split, uint64_t image, uint64_t pixel) {
  return to_unit(splitmix64(image_key(seed, split, image) ^ pixel));
}

torch::Tensor binarize_static(const torch::Tensor& grey, uint64_t seed, uint64_t split,
                              int64_t first_index) {
  if (!grey.defined() || grey.dim() != 2) {
    throw DataError("binarize_static: expected a [N, D] tensor, got " +
                    (grey.defined() ? std::to_string(grey.dim()) + "-d" : std::string("undefined")));
  }
  if (!grey.is_floating_point()) {
    throw DataError("binarize_static: expected floating-point grey values in [0, 1]");
  }
  if (first_index < 0) throw DataError("binarize_static: negative first_index");
  const torch::Tensor in = grey.to(torch::kCPU, torch::kFloat).contiguous();
  const int64_t n = in.size(0);
  const int64_t d = in.size(1);
  torch::Tensor out = torch::empty({n, d}, torch::kFloat);
  const float* src = in.data_ptr<float>();
  float* dst = out.data_ptr<float>();
  // Each element depends only on its own keys, so the thread split does not matter.
  at::parallel_for(0, n, 64, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const uint64_t key = image_key(seed, split, static_cast<uint64_t>(first_index + i));
      const float* row = src + i * d;
      float* out_row = dst + i * d;
      for (int64_t p = 0; p < d; ++p) {
        const double u = to_unit(splitmix64(key ^ static_cast<uint64_t>(p)));
        out_row[p] = u < static_cast<double>(row[p]) ? 1.0f : 0.0f;
      }
    }
  });
  return out.to(grey.device());
}

}  // namespace vae_ebm
