#include <torch/torch.h>

#include "prior/objective.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "common/error.h"
#include "common/registry.h"
#include "prior/energy.h"

namespace vae_ebm {

// Each objective's entry (its options and factory) lives in its own file.
ObjectiveEntry exact_objective_entry();
ObjectiveEntry snelbo_objective_entry();
ObjectiveEntry short_run_mcmc_objective_entry();
ObjectiveEntry long_run_mcmc_objective_entry();
ObjectiveEntry nce_objective_entry();
ObjectiveEntry fce_objective_entry();
ObjectiveEntry score_matching_objective_entry();

namespace {

bool same_spec(const OptionSpec& a, const OptionSpec& b) {
  return a.type == b.type && a.default_text == b.default_text && a.help == b.help;
}

struct Objectives {
  Registry<ObjectiveEntry> entries{"objective"};
  std::vector<ObjectiveOption> options;  // each option once, with its readers

  void add(const std::string& name, ObjectiveEntry entry) {
    for (const auto& spec : entry.options) {
      auto it = std::find_if(options.begin(), options.end(),
                             [&](const ObjectiveOption& o) { return o.spec.name == spec.name; });
      if (it == options.end()) {
        options.push_back({spec, {name}});
      } else if (!same_spec(it->spec, spec)) {
        throw std::logic_error("objective '" + name + "' declares option '" + spec.name +
                               "' unlike the objectives that read it already: declare a shared option once");
      } else {
        it->objectives.push_back(name);
      }
    }
    entries.add(name, std::move(entry));
  }
};

Objectives& objectives() {
  static Objectives all = [] {
    Objectives o;
    o.add("exact", exact_objective_entry());
    o.add("snelbo", snelbo_objective_entry());
    o.add("short-run-mcmc", short_run_mcmc_objective_entry());
    o.add("long-run-mcmc", long_run_mcmc_objective_entry());
    o.add("nce", nce_objective_entry());
    o.add("fce", fce_objective_entry());
    o.add("score-matching", score_matching_objective_entry());
    return o;
  }();
  return all;
}

// The shared options' defaults.
constexpr double kFlowLr = 1e-3;
constexpr double kEnergyL2 = 0.0;

// A shared real option's value (its declared default when not given), finite and > 0, or >= 0.
double read_shared(const OptionValues& values, const OptionSpec& spec, bool positive) {
  const auto* text = values.find(spec.name);
  const double v = option_real(spec.name, text ? *text : spec.default_text);
  if (positive ? !(v > 0) : !(v >= 0))
    throw OptionError(spec.name, std::string("must be finite and ") + (positive ? "> 0" : ">= 0") + ", got " +
                                     option_text(v));
  return v;
}

}  // namespace

std::vector<std::string> objective_names() { return objectives().entries.names(); }

std::vector<ObjectiveOption> all_objective_options() { return objectives().options; }

void register_objective(const std::string& name, ObjectiveEntry entry) { objectives().add(name, std::move(entry)); }

std::unique_ptr<PriorObjective> make_objective(const std::string& name, const OptionValues& options) {
  const auto& entry = objectives().entries.at(name);
  const auto& known = objectives().options;
  for (const auto& given : options.all()) {
    const std::string& option = given.first;  // not a structured binding: a lambda captures it
    if (std::none_of(known.begin(), known.end(), [&](const ObjectiveOption& o) { return o.spec.name == option; }))
      throw UserError("'" + option + "' is not an option of any objective");
  }
  return entry.make(options);
}

OptionSpec flow_lr_option() {
  return {"flow-lr", OptionType::real, option_text(kFlowLr),
          "Adam learning rate of the flow trained alongside (snelbo with proposal flow, nce with nce-noise flow)"};
}

double flow_lr(const OptionValues& values) { return read_shared(values, flow_lr_option(), true); }

OptionSpec energy_l2_option() {
  return {"energy-l2", OptionType::real, option_text(kEnergyL2),
          "penalty alpha (mean f(z_pos)^2 + mean f(z_neg or proposal)^2) against energies that run away where "
          "the samples do not reach (0: off)"};
}

double energy_l2(const OptionValues& values) { return read_shared(values, energy_l2_option(), false); }

void PriorObjective::check(const Prior& prior) const {
  if (!supports(prior))
    throw std::invalid_argument("objective '" + name() + "' needs " + requirement() + ", not the '" + prior.kind() +
                                "' prior");
}

void PriorObjective::check_data_parallel(int world_size) const {
  throw OptionError("objective", "'" + name() + "' is not data-parallel yet (" + std::to_string(world_size) +
                                     " processes): train it in one process, or with another objective (see README, "
                                     "\"Many processes, many machines\")");
}

bool is_energy_prior(const Prior& prior) { return dynamic_cast<const EnergyPrior*>(&prior) != nullptr; }

EnergyPrior& as_energy_prior(Prior& prior) {
  if (auto* ebm = dynamic_cast<EnergyPrior*>(&prior)) return *ebm;
  throw std::invalid_argument("expected an energy prior, got the '" + prior.kind() + "' prior");
}

std::string default_objective(const std::string& prior_kind) { return prior_kind == "ebm" ? "snelbo" : "exact"; }

torch::Tensor encoder_prior_term(EnergyPrior& prior, const DiagonalGaussian& q, const torch::Tensor& z) {
  // f(z) - f(sg(z)) + sg(f(z)): the value of f(z), with f's parameters' gradient cancelled and
  // the gradient through z kept.
  auto f_z = prior.energy(z);
  auto f_through_z = f_z - prior.energy(z.detach()) + f_z.detach();
  return q.expected_standard_normal_log_prob() - f_through_z.mean(0) - prior.b.detach();
}

torch::Tensor part_of_mean(const torch::Tensor& values, const BatchShard& items) {
  TORCH_CHECK(values.size(0) == items.size, "part_of_mean: ", values.size(0), " values for ", items.size, " items");
  return items.whole() ? values.mean() : values.sum() / static_cast<double>(items.global);
}

torch::Tensor shared_mean(const torch::Tensor& values, const BatchShard& rows, const BatchShard& items) {
  auto part = part_of_mean(values, items);
  return rows.whole() ? part : part * (static_cast<double>(rows.global) / static_cast<double>(rows.size));
}

DiagonalGaussian whole_batch_posterior(const DiagonalGaussian& q, Distributed& dist, const BatchShard& rows) {
  // Each process's rows in place, zeros elsewhere: the sum over the processes is the batch, exactly.
  auto mu = torch::zeros({rows.global, q.dim()}, q.mu.options().requires_grad(false));
  auto logvar = torch::zeros_like(mu);
  mu.narrow(0, rows.begin, rows.size).copy_(q.mu.detach());
  logvar.narrow(0, rows.begin, rows.size).copy_(q.logvar.detach());
  dist.all_reduce_sum({mu, logvar}, "the all-reduce of the whole batch's posterior");
  return {mu, logvar};
}

torch::Tensor log_mean_exp(const torch::Tensor& log_weights) {
  return torch::logsumexp(log_weights, 0) - std::log(static_cast<double>(log_weights.size(0)));
}

}  // namespace vae_ebm
