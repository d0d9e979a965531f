#pragma once
// Prior objectives: how E_q[log p(z)] enters the loss, one strategy per file, chosen
// by name from one registry.
#include <torch/torch.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "prior/posterior.h"
#include "prior/prior.h"

namespace vae_ebm {

// Every objective's options in one place; each objective validates the ones it reads.
struct ObjectiveOptions {
  // snelbo: number S of samples for the estimate of Z each step (0: the batch size).
  TORCH_ARG(int64_t, base_samples) = 0;
  // snelbo: proposal r for Z: base | aggregate-gaussian | batch-posterior.
  TORCH_ARG(std::string, proposal) = "base";
};

struct PriorTerm {
  // [B]: per image, a differentiable surrogate whose gradient (for the prior's
  // parameters, and through z for the encoder) is that of E_q[log p(z)] or of its bound.
  // For bound-based objectives its value is the bound itself.
  torch::Tensor log_prior;
  std::map<std::string, double> diagnostics;  // e.g. "log_z_hat", "b", "ess"
};

// The contract of an objective:
// - prior_term() takes the prior, the posterior q of the batch and z [K, B, D], samples
//   of q reparameterised (gradients reach the encoder through them), and returns a
//   PriorTerm whose log_prior is finite and has shape [B];
// - it touches no parameter other than the prior's and (through z) the encoder's;
// - check() throws std::invalid_argument if the prior kind is not supported;
// - any state that a resumed run needs (chains, buffers) goes through save()/load().
class PriorObjective {
 public:
  virtual ~PriorObjective() = default;
  virtual std::string name() const = 0;
  virtual void check(const Prior& prior) const = 0;
  virtual PriorTerm prior_term(Prior& prior, const DiagonalGaussian& q, const torch::Tensor& z,
                               at::Generator& generator) = 0;
  virtual void save(torch::serialize::OutputArchive&) const {}
  virtual void load(torch::serialize::InputArchive&) {}
};

using ObjectiveFactory = std::function<std::unique_ptr<PriorObjective>(const ObjectiveOptions&)>;

// Builds an objective; an unknown name throws std::invalid_argument listing the valid ones.
std::unique_ptr<PriorObjective> make_objective(const std::string& name, const ObjectiveOptions& options);
std::vector<std::string> objective_names();
// The objective a prior trains with when none is named: exact for gaussian/mog, snelbo for ebm.
std::string default_objective(const std::string& prior_kind);

// Helper for objective files: log of the importance-sampling estimate of Z for an
// energy prior, log Zhat = logsumexp_s(-f(z_s) + log p0(z_s) - log r(z_s)) - log S,
// differentiable in f's parameters. log_weights [S] -> scalar.
torch::Tensor log_mean_exp(const torch::Tensor& log_weights);

}  // namespace vae_ebm
