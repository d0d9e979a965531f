#pragma once
// The standard normal prior p0 = N(0, I).
#include "prior/prior.h"

namespace vae_ebm {

class GaussianPrior : public Prior {
 public:
  explicit GaussianPrior(int64_t latent_dim);
  std::string kind() const override { return "gaussian"; }
  int64_t latent_dim() const override { return latent_dim_; }
  bool exact() const override { return true; }
  torch::Tensor log_prob_unnormalised(const torch::Tensor& z) override;
  torch::Tensor log_prob_bound(const torch::Tensor& z) override;
  // Closed form: -1/2 sum(mu^2 + sigma^2) - D/2 log 2 pi (z unused).
  torch::Tensor expected_log_prob(const DiagonalGaussian& q, const torch::Tensor& z) override;
  torch::Tensor sample(int64_t n, at::Generator& generator) override;

 private:
  int64_t latent_dim_;
  torch::Tensor anchor_;  // an empty buffer that carries the device and dtype
};

}  // namespace vae_ebm
