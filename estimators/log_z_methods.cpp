#include <torch/torch.h>

#include "estimators/log_z_methods.h"

#include <limits>
#include <optional>
#include <sstream>

#include "common/registry.h"
#include "common/text.h"
#include "data/seed.h"
#include "estimators/log_z.h"

namespace vae_ebm {

torch::Tensor in_blocks(Distributed& dist, int64_t total, int64_t block, int64_t columns, uint64_t seed,
                        torch::Device device, const BlockFn& fn, const std::string& what) {
  TORCH_CHECK(total > 0 && block > 0 && columns > 0, "in_blocks: ", total, " items in blocks of ", block, ", ", columns,
              " columns");
  const int64_t blocks = (total + block - 1) / block;
  const auto mine = BatchShard::of(blocks, dist.rank(), dist.world_size());
  auto out = torch::zeros({total, columns}, torch::kDouble);
  for (int64_t j = mine.begin; j < mine.begin + mine.size; ++j) {
    const int64_t first = j * block, n = std::min(block, total - first);
    auto gen = make_generator(mix_seed(seed, static_cast<uint64_t>(j)), device);
    auto part = fn(first, n, gen).to(torch::kCPU, torch::kDouble);
    TORCH_CHECK(part.dim() == 2 && part.size(0) == n && part.size(1) == columns, "in_blocks: block ", j, " gave ",
                part.sizes(), ", expected [", n, ", ", columns, "]");
    out.narrow(0, first, n).copy_(part);
  }
  // Each item is one rank's and zero on the others: the sum is every rank's items, exactly.
  dist.all_reduce_sum({out}, what);
  return out;
}

uint64_t draw_seed(at::Generator& generator) {
  auto draw = torch::randint(std::numeric_limits<int64_t>::max(), {1}, generator,
                             torch::TensorOptions().dtype(torch::kLong).device(generator.device()));
  return static_cast<uint64_t>(draw.item<int64_t>());
}

Flow fit_log_z_flow(EnergyPrior& prior, const FlowFitOptions& fit, double base_fraction, at::Generator& gen) {
  Flow flow(prior.latent_dim(), fit.flow());
  flow->reset_parameters(gen);
  flow->to(prior.b.device());
  EnergyFn energy = [&prior](const torch::Tensor& z) { return prior.energy(z); };
  fit_flow_reverse_kl(flow, energy, fit, gen);
  if (fit.refine_steps() > 0) refine_flow_forward_kl(flow, energy, fit, base_fraction, gen);
  for (auto& p : flow->parameters()) p.set_requires_grad(false);
  return flow;
}

namespace {
constexpr double kAutoEssFraction = 0.1;

// "IS(flow + ...)" -> "IS(trained flow + ...)": the estimate's name says which flow.
std::string trained_flow_name(const std::string& name) {
  const std::string flow = "IS(flow";
  return name.rfind(flow, 0) == 0 ? "IS(trained flow" + name.substr(flow.size()) : name;
}

// A flow fitted to the energy for its log Z (fit_log_z_flow with the settings' options).
Flow fit_flow_for_log_z(EnergyPrior& prior, const LogZSettings& settings, at::Generator& gen) {
  return fit_log_z_flow(prior, settings.flow, settings.flow_base_fraction, gen);
}

std::string describe_flow_fit(const LogZSettings& s) {
  std::ostringstream how;
  how << "a flow (" << s.flow.flow().layers() << " affine coupling layers of width " << s.flow.flow().hidden()
      << ") fitted to the energy by reverse KL (" << s.flow.steps() << " steps)";
  if (s.flow.refine_steps() > 0) how << " and refined towards the forward KL (" << s.flow.refine_steps() << " steps)";
  return how.str();
}

// log Z by importance sampling from the base: from the one generator, or in blocks
// (LogZSettings::blocks_over).
Estimate base_importance(EnergyPrior& prior, const LogZSettings& s, at::Generator& gen) {
  if (!s.blocks_over) return log_z_importance(prior, s.samples, gen);
  EnergyFn energy = [&prior](const torch::Tensor& z) { return prior.energy(z); };
  auto log_w = in_blocks(
      *s.blocks_over, s.samples, kImportanceBlock, 1, draw_seed(gen), prior.b.device(),
      [&](int64_t, int64_t n, at::Generator& g) {
        return base_log_weights(energy, prior.latent_dim(), n, g, prior.b.options(), kImportanceBlock).unsqueeze(1);
      },
      "the gather of log Z's importance weights");
  return log_z_from_log_weights(log_w.squeeze(1), base_importance_name(s.samples));
}

// log Z by importance sampling from `flow`, fitted to the energy on every process alike; the
// importance samples are drawn in blocks where asked.
Estimate flow_importance(EnergyPrior& prior, const LogZSettings& s, Flow& flow, at::Generator& gen) {
  EnergyFn energy = [&prior](const torch::Tensor& z) { return prior.energy(z); };
  if (!s.blocks_over) return log_z_flow_importance(flow, energy, s.samples, s.flow_base_fraction, gen);
  auto log_w = in_blocks(
      *s.blocks_over, s.samples, kImportanceBlock, 1, draw_seed(gen), prior.b.device(),
      [&](int64_t first, int64_t n, at::Generator& g) {
        return flow_importance_log_weights(flow, energy, s.samples, s.flow_base_fraction, first, n, g).unsqueeze(1);
      },
      "the gather of log Z's importance weights");
  return log_z_from_log_weights(log_w.squeeze(1), flow_importance_name(s.samples, s.flow_base_fraction));
}

// log Z by forward AIS: all chains from the one generator, or in blocks of chains. `run` runs
// the chains the options it is given ask for; `name` is the estimator's.
using RunChains = std::function<AisResult(const AisOptions&, at::Generator&)>;
Estimate annealed_importance(EnergyPrior& prior, const LogZSettings& s, at::Generator& gen, const RunChains& run,
                             const std::string& name) {
  if (!s.blocks_over) return run(s.ais, gen).log_z;
  auto log_w = in_blocks(
      *s.blocks_over, s.ais.chains(), kAisChainBlock, 1, draw_seed(gen), prior.b.device(),
      [&](int64_t, int64_t n, at::Generator& g) {
        auto block = s.ais;
        return run(block.chains(n), g).log_weights.unsqueeze(1);
      },
      "the gather of AIS's log weights");
  return log_z_from_log_weights(log_w.squeeze(1), name);
}

Estimate base_annealed_importance(EnergyPrior& prior, const LogZSettings& s, at::Generator& gen) {
  return annealed_importance(
      prior, s, gen, [&](const AisOptions& o, at::Generator& g) { return ais_log_z(prior, o, g); },
      ais_estimator_name(s.ais));
}

// From `flow`, fitted to the energy on every process alike.
Estimate flow_annealed_importance(EnergyPrior& prior, const LogZSettings& s, Flow& flow, at::Generator& gen) {
  EnergyFn energy = [&prior](const torch::Tensor& z) { return prior.energy(z); };
  const auto start = flow_ais_start(flow);
  return annealed_importance(
      prior, s, gen, [&](const AisOptions& o, at::Generator& g) { return ais_log_z(energy, start, o, g); },
      ais_estimator_name(s.ais, start.name));
}

using LogZFactory = std::function<LogZMethod(const LogZSettings&)>;

const Registry<LogZFactory>& log_z_registry() {
  static const auto registry =
      Registry<LogZFactory>("log-Z method")
          .add("auto",
               [](const LogZSettings& s) {
                 s.flow.validate();
                 s.ais.validate();
                 const LogZSettings settings = s;
                 // The first method whose ESS is at least 10% of its samples: importance sampling
                 // from the base, from the flow training left (if any), from a flow fitted to the
                 // energy, else AIS from that fitted flow. Decided at the first estimate and kept
                 // for the next (evaluation's two estimates, for b and for Zhat, then come from
                 // one method).
                 enum Choice { undecided, base, trained, fitted, fitted_ais };
                 auto chosen = std::make_shared<Choice>(undecided);
                 return LogZMethod{
                     [settings, chosen](EnergyPrior& prior, at::Generator& gen) {
                       auto even = [](const Estimate& e) {
                         return e.ess >= kAutoEssFraction * static_cast<double>(e.count);
                       };
                       auto try_method = [&](Choice choice, auto&& estimate) -> std::optional<Estimate> {
                         if (*chosen != undecided && *chosen != choice) return std::nullopt;
                         auto e = estimate();
                         if (*chosen == undecided && !even(e)) return std::nullopt;
                         *chosen = choice;
                         return e;
                       };
                       if (auto e = try_method(base, [&] { return base_importance(prior, settings, gen); })) return *e;
                       if (Flow flow = settings.trained_flow ? settings.trained_flow() : Flow(nullptr)) {
                         auto e = try_method(trained, [&] {
                           auto estimate = flow_importance(prior, settings, flow, gen);
                           estimate.estimator = trained_flow_name(estimate.estimator);
                           return estimate;
                         });
                         if (e) return *e;
                       }
                       auto flow = fit_flow_for_log_z(prior, settings, gen);
                       if (auto e = try_method(fitted, [&] { return flow_importance(prior, settings, flow, gen); }))
                         return *e;
                       *chosen = fitted_ais;
                       return flow_annealed_importance(prior, settings, flow, gen);
                     },
                     "importance sampling from the base N(0, I) when its ESS is at least 10% of the samples, "
                     "else from the flow the training objective trained alongside the energy (if the checkpoint "
                     "holds one) when its ESS is, else from " + describe_flow_fit(s) + " when its ESS is, else AIS "
                     "from that flow (the estimator's name says which)"};
               })
          .add("is",
               [](const LogZSettings& s) {
                 const LogZSettings settings = s;
                 return LogZMethod{[settings](EnergyPrior& prior, at::Generator& gen) {
                                     return base_importance(prior, settings, gen);
                                   },
                                   "importance sampling from the base N(0, I)"};
               })
          .add("flow",
               [](const LogZSettings& s) {
                 s.flow.validate();
                 const LogZSettings settings = s;
                 return LogZMethod{[settings](EnergyPrior& prior, at::Generator& gen) {
                                     auto flow = fit_flow_for_log_z(prior, settings, gen);
                                     return flow_importance(prior, settings, flow, gen);
                                   },
                                   "importance sampling from " + describe_flow_fit(s) + ", with " +
                                       shortest(s.flow_base_fraction) + " of the samples from the base N(0, I)"};
               })
          .add("flow-ais",
               [](const LogZSettings& s) {
                 s.flow.validate();
                 s.ais.validate();
                 const LogZSettings settings = s;
                 return LogZMethod{[settings](EnergyPrior& prior, at::Generator& gen) {
                                     auto flow = fit_flow_for_log_z(prior, settings, gen);
                                     return flow_annealed_importance(prior, settings, flow, gen);
                                   },
                                   "annealed importance sampling (forward, MALA transitions) from " +
                                       describe_flow_fit(s)};
               })
          .add("ais", [](const LogZSettings& s) {
            s.ais.validate();
            const LogZSettings settings = s;
            return LogZMethod{
                [settings](EnergyPrior& prior, at::Generator& gen) { return base_annealed_importance(prior, settings, gen); },
                "annealed importance sampling from the base N(0, I) (forward, MALA transitions)"};
          });
  return registry;
}
}  // namespace

const OptionSet<LogZSettings>& log_z_option_set() {
  using S = LogZSettings;
  static const auto set =
      OptionSet<S>()
          .integer("flow-steps", [](S& s) -> int64_t& { return s.flow.steps(); },
                   "flow, flow-ais: reverse-KL steps fitting the proposal flow to the energy")
          .integer("flow-refine-steps", [](S& s) -> int64_t& { return s.flow.refine_steps(); },
                   "flow, flow-ais: then steps of a mass-covering refinement (importance-weighted forward KL)")
          .integer("flow-layers", [](S& s) -> int64_t& { return s.flow.flow().layers(); },
                   "flow, flow-ais: the flow's coupling layers")
          .integer("flow-hidden", [](S& s) -> int64_t& { return s.flow.flow().hidden(); },
                   "flow, flow-ais: width of its conditioners")
          .real("flow-base-fraction", [](S& s) -> double& { return s.flow_base_fraction; },
                "flow: share of the importance samples drawn from the base N(0, I) (bounds the weights)")
          .integer("ais-temperatures", [](S& s) -> int64_t& { return s.ais.temperatures(); },
                   "ais: temperatures (sigmoidal schedule)")
          .integer("ais-chains", [](S& s) -> int64_t& { return s.ais.chains(); }, "ais: chains")
          .real("ais-step-size", [](S& s) -> double& { return s.ais.step_size(); },
                "ais, flow-ais: MALA step size (the first, when adapted)")
          .real("ais-target-acceptance", [](S& s) -> double& { return s.ais.target_acceptance(); },
                "ais, flow-ais: the MALA acceptance rate the step size is adapted towards, temperature by "
                "temperature (0: a fixed step)");
  return set;
}

void check_log_z_settings(const LogZSettings& settings) {
  if (!(settings.flow_base_fraction >= 0 && settings.flow_base_fraction < 1))
    throw OptionError("flow-base-fraction", "must be in [0, 1), got " + shortest(settings.flow_base_fraction));
  settings.flow.validate();
  try {
    settings.ais.validate();
  } catch (const OptionError& e) {
    throw OptionError("ais-" + e.option, e.detail);
  }
}

LogZMethod log_z_method(const std::string& name, const LogZSettings& settings) {
  return log_z_registry().at(name)(settings);
}

std::vector<std::string> log_z_method_names() { return log_z_registry().names(); }

Estimate set_normaliser(EnergyPrior& prior, bool use_learned_b, const LogZMethod& method, uint64_t seed,
                        Json& record) {
  auto gen = make_generator(seed, prior.b.device());
  auto log_z = method.estimate(prior, gen);
  Json lz = log_z.to_json();
  if (use_learned_b) {
    prior.set_log_z_estimate(log_z.value);
    lz.set("how", method.how + ", held fixed over the split; b is the learned one");
  } else {
    auto gen_b = make_generator(mix_seed(seed, 0x62ULL), prior.b.device());
    auto log_z_b = method.estimate(prior, gen_b);
    prior.set_log_z_estimate(log_z.value, log_z_b.value);
    lz.set("how", method.how + ", held fixed over the split; b replaced by an independent estimate of log Z by the "
                  "same method (the objective does not learn b)");
    record.set("b_used", log_z_b.to_json());
  }
  record.set("log_z", lz);
  record.set("b", prior.b.item<double>());
  return log_z;
}

}  // namespace vae_ebm
