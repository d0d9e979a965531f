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
  flow_.validate();
}

double fit_flow_reverse_kl(Flow& flow, const EnergyFn& energy, const FlowFitOptions& options, at::Generator& generator) {
  options.validate();
  torch::AutoGradMode enable_grad(true);  // also when called under a NoGradGuard (validation)
  auto params = flow->parameters();
  torch::optim::Adam adam(params, torch::optim::AdamOptions(options.lr()));
  double recent = 0;
  int64_t counted = 0;
  for (int64_t step = 0; step < options.steps(); ++step) {
    auto [z, log_q] = flow->sample_with_log_prob(options.batch(), generator);
    // log q - log(p0 exp(-f)) per sample: its mean is KL(q || p) - log Z.
    auto gap = (log_q + energy(z) - standard_normal_log_prob(z)).mean();
    // Gradients for the flow only: the energy's parameters are left as they are.
    auto grads = torch::autograd::grad({gap}, params);
    for (size_t i = 0; i < params.size(); ++i) params[i].mutable_grad() = grads[i];
    adam.step();
    if (step >= options.steps() - 100) {
      recent += gap.item<double>();
      ++counted;
    }
  }
  for (auto& p : params) p.mutable_grad() = torch::Tensor();
  return counted > 0 ? recent / counted : std::nan("");
}

Estimate log_z_flow_importance(Flow& flow, const EnergyFn& energy, int64_t samples, double base_fraction,
                               at::Generator& generator, int64_t chunk) {
  TORCH_CHECK(samples > 0, "log Z estimate needs samples > 0, got ", samples);
  if (!(base_fraction >= 0 && base_fraction < 1))
    throw OptionError("flow-base-fraction", "must be in [0, 1), got " + std::to_string(base_fraction));
  torch::NoGradGuard no_grad;
  const int64_t from_base = std::llround(base_fraction * static_cast<double>(samples));
  const auto options = flow->parameters().front().options();
  // The mixture's weights are the fractions actually drawn (round(a S) / S), which keeps the
  // estimate unbiased for any S.
  const double a = static_cast<double>(from_base) / static_cast<double>(samples);
  const double log_a = std::log(a), log_1ma = std::log1p(-a);
  std::vector<torch::Tensor> parts;
  auto add = [&](const torch::Tensor& z, const torch::Tensor& log_q) {
    auto log_p0 = standard_normal_log_prob(z);
    auto log_r = a > 0 ? torch::logaddexp(log_1ma + log_q, log_a + log_p0) : log_q;
    parts.push_back(-energy(z) + log_p0 - log_r);
  };
  for (int64_t done = 0; done < samples; done += chunk) {
    const int64_t n = std::min(chunk, samples - done);
    // The first from_base samples come from the base, the rest from the flow.
    const int64_t base_here = std::max<int64_t>(0, std::min(n, from_base - done));
    if (base_here > 0) {
      auto z = torch::randn({base_here, flow->dim()}, generator, options);
      add(z, flow->log_prob(z));
    }
    if (n - base_here > 0) {
      auto [z, log_q] = flow->sample_with_log_prob(n - base_here, generator);
      add(z, log_q);
    }
  }
  std::ostringstream name;
  name << "IS(flow";
  if (base_fraction > 0) name << " + " << base_fraction << " base";
  name << ", S=" << samples << ")";
  return log_z_from_log_weights(torch::cat(parts), name.str());
}

}  // namespace vae_ebm
