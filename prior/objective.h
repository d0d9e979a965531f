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
#include "common/options.h"
#include "prior/posterior.h"
#include "prior/prior.h"

namespace vae_ebm {

class EnergyPrior;

struct PriorTerm {
  // [B]: per image, a differentiable surrogate whose gradient (for the prior's
  // parameters, and through z for the encoder) is that of E_q[log p(z)] or of its bound.
  // For bound-based objectives its value is the bound itself.
  torch::Tensor log_prior;
  std::map<std::string, double> diagnostics;  // e.g. "log_z_hat", "b", "ess"
  // [K, B], from objectives whose per_sample_terms() is true: per sample z_k, the surrogate of
  // log p(z_k) whose mean over K is log_prior but for the closed forms log_prior may use. What
  // importance-weighted training puts inside its log-mean-exp (docs/MATH.md section 13); a term
  // shared by all samples (SNELBO's normaliser) is in every row, and leaves the log-mean-exp
  // unchanged in value and gradient.
  torch::Tensor log_prior_samples;
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
  // True when b is a parameter of the objective's own bound (snelbo: -b - exp(-b) Zhat + 1 is
  // at most -log Zhat whatever b is), so that the bound with the learned b is one; evaluation's
  // `auto` normaliser then uses it. NCE and FCE train b too, but as a classifier's offset, not
  // in a bound: evaluation estimates their log Z, as it does for the MCMC objectives.
  virtual bool trains_b_in_its_bound() const { return false; }
  virtual PriorTerm prior_term(Prior& prior, const DiagonalGaussian& q, const torch::Tensor& z,
                               at::Generator& generator) = 0;
  // True when prior_term() fills PriorTerm::log_prior_samples (exact, snelbo): the objective can
  // train the importance-weighted bound.
  virtual bool per_sample_terms() const { return false; }
  // Asks such an objective to fill them (they cost a pass more for some priors); nothing for the
  // others.
  virtual void set_per_sample_terms(bool) {}
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

// An objective's entry in the registry: the declarations of the options it reads (each
// declared once, in the objective's own file: common/options.h) and its factory, which reads
// them from the values given (the declared defaults for the rest) and validates them, throwing
// OptionError naming the option.
struct ObjectiveEntry {
  std::vector<OptionSpec> options;
  std::function<std::unique_ptr<PriorObjective>(const OptionValues&)> make;
};

// Builds an objective; an unknown name throws std::invalid_argument listing the valid ones, a
// value that is not one of any objective's options std::invalid_argument naming it.
std::unique_ptr<PriorObjective> make_objective(const std::string& name, const OptionValues& options = {});
std::vector<std::string> objective_names();
// Every objective option once, in registry order, with the objectives that read it: what the
// command line declares as train's flags.
struct ObjectiveOption {
  OptionSpec spec;
  std::vector<std::string> objectives;
};
std::vector<ObjectiveOption> all_objective_options();
// Adds an objective to the registry, as prior/objective.cpp adds the project's (a test adds its
// own the same way). std::logic_error for a name already present, or for an option declared
// again with another type, default or help than another objective's.
void register_objective(const std::string& name, ObjectiveEntry entry);

// Options more than one objective reads, declared here once: "flow-lr", the Adam learning
// rate of a flow trained alongside (snelbo --proposal flow, nce --nce-noise flow, fce), and
// "energy-l2", the energy magnitude penalty alpha of snelbo and the MCMC objectives. Each reader
// lists the spec among its options and reads the value, validated, with these.
OptionSpec flow_lr_option();
double flow_lr(const OptionValues& values);
OptionSpec energy_l2_option();
double energy_l2(const OptionValues& values);

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
