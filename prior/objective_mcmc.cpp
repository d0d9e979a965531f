// "short-run-mcmc" and "long-run-mcmc": maximum likelihood for the energy prior with
// negative samples from Langevin, MALA or HMC chains (MATH.md sections 3 and 11). The surrogate per image,
//   E_q[log p0(z)] - E_q[f(z)] + mean f(z_neg),
// has the gradient -E_q grad f + E_p grad f for f's parameters and -grad f(z) through z
// for the encoder; b gets none (evaluation estimates log Z from base samples).
#include <torch/torch.h>

#include "prior/energy.h"
#include "prior/objective.h"

#include <cmath>
#include <stdexcept>

#include "common/error.h"
#include "data/seed.h"

namespace vae_ebm {

namespace {

// The MCMC objectives' options: chains on U(z) = f(z) + |z|^2/2 for the negative samples. 0
// for steps or step size means the objective's reference value (short-run-mcmc: 60 steps of
// 0.4; long-run-mcmc: 200 steps of 0.1). With the hmc sampler the steps are leapfrog steps,
// `leapfrog` to a trajectory (the same gradients as Langevin's steps), of the step size.
struct McmcOptions {
  TORCH_ARG(std::string, sampler) = "langevin";  // langevin | mala | hmc
  TORCH_ARG(int64_t, leapfrog) = 10;             // hmc: leapfrog steps per trajectory
  TORCH_ARG(int64_t, steps) = 0;
  TORCH_ARG(double, step_size) = 0.0;
  TORCH_ARG(double, noise) = 1.0;       // eta; 0 is the noiseless gradient flow
  TORCH_ARG(bool, metropolis) = false;  // MALA correction
  TORCH_ARG(double, grad_clip) = 0.0;   // 0: off
  TORCH_ARG(int64_t, negatives) = 0;    // negative samples per step (0: the batch size)
  // Energy magnitude penalty alpha * (mean f(z_pos)^2 + mean f(z_neg)^2) (Du & Mordatch 2019):
  // keeps f from running away where the chains do not reach (0: off). Shared: energy_l2_option().
  TORCH_ARG(double, energy_l2) = 0.0;
  // long-run-mcmc: persistent chains kept in a buffer, each step continuing `negatives` of
  // them, with a fraction re-drawn from the base first.
  TORCH_ARG(bool, persistent) = false;
  TORCH_ARG(int64_t, buffer_size) = 10000;
  TORCH_ARG(double, reinit_fraction) = 0.05;

 public:
  void validate() const;  // throws OptionError
};

const OptionSet<McmcOptions>& mcmc_options() {
  using O = McmcOptions;
  static const auto set =
      OptionSet<O>()
          .text("mcmc-sampler", [](O& o) -> std::string& { return o.sampler(); },
                "the negative samples' chains: langevin, mala (Metropolis-adjusted) or hmc (Hamiltonian "
                "Monte Carlo: the steps are leapfrog steps, in trajectories of mcmc-leapfrog)")
          .integer("mcmc-leapfrog", [](O& o) -> int64_t& { return o.leapfrog(); },
                   "hmc: leapfrog steps per trajectory")
          .integer("mcmc-steps", [](O& o) -> int64_t& { return o.steps(); },
                   "steps per iteration (gradients of the energy; 0: 60 short-run, 200 long-run)")
          .real("mcmc-step-size", [](O& o) -> double& { return o.step_size(); },
                "step size (Langevin's s, or HMC's leapfrog step; 0: 0.4 short-run, 0.1 long-run)")
          .real("mcmc-noise", [](O& o) -> double& { return o.noise(); },
                "Langevin noise scale eta (0: noiseless gradient flow)")
          .flag("mcmc-metropolis", [](O& o) -> bool& { return o.metropolis(); }, "MALA correction of the chains")
          .real("mcmc-grad-clip", [](O& o) -> double& { return o.grad_clip(); },
                "clip each chain's gradient norm (0: off)")
          .integer("negatives", [](O& o) -> int64_t& { return o.negatives(); },
                   "negative samples per step (0: the batch size)")
          .flag("persistent", [](O& o) -> bool& { return o.persistent(); },
                "persistent chains in a buffer, continued each step (long-run-mcmc only)")
          .integer("buffer-size", [](O& o) -> int64_t& { return o.buffer_size(); }, "persistent: chains kept")
          .real("reinit-fraction", [](O& o) -> double& { return o.reinit_fraction(); },
                "persistent: fraction of the continued chains re-drawn from the base each step");
  return set;
}

McmcOptions read_mcmc_options(const OptionValues& values) {
  return mcmc_options().read(values).energy_l2(energy_l2(values));
}

std::vector<OptionSpec> mcmc_option_specs() {
  auto options = mcmc_options().specs();
  options.push_back(energy_l2_option());
  return options;
}

class McmcObjective : public PriorObjective {
 public:
  McmcObjective(std::string name, const McmcOptions& options, int64_t default_steps, double default_step)
      : name_(std::move(name)), options_(options) {
    options.validate();
    langevin_ = LangevinOptions()
                    .steps(options.steps() > 0 ? options.steps() : default_steps)
                    .step_size(options.step_size() > 0 ? options.step_size() : default_step)
                    .noise(options.noise())
                    .metropolis(options.metropolis() || options.sampler() == "mala")
                    .grad_clip(options.grad_clip());
    if (options.sampler() == "hmc") {
      trajectories_ = langevin_.steps() / options.leapfrog();
      if (trajectories_ < 1)
        throw OptionError("mcmc-leapfrog", "an HMC trajectory of " + std::to_string(options.leapfrog()) +
                                               " leapfrog steps is longer than the " +
                                               std::to_string(langevin_.steps()) + " steps of the chains");
    }
    try {
      langevin_.validate();
    } catch (const OptionError& e) {
      throw OptionError("mcmc-" + e.option, e.detail);  // the objective's chains: mcmc-*
    }
  }

