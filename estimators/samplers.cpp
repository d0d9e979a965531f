#include <torch/torch.h>

#include "estimators/samplers.h"

#include <cmath>
#include <sstream>

#include "common/error.h"
#include "common/text.h"

namespace vae_ebm {

const OptionSet<SamplerOptions>& sampler_option_set() {
  using O = SamplerOptions;
  static const auto set =
      OptionSet<O>()
          .integer("sampler-steps", [](O& o) -> int64_t& { return o.steps(); }, "langevin, mala: steps")
          .real("sampler-step-size", [](O& o) -> double& { return o.step_size(); },
                "langevin, mala: step size s; hmc: leapfrog step")
          .integer("sampler-flow-steps", [](O& o) -> int64_t& { return o.flow_steps(); },
                   "flow-langevin, flow-mala, transport: steps")
          .real("sampler-flow-step-size", [](O& o) -> double& { return o.flow_step_size(); },
                "flow-langevin, flow-mala: step size s; transport: s in the flow's base space")
          .integer("hmc-trajectories", [](O& o) -> int64_t& { return o.trajectories(); }, "hmc: trajectories")
          .integer("hmc-leapfrog", [](O& o) -> int64_t& { return o.leapfrog(); }, "hmc: leapfrog steps per trajectory")
          .integer("sir-candidates", [](O& o) -> int64_t& { return o.candidates(); }, "flow-sir: candidates per draw")
          .real("sir-base-fraction", [](O& o) -> double& { return o.base_fraction(); },
                "flow-sir: share of the candidates drawn from the base N(0, I) (bounds the weights)")
          .real("langevin-noise", [](O& o) -> double& { return o.noise(); },
                "langevin, flow-langevin: noise scale eta (0: gradient flow)");
  return set;
}

void SamplerOptions::validate() const {
  if (steps() < 0) throw OptionError("sampler-steps", "must be >= 0, got " + std::to_string(steps()));
  if (flow_steps() < 0) throw OptionError("sampler-flow-steps", "must be >= 0, got " + std::to_string(flow_steps()));
  if (!(step_size() > 0 && std::isfinite(step_size())))
    throw OptionError("sampler-step-size", "must be finite and > 0, got " + shortest(step_size()));
  if (!(flow_step_size() > 0 && std::isfinite(flow_step_size())))
    throw OptionError("sampler-flow-step-size", "must be finite and > 0, got " + shortest(flow_step_size()));
  if (trajectories() < 0) throw OptionError("hmc-trajectories", "must be >= 0, got " + std::to_string(trajectories()));
  if (leapfrog() < 1) throw OptionError("hmc-leapfrog", "must be >= 1, got " + std::to_string(leapfrog()));
  if (candidates() < 1) throw OptionError("sir-candidates", "must be >= 1, got " + std::to_string(candidates()));
  if (!(noise() >= 0 && std::isfinite(noise())))
    throw OptionError("langevin-noise", "must be finite and >= 0, got " + shortest(noise()));
  if (!(base_fraction() >= 0 && base_fraction() < 1))
    throw OptionError("sir-base-fraction", "must be in [0, 1), got " + shortest(base_fraction()));
}

namespace {

using Potential = std::function<torch::Tensor(const torch::Tensor&)>;

// U(z) [B] and grad U(z) [B, D] by autograd, whatever the caller's grad mode.
std::pair<torch::Tensor, torch::Tensor> value_and_grad(const Potential& potential, const torch::Tensor& z) {
  torch::AutoGradMode enable(true);
  auto x = z.detach().requires_grad_(true);
  auto u = potential(x);
  auto g = torch::autograd::grad({u.sum()}, {x})[0];
  return {u.detach(), g.detach()};
}

SamplerDraws chains(EnergyPrior& prior, const torch::Tensor& z0, int64_t steps, double step_size, bool metropolis,
                    double noise, at::Generator& generator) {
  // MALA's proposal is the step with unit noise; eta applies to the unadjusted chains.
  auto result = prior.run_langevin(
      z0, LangevinOptions().steps(steps).step_size(step_size).metropolis(metropolis).noise(metropolis ? 1.0 : noise),
      generator);
  SamplerDraws out;
  out.z = result.z;
  if (metropolis) out.acceptance = result.acceptance_rate;
  return out;
}

torch::Tensor base_draws(EnergyPrior& prior, int64_t n, at::Generator& generator) {
  return torch::randn({n, prior.latent_dim()}, generator, prior.b.options());
}

torch::Tensor flow_draws(Flow& flow, int64_t n, at::Generator& generator) {
  torch::NoGradGuard no_grad;
  auto u = torch::randn({n, flow->dim()}, generator, flow->parameters().front().options());
  return flow->push(u).first;
}

// The pull-back of p through the flow x = T(u): U(u) = f(T(u)) + |T(u)|^2 / 2 - log |det dT/du|
// (up to a constant), where log |det dT/du| = log N(u; 0, I) - log q(T(u)).
SamplerDraws transport(EnergyPrior& prior, Flow& flow, int64_t n, int64_t steps, double step_size,
                       at::Generator& generator) {
  Potential pulled_back = [&](const torch::Tensor& u) {
    auto [x, log_q] = flow->push(u);
    return prior.energy(x) + 0.5 * x.pow(2).sum(-1) + 0.5 * u.pow(2).sum(-1) + log_q;
  };
  auto u0 = torch::randn({n, flow->dim()}, generator, flow->parameters().front().options());
  auto result = langevin(pulled_back, u0, LangevinOptions().steps(steps).step_size(step_size).metropolis(true),
                         generator);
  torch::NoGradGuard no_grad;
  SamplerDraws out;
  out.z = flow->push(result.z).first;
  out.acceptance = result.acceptance_rate;
  return out;
}

Registry<SamplerEntry> make_registry() {
  Registry<SamplerEntry> r("sampler");
  r.add("langevin", {"unadjusted Langevin from N(0, I)", false,
                     [](EnergyPrior& p, const FlowSource&, int64_t n, const SamplerOptions& o, at::Generator& g) {
                       return chains(p, base_draws(p, n, g), o.steps(), o.step_size(), false, o.noise(), g);
                     }});
  r.add("mala", {"Metropolis-adjusted Langevin (MALA) from N(0, I)", false,
                 [](EnergyPrior& p, const FlowSource&, int64_t n, const SamplerOptions& o, at::Generator& g) {
                   return chains(p, base_draws(p, n, g), o.steps(), o.step_size(), true, 1.0, g);
                 }});
  r.add("hmc", {"Hamiltonian Monte Carlo from N(0, I)",
                false, [](EnergyPrior& p, const FlowSource&, int64_t n, const SamplerOptions& o, at::Generator& g) {
                  Potential u = [&p](const torch::Tensor& z) { return p.potential(z); };
                  auto result = hmc_chains(u, base_draws(p, n, g), o.trajectories(), o.leapfrog(), o.step_size(), g);
                  SamplerDraws out;
                  out.z = result.z;
                  out.acceptance = result.acceptance_rate;
                  return out;
                }});
  r.add("flow", {"draws of the flow (the objective's, else one fitted to the energy), uncorrected", true,
                 [](EnergyPrior&, const FlowSource& flow, int64_t n, const SamplerOptions&, at::Generator& g) {
                   auto f = flow();
                   SamplerDraws out;
                   out.z = flow_draws(f, n, g);
                   return out;
                 }});
  r.add("flow-sir", {"sampling-importance-resampling: one of several draws of (1 - a) q + a N(0, I), kept by "
                     "importance weight",
                     true, [](EnergyPrior& p, const FlowSource& flow, int64_t n, const SamplerOptions& o, at::Generator& g) {
                       auto f = flow();
                       return flow_sir(f, [&p](const torch::Tensor& z) { return p.energy(z); }, n, o.candidates(),
                                       o.base_fraction(), g);
                     }});
  r.add("flow-langevin", {"unadjusted Langevin started at flow draws",
                          true, [](EnergyPrior& p, const FlowSource& flow, int64_t n, const SamplerOptions& o,
                                   at::Generator& g) {
                            auto f = flow();
                            return chains(p, flow_draws(f, n, g), o.flow_steps(), o.flow_step_size(), false, o.noise(), g);
                          }});
  r.add("flow-mala", {"MALA started at flow draws",
                      true, [](EnergyPrior& p, const FlowSource& flow, int64_t n, const SamplerOptions& o,
                               at::Generator& g) {
                        auto f = flow();
                        return chains(p, flow_draws(f, n, g), o.flow_steps(), o.flow_step_size(), true, 1.0, g);
                      }});
  r.add("transport", {"MALA in the flow's base space (neural transport), from N(0, I) there",
                      true, [](EnergyPrior& p, const FlowSource& flow, int64_t n, const SamplerOptions& o,
                               at::Generator& g) {
                        auto f = flow();
                        return transport(p, f, n, o.flow_steps(), o.flow_step_size(), g);
                      }});
  return r;
}

}  // namespace

const Registry<SamplerEntry>& sampler_registry() {
  static const Registry<SamplerEntry> registry = make_registry();
  return registry;
}

std::vector<std::string> sampler_names() { return sampler_registry().names(); }

// HMC: the lowest or tied-lowest FD on every energy row of bench/results/samplers (the joint row
// 43.1 against Langevin's 172.4, post hoc 35.5 against 35.5) at 1.3-1.8x Langevin's time, with no
// flow to fit for runs that trained none.
std::string default_sampler() { return "hmc"; }

SamplerDraws draw_samples(const std::string& name, EnergyPrior& prior, const FlowSource& flow, int64_t n,
                          const SamplerOptions& options, at::Generator& generator) {
  const auto& entry = sampler_registry().at(name);
  options.validate();
  auto out = entry.draw(prior, flow, n, options, generator);
  out.z = out.z.detach();
  return out;
}

std::string describe_sampler(const std::string& name, const SamplerOptions& o) {
  std::ostringstream text;
  text << name << ": ";
  if (name == "langevin" || name == "mala")
    text << (name == "mala" ? "Metropolis-adjusted " : "") << "Langevin from N(0, I), " << o.steps() << " steps of "
         << o.step_size() << (name == "langevin" && o.noise() != 1.0 ? ", noise " + shortest(o.noise()) : "");
  else if (name == "hmc")
    text << "HMC from N(0, I), " << o.trajectories() << " trajectories of " << o.leapfrog() << " leapfrog steps of "
         << o.step_size();
  else if (name == "flow")
    text << "draws of the flow, uncorrected";
  else if (name == "flow-sir")
    text << "one of " << o.candidates() << " candidates of (1 - " << o.base_fraction() << ") q + " << o.base_fraction()
         << " N(0, I), by importance weight";
  else if (name == "flow-langevin" || name == "flow-mala")
    text << (name == "flow-mala" ? "Metropolis-adjusted " : "") << "Langevin from flow draws, " << o.flow_steps()
         << " steps of " << o.flow_step_size();
  else if (name == "transport")
    text << "MALA in the flow's base space, " << o.flow_steps() << " steps of " << o.flow_step_size();
  return text.str();
}

SamplerDraws flow_sir(Flow& flow, const Potential& energy, int64_t n, int64_t candidates, double base_fraction,
                      at::Generator& generator) {
  torch::NoGradGuard no_grad;
  const int64_t total = n * candidates;
  const auto from_base = static_cast<int64_t>(std::llround(base_fraction * static_cast<double>(total)));
  const double a = static_cast<double>(from_base) / static_cast<double>(total);
  auto mixture = sample_flow_mixture(flow, from_base, total - from_base, a, generator);
  // The mixture's samples in a random order, so that each draw's candidates are i.i.d. from r.
  auto order = torch::randperm(total, generator, torch::TensorOptions().dtype(torch::kLong).device(mixture.z.device()));
  auto z = mixture.z.index_select(0, order);
  auto log_w = (mixture.log_correction.index_select(0, order) - energy(z)).to(torch::kDouble).reshape({n, candidates});
  // A candidate with a NaN weight is never kept; a draw whose candidates all have zero or NaN
  // weight keeps its first.
  log_w = torch::where(torch::isnan(log_w), torch::full_like(log_w, -INFINITY), log_w);
  auto shifted = log_w - std::get<0>(log_w.max(1, true)).clamp_min(-1e300);
  auto w = shifted.exp();
  w = torch::where(w.sum(1, true) > 0, w, torch::ones_like(w));
  auto pick = torch::multinomial(w, 1, false, generator).squeeze(1);
  const auto ess = w.sum(1).pow(2) / w.pow(2).sum(1) / static_cast<double>(candidates);
  SamplerDraws out;
  out.z = z.reshape({n, candidates, -1}).index({torch::arange(n, pick.options()), pick});
  out.resampling_ess = ess.mean().item<double>();
  return out;
}

}  // namespace vae_ebm
