#include <torch/torch.h>

#include "vae/model.h"

namespace vae_ebm {

ElboTerms elbo_terms(VaeModel& model, PriorObjective& objective, const torch::Tensor& x, int64_t k,
                     at::Generator& generator) {
  auto q = model.encoder->forward(x);
  auto z = q.rsample(k, generator);  // [K, B, D]
  ElboTerms terms;
  terms.reconstruction = bernoulli_log_likelihood(model.decoder->logits(z), x).mean(0);
  terms.entropy = q.entropy();
  auto prior_term = objective.prior_term(*model.prior, q, z, generator);
  terms.log_prior = prior_term.log_prior;
  terms.diagnostics = std::move(prior_term.diagnostics);
  terms.kl = -(terms.entropy + terms.log_prior);
  terms.total = terms.reconstruction - terms.kl;
  return terms;
}

}  // namespace vae_ebm
