#pragma once
// Bernoulli binarisation of grey images (MATH.md section 7).
#include <torch/torch.h>

#include <cstdint>

namespace vae_ebm {

// A uniform number in [0, 1) that depends only on its four keys: a counter-based
// generator (integer hashing), so the same bits come out on every machine.
double counter_uniform(uint64_t seed, uint64_t split, uint64_t image, uint64_t pixel);

// Static binarisation: grey [N, D] float in [0, 1] -> {0, 1} float [N, D], where
// pixel p of image i is 1 iff counter_uniform(seed, split, first_index + i, p) < grey.
torch::Tensor binarize_static(const torch::Tensor& grey, uint64_t seed, uint64_t split,
                              int64_t first_index = 0);

}  // namespace vae_ebm
