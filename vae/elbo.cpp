#include <torch/torch.h>

#include "vae/model.h"

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

ElboTerms elbo_terms(VaeModel& model, PriorObjective& objective, const torch::Tensor& x, int64_t k,
                     at::Generator& generator, const LangevinOptions* refine, const BatchShard* shard) {
  auto q = model.encoder->forward(x);
  auto z = shard ? q.rsample(k, generator, *shard) : q.rsample(k, generator);  // [K, B, D]
  ElboTerms terms;
  terms.reconstruction = model.log_likelihood(z, x).mean(0);
  terms.entropy = q.entropy();
  auto z_prior = refine && refine->steps() > 0 ? refine_posterior_samples(model, x, z, *refine, generator) : z;
  auto prior_term = objective.prior_term(*model.prior, q, z_prior, generator);
  terms.log_prior = prior_term.log_prior;
  terms.diagnostics = std::move(prior_term.diagnostics);
  terms.kl = -(terms.entropy + terms.log_prior);
  terms.total = terms.reconstruction - terms.kl;
  return terms;
}

}  // namespace vae_ebm