  std::string name() const override { return name_; }
  bool supports(const Prior& prior) const override { return is_energy_prior(prior); }
  std::string requirement() const override { return kEnergyPriorRequirement; }

  PriorTerm prior_term(Prior& prior, const DiagonalGaussian& q, const torch::Tensor& z,
                       at::Generator& generator) override {
    auto& ebm = as_energy_prior(prior);
    // In data-parallel training this process runs its share of the n negatives (docs/MATH.md
    // section 10); their random numbers come from its own generator, except the short-run
    // chains' starts, drawn for all n from the shared one (each process keeping its rows) as a
    // single process draws them.
    const bool parallel = dist_ && dist_->parallel();
    const auto rows = parallel ? rows_ : BatchShard::of(q.batch(), 0, 1);
    const int64_t n = options_.negatives() > 0 ? options_.negatives() : rows.global;
    const auto negatives = parallel ? BatchShard::of(n, dist_->rank(), dist_->world_size()) : BatchShard::of(n, 0, 1);
    at::Generator& own = parallel ? chain_generator_ : generator;
    torch::Tensor start, index;
    if (options_.persistent()) {
      // This process's shard of the buffer's chains (all of them in one process).
      const int64_t size = parallel ? BatchShard::of(options_.buffer_size(), dist_->rank(), dist_->world_size()).size
                                    : options_.buffer_size();
      if (!buffer_.defined() || buffer_.size(1) != q.dim())
        buffer_ = torch::randn({size, q.dim()}, own, q.mu.options().requires_grad(false));
      index = torch::randint(buffer_.size(0), {negatives.size}, own,
                             torch::TensorOptions().dtype(torch::kLong).device(buffer_.device()));
      start = buffer_.index_select(0, index);
      // Re-draw a fraction of the chains from the base before continuing them.
      auto fresh = torch::rand({negatives.size, 1}, own, start.options()) < options_.reinit_fraction();
      start = torch::where(fresh, torch::randn(start.sizes(), own, start.options()), start);
    } else {
      start = negatives.rows(torch::randn({n, q.dim()}, generator, q.mu.options().requires_grad(false)), 0);
    }
    auto chains = trajectories_ > 0
                      ? hmc_chains([&ebm](const torch::Tensor& at) { return ebm.potential(at); }, start,
                                   trajectories_, options_.leapfrog(), langevin_.step_size(), own)
                      : ebm.run_langevin(start, langevin_, own);
    if (options_.persistent()) buffer_.index_copy_(0, index, chains.z);
    auto negative_energy = ebm.energy(chains.z);
    auto f_z = ebm.energy(z);  // [K, B]
    auto positive_energy = f_z.mean(0);
    auto cross_entropy = q.expected_standard_normal_log_prob();
    // The mean over the negatives is one term for the whole batch: each process its part.
    auto surrogate = cross_entropy - positive_energy + shared_mean(negative_energy, rows, negatives);
    // (The positives' mean over this process's K x B_r samples, weighted B_r / B by the
    // trainer, is already its part of the mean over all K x B.)
    if (options_.energy_l2() > 0)
      surrogate = surrogate - options_.energy_l2() *
                                  (f_z.pow(2).mean() + shared_mean(negative_energy.pow(2), rows, negatives));
    PriorTerm term{surrogate, {}};
    term.diagnostics["energy_positive"] = positive_energy.mean().item<double>();
    term.diagnostics["energy_negative"] = negative_energy.mean().item<double>();
    term.diagnostics["acceptance"] = chains.acceptance_rate;
    return term;
  }

