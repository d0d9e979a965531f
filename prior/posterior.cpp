#include <torch/torch.h>

#include "prior/posterior.h"

#include <cmath>

namespace vae_ebm {

namespace {
const double kLog2Pi = std::log(2.0 * M_PI);
}

torch::Tensor DiagonalGaussian::rsample(int64_t k, at::Generator& generator) const {
  auto eps = torch::randn({k, mu.size(0), mu.size(1)}, generator, mu.options());
  return mu.unsqueeze(0) + torch::exp(0.5 * logvar).unsqueeze(0) * eps;
}

torch::Tensor DiagonalGaussian::rsample(int64_t k, at::Generator& generator, const BatchShard& shard) const {
  if (shard.whole()) return rsample(k, generator);
  TORCH_CHECK(shard.size == mu.size(0), "rsample: a shard of ", shard.size, " rows for a batch of ", mu.size(0));
  auto eps = shard.rows(torch::randn({k, shard.global, mu.size(1)}, generator, mu.options()), 1);
  return mu.unsqueeze(0) + torch::exp(0.5 * logvar).unsqueeze(0) * eps;
}

torch::Tensor DiagonalGaussian::log_prob(const torch::Tensor& z) const {
  auto diff = z - mu;
  auto per_dim = -0.5 * (kLog2Pi + logvar + diff * diff * torch::exp(-logvar));
  return per_dim.sum(-1);
}

torch::Tensor DiagonalGaussian::entropy() const {
  return 0.5 * (logvar + (1.0 + kLog2Pi)).sum(-1);
}

torch::Tensor DiagonalGaussian::expected_standard_normal_log_prob() const {
  return -0.5 * (mu * mu + torch::exp(logvar)).sum(-1) - 0.5 * kLog2Pi * static_cast<double>(dim());
}

DiagonalGaussian DiagonalGaussian::aggregate_moment_match() const {
  auto m = mu.detach();
  auto mean = m.mean(0);
  auto second = (m * m + torch::exp(logvar.detach())).mean(0);
  return {mean.unsqueeze(0), torch::log(torch::clamp_min(second - mean * mean, 1e-6)).unsqueeze(0)};
}

torch::Tensor standard_normal_log_prob(const torch::Tensor& z) {
  return -0.5 * (z * z).sum(-1) - 0.5 * kLog2Pi * static_cast<double>(z.size(-1));
}

}  // namespace vae_ebm
