#include <torch/torch.h>

#include "estimators/ais.h"

#include <algorithm>
#include <functional>
#include <cmath>
#include <sstream>
#include <stdexcept>

#include "common/error.h"
#include "prior/langevin.h"

namespace vae_ebm {

std::vector<std::string> ais_schedules() { return {"linear", "sigmoid"}; }

void AisOptions::validate() const {
  auto fail = [](const char* option, const std::string& message) { throw OptionError(option, message); };
  if (temperatures_ < 1) fail("temperatures", "AIS temperatures must be >= 1, got " + std::to_string(temperatures_));
  const auto names = ais_schedules();
  if (std::find(names.begin(), names.end(), schedule_) == names.end())
    fail("schedule", "unknown AIS schedule '" + schedule_ + "' (valid: linear, sigmoid)");
  if (!(sigmoid_width_ > 0)) fail("sigmoid-width", "AIS sigmoid width must be > 0, got " + std::to_string(sigmoid_width_));
  if (chains_ < 1) fail("chains", "AIS chains must be >= 1, got " + std::to_string(chains_));
  if (steps_ < 1) fail("steps", "AIS steps per temperature must be >= 1, got " + std::to_string(steps_));
  if (!(step_size_ > 0)) fail("step-size", "AIS step size must be > 0, got " + std::to_string(step_size_));
  if (!(target_acceptance_ >= 0 && target_acceptance_ < 1))
    fail("target-acceptance", "AIS target acceptance must be in [0, 1) (0: a fixed step), got " +
                                  std::to_string(target_acceptance_));
}

torch::Tensor ais_schedule(const AisOptions& options) {
  options.validate();
  const int64_t t = options.temperatures();
  auto u = torch::arange(t + 1, torch::kDouble) / static_cast<double>(t);
  torch::Tensor beta;
  if (options.schedule() == "linear") {
    beta = u;
  } else {
    auto s = torch::sigmoid(options.sigmoid_width() * (2 * u - 1));
    beta = (s - s[0]) / (s[t] - s[0]);
  }
  // Exact end points, whatever the rounding above.
  beta[0] = 0.0;
  beta[t] = 1.0;
  return beta;
}

namespace {

std::string describe(const std::string& direction, const AisOptions& o, int64_t chains) {
  std::ostringstream out;
  out << "AIS(" << direction << ", T=" << o.temperatures() << " " << o.schedule() << ", chains=" << chains
      << ", MALA " << o.steps() << "x s=" << o.step_size();
  if (o.target_acceptance() > 0) out << " adapted to acceptance " << o.target_acceptance();
  out << ")";
  return out.str();
}

// MALA on U_beta(z) = beta f(z) + |z|^2 / 2 from z.
using Transition = std::function<LangevinResult(const torch::Tensor& z, double beta, const LangevinOptions&)>;

// Differentiates f by autograd: any energy.
Transition autograd_transition(const EnergyFn& energy, at::Generator& generator) {
  return [&energy, &generator](const torch::Tensor& z, double beta, const LangevinOptions& options) {
    auto potential = [&energy, beta](const torch::Tensor& x) { return beta * energy(x) + 0.5 * (x * x).sum(-1); };
    return langevin(potential, z, options, generator);
  };
}

// The energy prior's hand-derived gradient, chains split over threads.
Transition prior_transition(EnergyPrior& prior, at::Generator& generator) {
  return [&prior, &generator](const torch::Tensor& z, double beta, const LangevinOptions& options) {
    return prior.run_langevin(z, options, generator, beta);
  };
}

// One pass along `betas` (in the order given): for k = 1..K-1, log w += -(b_k - b_{k-1}) f(z),
// then MALA on U_k = b_k f + |z|^2 / 2 unless k is the last index and !transition_last.
AisResult run_path(const EnergyFn& energy, const Transition& transition, torch::Tensor z, const torch::Tensor& betas,
                   const AisOptions& options, bool transition_last) {
  auto beta = betas.accessor<double, 1>();
  const int64_t last = betas.size(0) - 1;
  auto log_w = torch::zeros({z.size(0)}, torch::kDouble);
  auto mala = LangevinOptions().steps(options.steps()).step_size(options.step_size()).noise(1.0).metropolis(true);
  double accepted = 0;
  int64_t transitions = 0;
  for (int64_t k = 1; k <= last; ++k) {
    const double delta = beta[k] - beta[k - 1];
    {
      torch::NoGradGuard no_grad;
      auto f = energy(z);
      TORCH_CHECK(f.dim() == 1 && f.size(0) == z.size(0), "AIS energy must map [S, D] to [S], got ", f.sizes(),
                  " for input ", z.sizes());
      log_w -= delta * f.detach().to(torch::kCPU, torch::kDouble);
    }
    if (k == last && !transition_last) break;
    auto result = transition(z, beta[k], mala);
    z = result.z;
    accepted += result.acceptance_rate;
    ++transitions;
    if (options.target_acceptance() > 0)
      mala.step_size(std::clamp(mala.step_size() * std::exp(0.1 * (result.acceptance_rate - options.target_acceptance())),
                                1e-4, 10.0));
  }
  AisResult out;
  out.log_weights = log_w;
  out.samples = z.detach();
  out.acceptance_rate = transitions > 0 ? accepted / static_cast<double>(transitions) : 1.0;
  out.last_step_size = mala.step_size();
  return out;
}

AisResult forward_ais(const EnergyFn& energy, const Transition& transition, int64_t dim, const AisOptions& options,
                      at::Generator& generator, torch::TensorOptions tensor_options) {
  options.validate();
  TORCH_CHECK(dim > 0, "AIS needs a dimension > 0, got ", dim);
  auto betas = ais_schedule(options);
  auto z0 = torch::randn({options.chains(), dim}, generator, tensor_options);
  auto out = run_path(energy, transition, z0, betas, options, /*transition_last=*/true);
  out.log_z = log_z_from_log_weights(out.log_weights, describe("forward", options, options.chains()));
  return out;
}

AisResult reverse_ais(const EnergyFn& energy, const Transition& transition, const torch::Tensor& target_samples,
                      const AisOptions& options) {
  options.validate();
  TORCH_CHECK(target_samples.dim() == 2 && target_samples.size(0) > 0,
              "reverse AIS needs target samples [N, D] with N > 0, got ", target_samples.sizes());
  auto betas = ais_schedule(options).flip(0);
  auto out = run_path(energy, transition, target_samples.detach(), betas, options, /*transition_last=*/false);
  // E[w_rev] = Z_0 / Z_T = 1 / Z: negate the log-mean-exp. The delta-method error and the
  // ESS of the reverse weights carry over unchanged.
  out.log_z = log_z_from_log_weights(out.log_weights, describe("reverse", options, target_samples.size(0)));
  out.log_z.value = -out.log_z.value;
  return out;
}

}  // namespace

AisResult ais_log_z(const EnergyFn& energy, int64_t dim, const AisOptions& options, at::Generator& generator,
                    torch::TensorOptions tensor_options) {
  return forward_ais(energy, autograd_transition(energy, generator), dim, options, generator, tensor_options);
}

AisResult ais_log_z(EnergyPrior& prior, const AisOptions& options, at::Generator& generator) {
  EnergyFn energy = [&prior](const torch::Tensor& z) { return prior.energy(z); };
  return forward_ais(energy, prior_transition(prior, generator), prior.latent_dim(), options, generator,
                     prior.b.options());
}

AisResult ais_log_z(const EnergyFn& energy, const AisStart& start, const AisOptions& options, at::Generator& generator) {
  options.validate();
  // The path's energy relative to its start, and the potential of its MALA transitions.
  EnergyFn relative = [&energy, &start](const torch::Tensor& z) { return energy(z) - start.relative_energy(z); };
  Transition transition = [&](const torch::Tensor& z, double beta, const LangevinOptions& mala) {
    auto potential = [&](const torch::Tensor& x) {
      auto g = start.relative_energy(x);
      return 0.5 * (x * x).sum(-1) + g + beta * (energy(x) - g);
    };
    return langevin(potential, z, mala, generator);
  };
  auto z0 = start.sample(options.chains(), generator);
  auto out = run_path(relative, transition, z0, ais_schedule(options), options, /*transition_last=*/true);
  out.log_z = log_z_from_log_weights(out.log_weights, ais_estimator_name(options, start.name));
  return out;
}

std::string ais_estimator_name(const AisOptions& options, const std::string& start) {
  return describe(start.empty() ? "forward" : "forward from " + start, options, options.chains());
}

AisResult reverse_ais_log_z(const EnergyFn& energy, const torch::Tensor& target_samples, const AisOptions& options,
                            at::Generator& generator) {
  return reverse_ais(energy, autograd_transition(energy, generator), target_samples, options);
}

AisResult reverse_ais_log_z(EnergyPrior& prior, const torch::Tensor& target_samples, const AisOptions& options,
                            at::Generator& generator) {
  TORCH_CHECK(target_samples.dim() == 2 && target_samples.size(1) == prior.latent_dim(),
              "reverse AIS: target samples must be [N, ", prior.latent_dim(), "], got ", target_samples.sizes());
  EnergyFn energy = [&prior](const torch::Tensor& z) { return prior.energy(z); };
  return reverse_ais(energy, prior_transition(prior, generator), target_samples.to(prior.b.options()), options);
}

}  // namespace vae_ebm
