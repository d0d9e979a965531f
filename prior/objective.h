#pragma once
// Prior objectives: how E_q[log p(z)] enters the loss, one strategy per file, chosen
// by name from one registry.
#include <torch/torch.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/distributed.h"
#include "prior/posterior.h"
#include "prior/prior.h"

namespace vae_ebm {

class EnergyPrior;

// Each family of objectives has its options, validated once where the objective is built;
// an error names the option ("base-samples", the name the flags use too) and the value.
struct SnelboOptions {
  // Samples S for the estimate of Z each step (0: the batch size).
  TORCH_ARG(int64_t, base_samples) = 0;
  // Proposal r for Z: base | aggregate-gaussian | batch-posterior | defensive | flow.
  TORCH_ARG(std::string, proposal) = "base";
  // flow: how the flow proposal trains, one Adam step per training step: ml (maximum likelihood
  // on the batch's posterior samples: the aggregate posterior), reverse-kl (towards the current
  // energy prior), or mix (the sum of the two losses).
  TORCH_ARG(std::string, flow_fit) = "mix";
  TORCH_ARG(double, flow_base_fraction) = 0.1;  // flow: share of the S samples from the base
  // flow: Adam steps of the flow's fit per training step (more keep it closer to the energy).
  TORCH_ARG(int64_t, flow_steps) = 1;
  // Energy magnitude penalty alpha * (mean f(z_post)^2 + mean f(z_proposal)^2), as the MCMC
  // objectives' (issue 28: against energy mass far from what the proposals reach; 0: off). It
  // shapes training only: the bounds evaluate does not include it.
  TORCH_ARG(double, energy_l2) = 0.0;

 public:
  void validate() const;  // throws OptionError
};

// The MCMC objectives: Langevin on U(z) = f(z) + |z|^2/2 for the negative samples. 0 for
// steps or step size means the objective's reference value (short-run-mcmc: 60 steps of 0.4;
// long-run-mcmc: 200 steps of 0.1).
struct McmcOptions {
  TORCH_ARG(int64_t, steps) = 0;
  TORCH_ARG(double, step_size) = 0.0;
  TORCH_ARG(double, noise) = 1.0;       // eta; 0 is the noiseless gradient flow
  TORCH_ARG(bool, metropolis) = false;  // MALA correction
  TORCH_ARG(double, grad_clip) = 0.0;   // 0: off
  TORCH_ARG(int64_t, negatives) = 0;    // negative samples per step (0: the batch size)
  // Energy magnitude penalty alpha * (mean f(z_pos)^2 + mean f(z_neg)^2) (Du & Mordatch 2019):
  // keeps f from running away where the chains do not reach (0: off).
  TORCH_ARG(double, energy_l2) = 0.0;
  // long-run-mcmc: persistent chains kept in a buffer, each step continuing `negatives` of
  // them, with a fraction re-drawn from the base first.
  TORCH_ARG(bool, persistent) = false;
  TORCH_ARG(int64_t, buffer_size) = 10000;
  TORCH_ARG(double, reinit_fraction) = 0.05;

 public:
  void validate() const;  // throws OptionError
};

struct NceOptions {
  // Noise distribution: base | aggregate-gaussian | flow (a flow fitted by maximum likelihood to
  // the posterior samples, one Adam step per training step). fce always uses a flow, trained
  // against the energy.
  TORCH_ARG(std::string, noise) = "base";
  TORCH_ARG(double, ratio) = 1.0;          // noise samples per data sample

 public:
  void validate() const;  // throws OptionError
};

// Denoising score matching of the energy prior on posterior samples (Vincent 2011).
struct ScoreMatchingOptions {
  TORCH_ARG(double, noise) = 0.1;  // sigma of the Gaussian noise added to the samples

 public:
  void validate() const;  // throws OptionError
};

// The options of every objective; a factory reads its own family's.
struct ObjectiveOptions {
  TORCH_ARG(SnelboOptions, snelbo);
  TORCH_ARG(McmcOptions, mcmc);
  TORCH_ARG(NceOptions, nce);
  TORCH_ARG(ScoreMatchingOptions, score_matching);
  // Adam learning rate of a flow trained alongside (snelbo --proposal flow, nce --nce-noise
  // flow, fce).
  TORCH_ARG(double, flow_lr) = 1e-3;

 public:
  void validate_flow_lr() const;  // throws OptionError "flow-lr"
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
// - supports() says which priors it can train, requirement() says so in words, and check()
//   throws std::invalid_argument naming both when a prior is not supported;
// - any state that a resumed run needs (chains, buffers) goes through save()/load().
class PriorObjective {
 public:
  virtual ~PriorObjective() = default;
  virtual std::string name() const = 0;
  virtual bool supports(const Prior& prior) const = 0;
  virtual std::string requirement() const = 0;  // e.g. "an energy prior (ebm)"
  void check(const Prior& prior) const;
  // True when the objective trains b as an estimate of log Z (snelbo); otherwise
  // evaluation estimates log Z from base samples instead of trusting b.
  virtual bool learns_log_normaliser() const { return false; }
  virtual PriorTerm prior_term(Prior& prior, const DiagonalGaussian& q, const torch::Tensor& z,
                               at::Generator& generator) = 0;
  // The step size of the objective's sampler (the MCMC objectives' Langevin chains), 0 for an
  // objective without one; set_sampler_step_size() lowers it after a divergence.
  virtual double sampler_step_size() const { return 0; }
  virtual void set_sampler_step_size(double) {}
  virtual void save(torch::serialize::OutputArchive&) const {}
  virtual void load(torch::serialize::InputArchive&) {}

