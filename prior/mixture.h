#pragma once
// A mixture of K diagonal Gaussians with learned logits, means and log-variances.
#include "prior/prior.h"

namespace vae_ebm {

// The mixture prior's options (prior kind "mog"), declared once by mixture_option_set():
// mog-components.
struct MixtureOptions {
  int64_t components = 10;
};
const OptionSet<MixtureOptions>& mixture_option_set();

class MixturePrior : public Prior {
 public:
  // Means start at N(0, 1) draws from `init_seed`, log-variances at 0, logits at 0.
  MixturePrior(int64_t latent_dim, int64_t components, uint64_t init_seed = 0);
  std::string kind() const override { return "mog"; }
  int64_t latent_dim() const override { return latent_dim_; }
  bool exact() const override { return true; }
  torch::Tensor log_prob_unnormalised(const torch::Tensor& z) override;
  // log sum_k softmax(logits)_k N(z; m_k, diag exp(log_var_k)): [..., D] -> [...].
  torch::Tensor log_prob_bound(const torch::Tensor& z) override;
  torch::Tensor sample(int64_t n, at::Generator& generator) override;

  torch::Tensor logits, means, log_vars;  // [K], [K, D], [K, D]

 private:
  int64_t latent_dim_;
};

}  // namespace vae_ebm
