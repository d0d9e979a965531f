#include <torch/torch.h>

#include "prior/objective.h"

#include <cmath>
#include <stdexcept>

#include "common/error.h"
#include "common/registry.h"
#include "prior/energy.h"

namespace vae_ebm {

// Factories live in each objective's own file.
std::unique_ptr<PriorObjective> make_exact_objective(const ObjectiveOptions&);
std::unique_ptr<PriorObjective> make_snelbo_objective(const ObjectiveOptions&);
std::unique_ptr<PriorObjective> make_short_run_mcmc_objective(const ObjectiveOptions&);
std::unique_ptr<PriorObjective> make_long_run_mcmc_objective(const ObjectiveOptions&);
std::unique_ptr<PriorObjective> make_nce_objective(const ObjectiveOptions&);
std::unique_ptr<PriorObjective> make_fce_objective(const ObjectiveOptions&);
std::unique_ptr<PriorObjective> make_score_matching_objective(const ObjectiveOptions&);

namespace {
const Registry<ObjectiveFactory>& registry() {
  static const auto entries = Registry<ObjectiveFactory>("objective")
                                  .add("exact", make_exact_objective)
                                  .add("snelbo", make_snelbo_objective)
                                  .add("short-run-mcmc", make_short_run_mcmc_objective)
                                  .add("long-run-mcmc", make_long_run_mcmc_objective)
                                  .add("nce", make_nce_objective)
                                  .add("fce", make_fce_objective)
                                  .add("score-matching", make_score_matching_objective);
  return entries;
}
}  // namespace

void ObjectiveOptions::validate_flow_lr() const {
  if (!(flow_lr_ > 0 && std::isfinite(flow_lr_)))
    throw OptionError("flow-lr", "must be finite and > 0, got " + std::to_string(flow_lr_));
}

std::vector<std::string> objective_names() { return registry().names(); }

std::unique_ptr<PriorObjective> make_objective(const std::string& name, const ObjectiveOptions& options) {
  return registry().at(name)(options);
}

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
