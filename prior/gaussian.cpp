#include <torch/torch.h>

#include "prior/gaussian.h"

#include <cmath>

namespace vae_ebm {

GaussianPrior::GaussianPrior(int64_t latent_dim) : Prior("GaussianPrior"), latent_dim_(latent_dim) {
  TORCH_CHECK(latent_dim > 0, "Invalid latent dimension: ", latent_dim);
  anchor_ = register_buffer("anchor", torch::zeros({0}));
}

torch::Tensor GaussianPrior::log_prob_unnormalised(const torch::Tensor& z) {
  return standard_normal_log_prob(z);
}

torch::Tensor GaussianPrior::log_prob_bound(const torch::Tensor& z) {
  return standard_normal_log_prob(z);
}

torch::Tensor GaussianPrior::expected_log_prob(const DiagonalGaussian& q, const torch::Tensor&) {
  return q.expected_standard_normal_log_prob();
}

torch::Tensor GaussianPrior::sample(int64_t n, at::Generator& generator) {
  return torch::randn({n, latent_dim_}, generator, anchor_.options());
}

}  // namespace vae_ebm
