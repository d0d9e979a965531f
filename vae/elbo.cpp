#include <torch/torch.h>

#include "vae/model.h"

#include <cmath>

#include "prior/energy.h"

namespace vae_ebm {

torch::Tensor refine_posterior_samples(VaeModel& model, const torch::Tensor& x, const torch::Tensor& z,
                                       const LangevinOptions& options, at::Generator& generator) {
  auto* ebm = dynamic_cast<EnergyPrior*>(model.prior.get());
  TORCH_CHECK(ebm, "posterior refinement needs the energy prior");
  const int64_t k = z.size(0), b = z.size(1), d = z.size(2);
  auto xs = x.unsqueeze(0).expand({k, b, x.size(1)}).reshape({k * b, x.size(1)});
  auto potential = [&](const torch::Tensor& zf) {
    return -model.log_likelihood(zf, xs) + ebm->potential(zf);
  };
  auto refined = langevin(potential, z.detach().reshape({k * b, d}), options, generator).z.reshape({k, b, d});
  return z + (refined - z).detach();  // straight through
}

torch::Tensor importance_weighted_bound(const torch::Tensor& log_w) {
  return torch::logsumexp(log_w, 0) - std::log(static_cast<double>(log_w.size(0)));
}

ElboTerms elbo_terms(VaeModel& model, PriorObjective& objective, const torch::Tensor& x, int64_t k,
                     at::Generator& generator, const LangevinOptions* refine, const BatchShard* shard,
                     bool importance_weighted) {
  auto q = model.encoder->forward(x);
  auto z = shard ? q.rsample(k, generator, *shard) : q.rsample(k, generator);  // [K, B, D]
  ElboTerms terms;
  const auto log_px = model.log_likelihood(z, x);  // [K, B]
  terms.reconstruction = log_px.mean(0);
  terms.entropy = q.entropy();
  auto z_prior = refine && refine->steps() > 0 ? refine_posterior_samples(model, x, z, *refine, generator) : z;
  auto prior_term = objective.prior_term(*model.prior, q, z_prior, generator);
  terms.log_prior = prior_term.log_prior;
  terms.diagnostics = std::move(prior_term.diagnostics);
  terms.kl = -(terms.entropy + terms.log_prior);
  terms.total = terms.reconstruction - terms.kl;
  if (importance_weighted) {
    TORCH_CHECK(prior_term.log_prior_samples.defined(), "importance weighting needs the objective's per-sample terms");
    terms.iw = importance_weighted_bound(log_px + prior_term.log_prior_samples - q.log_prob(z));
    terms.total = terms.iw;
  }
  return terms;
}

}  // namespace vae_ebm
