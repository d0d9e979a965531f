#pragma once
// The VAE: encoder, decoder and prior as one module, and the ELBO's terms.
#include <torch/torch.h>

#include <memory>

#include "prior/langevin.h"
#include "prior/objective.h"
#include "prior/prior.h"
#include "vae/likelihood.h"
#include "vae/networks.h"

namespace vae_ebm {

class VaeModel : public torch::nn::Module {
 public:
  // The decoder outputs the likelihood's M parameters per value (networks.outputs_per_value()
  // is set from it).
  VaeModel(const NetworkOptions& networks, const PriorOptions& prior,
           const LikelihoodOptions& likelihood = LikelihoodOptions());
  std::shared_ptr<Encoder> encoder;
  std::shared_ptr<Decoder> decoder;
  std::shared_ptr<Prior> prior;
  // A submodule ("likelihood", in checkpoints) only when it has parameters (the Gaussian's
  // learned sigmas), so that checkpoints of Bernoulli models are what they always were.
  std::shared_ptr<Likelihood> likelihood;

  // log p(x|z): z [..., D], x [..., P] broadcast against the decoder's output -> [...].
  torch::Tensor log_likelihood(const torch::Tensor& z, const torch::Tensor& x);
  // The decoder's image for z, in [0, 1], and one draw from p(x|z).
  torch::Tensor decode_mean(const torch::Tensor& z);
  torch::Tensor decode_sample(const torch::Tensor& z, at::Generator& generator);

  // Encoder, decoder and likelihood parameters (the VAE optimiser's), and the prior's.
  std::vector<torch::Tensor> vae_parameters() const;
  std::vector<torch::Tensor> prior_parameters() const;
};

// Per image, all [B]: total = reconstruction + entropy + log_prior, and kl = -(entropy + log_prior),
// where log_prior is the objective's E_q[log p(z)] term (a bound for the energy prior).
struct ElboTerms {
  torch::Tensor reconstruction;  // E_q[log p(x|z)] over K samples
  torch::Tensor entropy;         // H[q(z|x)], closed form
  torch::Tensor log_prior;       // the objective's E_q[log p(z)] term
  torch::Tensor kl;
  torch::Tensor total;  // reconstruction - kl, or with importance weighting iw
  // Importance-weighted: log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x), with the objective's
  // per-sample prior terms (IWAE, or SN-IWAE for the energy prior; docs/MATH.md section 13).
  torch::Tensor iw;
  std::map<std::string, double> diagnostics;
};

// x [B, P]; K posterior samples per image. With `refine` (energy prior only), the prior
// term sees the encoder's samples moved by Langevin on -log p(x|z) + U(z) (MATH.md
// section 3, posterior refinement), passed straight through: their values are the
// refined samples, their gradient reaches the encoder as if they were its own samples.
// With `shard` (data-parallel training, common/distributed.h), x is this process's rows of
// the step's batch, and the posterior noise is drawn for the whole batch (DiagonalGaussian).
// log (1/K) sum_k exp(log_w[k]) for log weights [K, B]: [B].
torch::Tensor importance_weighted_bound(const torch::Tensor& log_w);

// The importance-weighted bound over z [K, B, D] ~ q with log_joint = log p(x|z) + log p(z)
// [K, B], as a training objective [B]: its value is importance_weighted_bound(log_joint -
// log q(z|x)); its gradient the reparameterised one, or with `dreg` the doubly reparameterised
// one (Tucker et al. 2019; docs/MATH.md section 13): log q's parameters held fixed and the
// encoder's pathwise gradient through z_k weighed by the squared normalised weight, the
// decoder's and prior's as before. z must be the reparameterised draw of q.
torch::Tensor importance_weighted_objective(const torch::Tensor& log_joint, const DiagonalGaussian& q,
                                            const torch::Tensor& z, bool dreg);

// With `importance_weighted` the objective must give per-sample terms
// (PriorObjective::per_sample_terms, asked for with set_per_sample_terms) and total is iw,
// with the gradient importance_weighted_objective gives it (`dreg`).
ElboTerms elbo_terms(VaeModel& model, PriorObjective& objective, const torch::Tensor& x, int64_t k,
                     at::Generator& generator, const LangevinOptions* refine = nullptr,
                     const BatchShard* shard = nullptr, bool importance_weighted = false, bool dreg = false);

}  // namespace vae_ebm
