#include <torch/torch.h>

#include "prior/objective.h"

#include <cmath>
#include <stdexcept>

namespace vae_ebm {

// Factories live in each objective's own file.
std::unique_ptr<PriorObjective> make_exact_objective(const ObjectiveOptions&);
std::unique_ptr<PriorObjective> make_snelbo_objective(const ObjectiveOptions&);
std::unique_ptr<PriorObjective> make_short_run_mcmc_objective(const ObjectiveOptions&);
std::unique_ptr<PriorObjective> make_long_run_mcmc_objective(const ObjectiveOptions&);
std::unique_ptr<PriorObjective> make_nce_objective(const ObjectiveOptions&);

namespace {
const std::vector<std::pair<std::string, ObjectiveFactory>>& registry() {
  static const std::vector<std::pair<std::string, ObjectiveFactory>> entries = {
      {"exact", make_exact_objective},
      {"snelbo", make_snelbo_objective},
      {"short-run-mcmc", make_short_run_mcmc_objective},
      {"long-run-mcmc", make_long_run_mcmc_objective},
      {"nce", make_nce_objective},
  };
  return entries;
}
}  // namespace

std::vector<std::string> objective_names() {
  std::vector<std::string> names;
  for (const auto& entry : registry()) names.push_back(entry.first);
  return names;
}

std::unique_ptr<PriorObjective> make_objective(const std::string& name, const ObjectiveOptions& options) {
  for (const auto& entry : registry())
    if (entry.first == name) return entry.second(options);
  std::string valid;
  for (const auto& n : objective_names()) valid += (valid.empty() ? "" : ", ") + n;
  throw std::invalid_argument("unknown objective '" + name + "' (valid: " + valid + ")");
}

std::string default_objective(const std::string& prior_kind) { return prior_kind == "ebm" ? "snelbo" : "exact"; }

torch::Tensor log_mean_exp(const torch::Tensor& log_weights) {
  return torch::logsumexp(log_weights, 0) - std::log(static_cast<double>(log_weights.size(0)));
}

}  // namespace vae_ebm
