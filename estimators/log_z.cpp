#include <torch/torch.h>

#include "estimators/log_z.h"

#include <cmath>

namespace vae_ebm {

Estimate log_z_from_log_weights(const torch::Tensor& log_weights, const std::string& estimator) {
  auto lw = log_weights.detach().to(torch::kCPU, torch::kDouble).reshape({-1});
  const int64_t s = lw.size(0);
  TORCH_CHECK(s > 0, "log Z estimate needs at least one sample");
  auto max = lw.max();
  auto w = torch::exp(lw - max);  // scaled weights
  auto mean_w = w.mean();
  Estimate e;
  e.estimator = estimator;
  e.count = s;
  e.value = (torch::log(mean_w) + max).item<double>();
  e.std_error = s > 1 ? (w.std() / (std::sqrt(static_cast<double>(s)) * mean_w)).item<double>() : 0.0;
  e.ess = (w.sum().pow(2) / (w * w).sum()).item<double>();
  return e;
}

torch::Tensor base_log_weights(const EnergyFn& energy, int64_t dim, int64_t samples, at::Generator& generator,
                               torch::TensorOptions options, int64_t chunk) {
  TORCH_CHECK(samples > 0, "log Z estimate needs samples > 0, got ", samples);
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> parts;
  for (int64_t done = 0; done < samples; done += chunk) {
    const int64_t n = std::min(chunk, samples - done);
    parts.push_back(-energy(torch::randn({n, dim}, generator, options)));
  }
  return torch::cat(parts).to(torch::kCPU, torch::kDouble);
}

std::string base_importance_name(int64_t samples) { return "IS(base, S=" + std::to_string(samples) + ")"; }

Estimate log_z_importance(const EnergyFn& energy, int64_t dim, int64_t samples, at::Generator& generator,
                          torch::TensorOptions options, int64_t chunk) {
  return log_z_from_log_weights(base_log_weights(energy, dim, samples, generator, options, chunk),
                                base_importance_name(samples));
}

Estimate log_z_importance(EnergyPrior& prior, int64_t samples, at::Generator& generator, int64_t chunk) {
  return log_z_importance([&prior](const torch::Tensor& z) { return prior.energy(z); }, prior.latent_dim(), samples,
                          generator, prior.b.options(), chunk);
}

}  // namespace vae_ebm
