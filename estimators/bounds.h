#pragma once
// Likelihood bounds over a data split: ELBO_K and IWAE_K for exact priors, SNELBO and
// SN-IWAE_K for the energy prior (MATH.md sections 2 and 5).
#include <torch/torch.h>

#include <string>

#include "estimators/estimate.h"
#include "prior/prior.h"
#include "vae/likelihood.h"
#include "vae/networks.h"

namespace vae_ebm {

struct BoundOptions {
  TORCH_ARG(int64_t, samples) = 10;         // K posterior samples per image
  TORCH_ARG(int64_t, max_elements) = 1 << 22;  // K * batch * pixels per chunk (memory)
  TORCH_ARG(bool, importance_weighted) = true;
};

struct BoundReport {
  Estimate bound;           // ELBO_K or SNELBO_K: the mean over K of single-sample bounds
  Estimate iwae;            // IWAE_K or SN-IWAE_K
  Estimate reconstruction;  // E_q[log p(x|z)]
  Estimate kl;              // -(H[q] + E_q[log p(z)]), a bound for the energy prior
  torch::Tensor per_image_bound;  // [N] float64
  torch::Tensor per_image_iwae;   // [N] float64 (undefined without importance weighting)
  torch::Tensor per_image_reconstruction;  // [N] float64
  torch::Tensor per_image_kl;              // [N] float64
};

// images [N, P] on any device. For an energy prior, its log Z estimate must be set
// (EnergyPrior::set_log_z_estimate): it is held fixed over the split.
BoundReport evaluate_bounds(Encoder& encoder, Decoder& decoder, Likelihood& likelihood, Prior& prior,
                            const torch::Tensor& images, const BoundOptions& options, at::Generator& generator);

// The estimates of a report from its per-image terms (those of several evaluate_bounds calls put
// together: a split evaluated in blocks, or by several processes). iwae may be undefined.
BoundReport bound_report(torch::Tensor bound, torch::Tensor iwae, torch::Tensor reconstruction, torch::Tensor kl,
                         int64_t samples, bool energy_prior);

}  // namespace vae_ebm
