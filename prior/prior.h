#pragma once
// The Prior interface over the latent space, and the factory that builds one by name.
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "prior/posterior.h"

namespace vae_ebm {

// A density over R^D. Exact priors (Gaussian, mixture) are the oracles for every
// layer above; the energy prior's log density is only known up to log Z.
class Prior : public torch::nn::Module {
 public:
  explicit Prior(std::string name) : torch::nn::Module(std::move(name)) {}
  virtual ~Prior() = default;

  virtual std::string kind() const = 0;  // "gaussian", "mog", "ebm" or "flow"
  virtual int64_t latent_dim() const = 0;
  virtual bool exact() const = 0;  // log_prob_bound is the exact log density

  // log p(z) up to an additive constant: [..., D] -> [...].
  virtual torch::Tensor log_prob_unnormalised(const torch::Tensor& z) = 0;
  // Exact log density for exact priors; for the energy prior, the SNL lower bound
  // with its current log Z estimate (see EnergyPrior). [..., D] -> [...].
  virtual torch::Tensor log_prob_bound(const torch::Tensor& z) = 0;
  // E_q[log p(z)] per row, from the samples z [K, B, D] of q: [B]. The default averages
  // log_prob_bound over K; the Gaussian prior uses its closed form.
  virtual torch::Tensor expected_log_prob(const DiagonalGaussian& q, const torch::Tensor& z);
  // n samples: [n, D].
  virtual torch::Tensor sample(int64_t n, at::Generator& generator) = 0;
};

struct PriorOptions {
  PriorOptions(std::string kind, int64_t latent_dim) : kind_(std::move(kind)), latent_dim_(latent_dim) {}
  TORCH_ARG(std::string, kind);  // gaussian | mog | ebm
  TORCH_ARG(int64_t, latent_dim);
  TORCH_ARG(int64_t, mog_components) = 10;
  TORCH_ARG(std::vector<int64_t>, energy_hidden) = std::vector<int64_t>{200, 200, 200};
  TORCH_ARG(double, energy_slope) = 0.2;  // LeakyReLU negative slope
  TORCH_ARG(int64_t, flow_layers) = 6;    // flow: coupling layers
  TORCH_ARG(int64_t, flow_hidden) = 64;   // flow: width of each conditioner
};

// Builds a prior; an unknown kind throws std::invalid_argument listing prior_kinds().
std::shared_ptr<Prior> make_prior(const PriorOptions& options);
std::vector<std::string> prior_kinds();

}  // namespace vae_ebm
