#pragma once
// The Prior interface over the latent space, and the factory that builds one by name.
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "common/options.h"
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

// A prior: its kind, the latent dimension, and the kind's own options by name, as text (an
// objective's are given the same way). Each kind declares its options once, in its own file:
// mog-components (mixture.h), energy-hidden and energy-slope (energy.h), flow-layers and
// flow-hidden (flow.h); a kind reads its own and leaves the others', and takes its declared
// default for any not given.
struct PriorOptions {
  PriorOptions(std::string kind, int64_t latent_dim) : kind_(std::move(kind)), latent_dim_(latent_dim) {}
  TORCH_ARG(std::string, kind);  // gaussian | mog | ebm | flow
  TORCH_ARG(int64_t, latent_dim);
  TORCH_ARG(OptionValues, values);

 public:
  template <class T>
  PriorOptions& set(const std::string& name, T value) {
    values_.set(name, value);
    return *this;
  }
};

// Builds a prior; an unknown kind throws std::invalid_argument listing prior_kinds(), a bad value
// of one of its options OptionError naming the option.
std::shared_ptr<Prior> make_prior(const PriorOptions& options);
// The same checks, building nothing (a command checks its flags before it allocates).
void check_prior(const PriorOptions& options);
std::vector<std::string> prior_kinds();

// Every prior option once, in registry order, with the kinds that read it: what the command line
// declares as train's flags.
struct PriorOption {
  OptionSpec spec;
  std::vector<std::string> kinds;
};
std::vector<PriorOption> all_prior_options();

}  // namespace vae_ebm