  double sampler_step_size() const override { return langevin_.step_size(); }
  void set_sampler_step_size(double step_size) override { langevin_.step_size(step_size); }

  void check_data_parallel(int world_size) const override {
    const auto at_least = [world_size](const char* option, int64_t value) {
      if (value > 0 && value < world_size)
        throw OptionError(option, "must be at least the number of processes (" + std::to_string(world_size) +
                                      "), each running its share, got " + std::to_string(value));
    };
    at_least("negatives", options_.negatives());
    if (options_.persistent()) at_least("buffer-size", options_.buffer_size());
  }
  void set_data_parallel(std::shared_ptr<Distributed> dist, const BatchShard& rows, uint64_t seed,
                         torch::Device device) override {
    dist_ = std::move(dist);
    rows_ = rows;
    chain_generator_ = make_generator(mix_seed(seed, 0x636861696e73ULL, static_cast<uint64_t>(dist_->rank())), device);
  }
  // The chains' generator and a persistent buffer's shard are this process's own.
  bool per_process_state() const override { return true; }

  void save(torch::serialize::OutputArchive& archive) const override {
    if (buffer_.defined()) archive.write("buffer", buffer_, /*is_buffer=*/true);
    if (dist_ && dist_->parallel()) archive.write("chain_generator", generator_state(chain_generator_));
  }
  void load(torch::serialize::InputArchive& archive) override {
    // A fresh tensor for each read: reading into a defined one would re-target its storage.
    torch::Tensor state, buffer;
    if (dist_ && dist_->parallel() && archive.try_read("chain_generator", state))
      set_generator_state(chain_generator_, state);
    if (options_.persistent() && archive.try_read("buffer", buffer, /*is_buffer=*/true)) buffer_ = buffer;
  }

 private:
  std::string name_;
  McmcOptions options_;
  LangevinOptions langevin_;
  int64_t trajectories_ = 0;  // hmc: trajectories per iteration (0: Langevin or MALA)
  torch::Tensor buffer_;  // persistent chains [buffer_size, D]; in data-parallel training this process's shard
  std::shared_ptr<Distributed> dist_;
  BatchShard rows_;                // this process's rows of each batch
  at::Generator chain_generator_;  // data-parallel: this process's own, for its chains
};

void McmcOptions::validate() const {
  auto fail = [](const char* option, const std::string& message) { throw OptionError(option, message); };
  if (sampler_ != "langevin" && sampler_ != "mala" && sampler_ != "hmc")
    fail("mcmc-sampler", "must be one of langevin, mala, hmc, got '" + sampler_ + "'");
  if (leapfrog_ < 1) fail("mcmc-leapfrog", "must be >= 1, got " + std::to_string(leapfrog_));
  if (sampler_ == "hmc" && (metropolis_ || noise_ != 1.0 || grad_clip_ != 0.0))
    fail("mcmc-sampler", "hmc has its own Metropolis correction and unit noise: the Langevin options mcmc-metropolis, "
                         "mcmc-noise and mcmc-grad-clip do not apply to it");
  if (steps_ < 0) fail("mcmc-steps", "must be >= 0 (0: the objective's default), got " + std::to_string(steps_));
  if (!(step_size_ >= 0 && std::isfinite(step_size_)))
    fail("mcmc-step-size", "must be finite and >= 0 (0: the objective's default), got " + std::to_string(step_size_));
  if (negatives_ < 0) fail("negatives", "must be >= 0 (0: the batch size), got " + std::to_string(negatives_));
  if (buffer_size_ < 1) fail("buffer-size", "must be >= 1, got " + std::to_string(buffer_size_));
  if (!(reinit_fraction_ >= 0 && reinit_fraction_ <= 1))
    fail("reinit-fraction", "must be in [0, 1], got " + std::to_string(reinit_fraction_));
}

}  // namespace

ObjectiveEntry short_run_mcmc_objective_entry() {
  return {mcmc_option_specs(), [](const OptionValues& values) -> std::unique_ptr<PriorObjective> {
            const auto options = read_mcmc_options(values);
            if (options.persistent())
              throw OptionError("persistent", "short-run-mcmc uses fresh chains; persistent chains go with long-run-mcmc");
            return std::make_unique<McmcObjective>("short-run-mcmc", options, 60, 0.4);
          }};
}

ObjectiveEntry long_run_mcmc_objective_entry() {
  return {mcmc_option_specs(), [](const OptionValues& values) -> std::unique_ptr<PriorObjective> {
            return std::make_unique<McmcObjective>("long-run-mcmc", read_mcmc_options(values), 200, 0.1);
          }};
}

}  // namespace vae_ebm