  // Data-parallel training (common/distributed.h, docs/MATH.md section 10): each process holds
  // `shard` of every step's batch, and prior_term() sees only those rows. An objective whose
  // term is per image needs nothing more; one with a batch-wide estimate combines it over the
  // processes through `dist` (snelbo's Zhat) or weights its part (shared_mean). check_data_parallel()
  // throws OptionError naming the option when the objective, with its options, cannot be split
  // so (the default: it is not data-parallel yet); set_data_parallel() is called once, before
  // the first step and before a checkpoint is loaded, with the run's seed, from which an
  // objective seeds a generator of each process's own (seeded from seed and rank).
  virtual void check_data_parallel(int world_size) const;
  virtual void set_data_parallel(std::shared_ptr<Distributed> /*dist*/, const BatchShard& /*shard*/,
                                 uint64_t /*seed*/, torch::Device /*device*/) {}
  // True when, in data-parallel training, save() writes state that differs between the
  // processes (an MCMC objective's chains and their generator): the trainer then keeps every
  // process's in a checkpoint, and resuming it needs as many processes as wrote it.
  virtual bool per_process_state() const { return false; }
};

using ObjectiveFactory = std::function<std::unique_ptr<PriorObjective>(const ObjectiveOptions&)>;

// Builds an objective; an unknown name throws std::invalid_argument listing the valid ones.
std::unique_ptr<PriorObjective> make_objective(const std::string& name, const ObjectiveOptions& options);
std::vector<std::string> objective_names();
// The objective a prior trains with when none is named: exact for gaussian/mog, snelbo for ebm.
std::string default_objective(const std::string& prior_kind);

// Helpers for objective files: whether a prior is an energy prior, and the prior as one (the
// objective's check() has made sure of it; std::invalid_argument otherwise).
bool is_energy_prior(const Prior& prior);
EnergyPrior& as_energy_prior(Prior& prior);
constexpr const char* kEnergyPriorRequirement = "an energy prior (ebm)";

// Helper for objective files whose energy is not trained through the encoder's term (nce, fce,
// score-matching): per image [B], value E_q[log p0] - E_q[f(z)] - b over the K samples z
// [K, B, D], with a gradient that reaches the encoder through z but not f or b.
torch::Tensor encoder_prior_term(EnergyPrior& prior, const DiagonalGaussian& q, const torch::Tensor& z);

// The denoising score-matching loss (Vincent 2011), weighted by sigma^2: the mean over the
// rows of x [N, D] of 1/2 |sigma score(x + sigma eps) + eps|^2, eps ~ N(0, I). Its minimiser
// over score functions is the score of x's distribution convolved with N(0, sigma^2 I).
// Differentiable in whatever `score` depends on.
torch::Tensor denoising_score_matching_loss(const std::function<torch::Tensor(const torch::Tensor&)>& score,
                                            const torch::Tensor& x, double sigma, at::Generator& generator);
// The same with the noise given: eps [N, D] (data-parallel training: this process's rows of the
// whole batch's noise).
torch::Tensor denoising_score_matching_loss(const std::function<torch::Tensor(const torch::Tensor&)>& score,
                                            const torch::Tensor& x, double sigma, const torch::Tensor& eps);

// Helper for objective files: a term that is the same for every image, the mean of `values`
// over N items (negatives, noise samples, posterior samples), in a process that holds `rows`
// of the batch's images and `items` of the N items (values [items.size]). In one process (both
// whole) it is values.mean(). In data-parallel training it is (B / B_r) (sum of this process's
// values) / N: the trainer weights this process's images by B_r / B, so the processes' parts of
// the loss sum to the single process's term, in value and in gradient (docs/MATH.md section 10).
torch::Tensor shared_mean(const torch::Tensor& values, const BatchShard& rows, const BatchShard& items);
// This process's part of the mean over N items of which it holds `items`: the sum of its
// values / N (values.mean() when whole), summing over the processes to the mean. For a loss
// whose gradients are summed over the processes as they are (a trained flow's).
torch::Tensor part_of_mean(const torch::Tensor& values, const BatchShard& items);

// Data-parallel training: the posterior of the whole batch, detached, on every process, from each
// process's `rows` of it (one all-reduce of B x D means and log-variances): for what is fitted
// to the whole batch's posterior (the aggregate-gaussian, defensive and batch-posterior
// proposals, NCE's aggregate-gaussian noise), so that it is the single process's.
DiagonalGaussian whole_batch_posterior(const DiagonalGaussian& q, Distributed& dist, const BatchShard& rows);

// Helper for objective files: log of the importance-sampling estimate of Z for an
// energy prior, log Zhat = logsumexp_s(-f(z_s) + log p0(z_s) - log r(z_s)) - log S,
// differentiable in f's parameters. log_weights [S] -> scalar.
torch::Tensor log_mean_exp(const torch::Tensor& log_weights);

}  // namespace vae_ebm
