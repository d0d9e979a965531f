#include <torch/torch.h>

#include "estimators/flow_log_z.h"

#include <cmath>
#include <sstream>

#include "common/error.h"
#include "prior/posterior.h"

namespace vae_ebm {

void FlowFitOptions::validate() const {
  if (steps_ < 0) throw OptionError("flow-steps", "must be >= 0, got " + std::to_string(steps_));
  if (batch_ < 1) throw OptionError("flow-batch", "must be >= 1, got " + std::to_string(batch_));
  if (!(lr_ > 0 && std::isfinite(lr_))) throw OptionError("flow-lr", "must be finite and > 0, got " + std::to_string(lr_));
  if (refine_steps_ < 0) throw OptionError("flow-refine-steps", "must be >= 0, got " + std::to_string(refine_steps_));
  if (refine_batch_ < 2) throw OptionError("flow-refine-batch", "must be >= 2, got " + std::to_string(refine_batch_));
  flow_.validate();
}

double fit_flow_reverse_kl(Flow& flow, const EnergyFn& energy, const FlowFitOptions& options, at::Generator& generator) {
  options.validate();
  torch::AutoGradMode enable_grad(true);  // also when called under a NoGradGuard (validation)
  torch::optim::Adam adam(flow->parameters(), torch::optim::AdamOptions(options.lr()));
  double recent = 0;
  int64_t counted = 0;
  for (int64_t step = 0; step < options.steps(); ++step) {
    auto gap = reverse_kl_gap(flow, energy, options.batch(), generator);
    step_flow(flow, adam, gap);
    if (step >= options.steps() - 100) {
      recent += gap.item<double>();
      ++counted;
    }
  }
  for (auto& p : flow->parameters()) p.mutable_grad() = torch::Tensor();
  return counted > 0 ? recent / counted : std::nan("");
}

double refine_flow_forward_kl(Flow& flow, const EnergyFn& energy, const FlowFitOptions& options, double base_fraction,
                              at::Generator& generator) {
  options.validate();
  if (!(base_fraction >= 0 && base_fraction < 1))
    throw OptionError("flow-base-fraction", "must be in [0, 1), got " + std::to_string(base_fraction));
  torch::AutoGradMode enable_grad(true);
  torch::optim::Adam adam(flow->parameters(), torch::optim::AdamOptions(options.lr()));
  const int64_t n = options.refine_batch();
  const int64_t from_base = std::llround(base_fraction * static_cast<double>(n));
  const double a = static_cast<double>(from_base) / static_cast<double>(n);
  double recent = 0;
  int64_t counted = 0;
  for (int64_t step = 0; step < options.refine_steps(); ++step) {
    auto mixture = sample_flow_mixture(flow, from_base, n - from_base, a, generator);
    torch::Tensor w;
    {
      torch::NoGradGuard no_grad;
      w = torch::softmax(-energy(mixture.z) + mixture.log_correction, 0);
    }
    auto loss = -(w * flow->log_prob(mixture.z)).sum() + reverse_kl_gap(flow, energy, options.batch(), generator);
    step_flow(flow, adam, loss);
    if (step >= options.refine_steps() - 100) {
      recent += 1.0 / (w * w).sum().item<double>();
      ++counted;
    }
  }
  for (auto& p : flow->parameters()) p.mutable_grad() = torch::Tensor();
  return counted > 0 ? recent / counted : std::nan("");
}

AisStart flow_ais_start(Flow& flow) {
  AisStart start;
  start.sample = [flow](int64_t n, at::Generator& generator) mutable {
    torch::NoGradGuard no_grad;
    return flow->sample_with_log_prob(n, generator).first;
  };
  start.relative_energy = [flow](const torch::Tensor& z) mutable {
    return standard_normal_log_prob(z) - flow->log_prob(z);
  };
  start.name = "flow";
  return start;
}

torch::Tensor flow_importance_log_weights(Flow& flow, const EnergyFn& energy, int64_t samples, double base_fraction,
                                         int64_t first, int64_t n, at::Generator& generator) {
  TORCH_CHECK(samples > 0, "log Z estimate needs samples > 0, got ", samples);
  TORCH_CHECK(first >= 0 && n > 0 && first + n <= samples, "flow importance samples [", first, ", ", first + n,
              ") are not within the ", samples, " samples");
  if (!(base_fraction >= 0 && base_fraction < 1))
    throw OptionError("flow-base-fraction", "must be in [0, 1), got " + std::to_string(base_fraction));
  torch::NoGradGuard no_grad;
  const int64_t from_base = std::llround(base_fraction * static_cast<double>(samples));
  // The mixture's weight is the fraction actually drawn (round(a S) / S), which keeps the
  // estimate unbiased for any S; the first from_base samples come from the base.
  const double a = static_cast<double>(from_base) / static_cast<double>(samples);
  const int64_t base_here = std::max<int64_t>(0, std::min(n, from_base - first));
  auto mixture = sample_flow_mixture(flow, base_here, n - base_here, a, generator);
  return (-energy(mixture.z) + mixture.log_correction).to(torch::kCPU, torch::kDouble);
}

std::string flow_importance_name(int64_t samples, double base_fraction) {
  std::ostringstream name;
  name << "IS(flow";
  if (base_fraction > 0) name << " + " << base_fraction << " base";
  name << ", S=" << samples << ")";
  return name.str();
}

Estimate log_z_flow_importance(Flow& flow, const EnergyFn& energy, int64_t samples, double base_fraction,
                               at::Generator& generator, int64_t chunk) {
  TORCH_CHECK(samples > 0, "log Z estimate needs samples > 0, got ", samples);
  std::vector<torch::Tensor> parts;
  for (int64_t done = 0; done < samples; done += chunk)
    parts.push_back(flow_importance_log_weights(flow, energy, samples, base_fraction, done,
                                                std::min(chunk, samples - done), generator));
  return log_z_from_log_weights(torch::cat(parts), flow_importance_name(samples, base_fraction));
}

}  // namespace vae_ebm
