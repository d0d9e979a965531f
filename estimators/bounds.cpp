#include <torch/torch.h>

#include "estimators/bounds.h"

#include <cmath>

namespace vae_ebm {

BoundReport evaluate_bounds(Encoder& encoder, Decoder& decoder, Likelihood& likelihood, Prior& prior, const torch::Tensor& images,
                            const BoundOptions& options, at::Generator& generator) {
  TORCH_CHECK(options.samples() >= 1, "bound evaluation needs K >= 1 samples, got ", options.samples());
  torch::NoGradGuard no_grad;
  encoder.eval();
  decoder.eval();
  likelihood.eval();
  prior.eval();
  const int64_t n = images.size(0);
  const int64_t k = options.samples();
  const int64_t chunk = std::max<int64_t>(1, options.max_elements() / (k * std::max<int64_t>(1, images.size(1))));
  std::vector<torch::Tensor> bound, iwae, recon, kl;
  for (int64_t start = 0; start < n; start += chunk) {
    auto x = images.narrow(0, start, std::min(chunk, n - start));
    auto q = encoder.forward(x);
    auto z = q.rsample(k, generator);                        // [K, B, D]
    auto log_px = likelihood.log_prob(decoder.params(z), x);  // [K, B]
    auto r = log_px.mean(0);
    auto k_term = -(q.entropy() + prior.expected_log_prob(q, z));
    recon.push_back(r.to(torch::kDouble));
    kl.push_back(k_term.to(torch::kDouble));
    bound.push_back((r - k_term).to(torch::kDouble));
    if (options.importance_weighted()) {
      auto log_w = (log_px + prior.log_prob_bound(z) - q.log_prob(z)).to(torch::kDouble);
      iwae.push_back(torch::logsumexp(log_w, 0) - std::log(static_cast<double>(k)));
    }
  }
  return bound_report(torch::cat(bound), options.importance_weighted() ? torch::cat(iwae) : torch::Tensor(),
                      torch::cat(recon), torch::cat(kl), k, !prior.exact());
}

BoundReport bound_report(torch::Tensor bound, torch::Tensor iwae, torch::Tensor reconstruction, torch::Tensor kl,
                         int64_t samples, bool energy_prior) {
  const std::string ks = std::to_string(samples);
  BoundReport report;
  report.per_image_bound = std::move(bound);
  report.per_image_reconstruction = std::move(reconstruction);
  report.per_image_kl = std::move(kl);
  report.bound = mean_estimate(report.per_image_bound, (energy_prior ? "SNELBO_" : "ELBO_") + ks);
  report.reconstruction = mean_estimate(report.per_image_reconstruction, "reconstruction_" + ks);
  report.kl = mean_estimate(report.per_image_kl, (energy_prior ? "SN-KL_" : "KL_") + ks);
  if (iwae.defined()) {
    report.per_image_iwae = std::move(iwae);
    report.iwae = mean_estimate(report.per_image_iwae, (energy_prior ? "SN-IWAE_" : "IWAE_") + ks);
  }
  return report;
}

}  // namespace vae_ebm
