#pragma once
// The diagonal Gaussian q(z|x) = N(mu, diag exp(logvar)) that encoders return.
#include <torch/torch.h>

namespace vae_ebm {

struct DiagonalGaussian {
  torch::Tensor mu;      // [B, D]
  torch::Tensor logvar;  // [B, D]

  int64_t batch() const { return mu.size(0); }
  int64_t dim() const { return mu.size(1); }
  torch::Tensor mean() const { return mu; }
  // K reparameterised samples: [K, B, D] = mu + exp(logvar / 2) * eps.
  torch::Tensor rsample(int64_t k, at::Generator& generator) const;
  // log q(z|x) for z [K, B, D] (or [B, D]) -> [K, B] (or [B]).
  torch::Tensor log_prob(const torch::Tensor& z) const;
  // Analytic entropy H[q] per row: [B].
  torch::Tensor entropy() const;
  DiagonalGaussian detach() const { return {mu.detach(), logvar.detach()}; }
};

// log N(z; 0, I) summed over the last dimension: [..., D] -> [...].
torch::Tensor standard_normal_log_prob(const torch::Tensor& z);

}  // namespace vae_ebm
