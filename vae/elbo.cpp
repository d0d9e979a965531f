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

torch::Tensor importance_weighted_objective(const torch::Tensor& log_joint, const DiagonalGaussian& q,
                                            const torch::Tensor& z, bool dreg) {
  if (!dreg) return importance_weighted_bound(log_joint - q.log_prob(z));
  // log w_k with q's parameters held fixed: its gradient reaches the encoder through z_k only.
  const DiagonalGaussian fixed{q.mu.detach(), q.logvar.detach()};
  auto log_w = log_joint - fixed.log_prob(z);                    // [K, B]
  auto weights = torch::softmax(log_w.detach(), 0);              // normalised w_k / sum_j w_j
  // sum_k w~_k log w_k has the IWAE gradient for everything but the encoder; the hook then
  // weighs the gradient that reaches z_k once more by w~_k, which gives the encoder DReG's
  // sum_k w~_k^2 d log w_k / d z_k dz_k / d phi.
  if (z.requires_grad()) {
    auto scale = weights.unsqueeze(-1);
    torch::Tensor draw = z;  // the same tensor: the hook is on its gradient, whoever uses it
    draw.register_hook([scale](const torch::Tensor& grad) { return grad * scale; });
  }
  auto surrogate = (weights * log_w).sum(0);
  return importance_weighted_bound(log_w.detach()) + (surrogate - surrogate.detach());
}

ElboTerms elbo_terms(VaeModel& model, PriorObjective& objective, const torch::Tensor& x, int64_t k,
                     at::Generator& generator, const LangevinOptions* refine, const BatchShard* shard,
                     bool importance_weighted, bool dreg) {
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
    terms.iw = importance_weighted_objective(log_px + prior_term.log_prior_samples, q, z, dreg);
    terms.total = terms.iw;
  }
  return terms;
}

}  // namespace vae_ebm
