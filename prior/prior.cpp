// The prior registry: each kind's options (declared in its own file) and its factory.
#include <torch/torch.h>

#include "prior/prior.h"

#include <functional>

#include "common/registry.h"
#include "prior/energy.h"
#include "prior/flow.h"
#include "prior/gaussian.h"
#include "prior/mixture.h"

namespace vae_ebm {

namespace {

// A kind's options (declared in its file), their check (OptionError naming the option), and the
// factory, which is given checked values.
struct PriorEntry {
  std::vector<OptionSpec> options;
  std::function<void(const OptionValues&)> check;
  std::function<std::shared_ptr<Prior>(int64_t latent_dim, const OptionValues&)> make;
};

void at_least_one(const std::string& name, int64_t value) {
  if (value < 1) throw OptionError(name, "must be >= 1, got " + std::to_string(value));
}

const Registry<PriorEntry>& prior_registry() {
  static const auto registry =
      Registry<PriorEntry>("prior")
          .add("gaussian", {{},
                            [](const OptionValues&) {},
                            [](int64_t d, const OptionValues&) { return std::make_shared<GaussianPrior>(d); }})
          .add("mog", {mixture_option_set().specs(),
                       [](const OptionValues& values) {
                         at_least_one("mog-components", mixture_option_set().read(values).components);
                       },
                       [](int64_t d, const OptionValues& values) {
                         return std::make_shared<MixturePrior>(d, mixture_option_set().read(values).components);
                       }})
          .add("ebm", {energy_option_set().specs(),
                       [](const OptionValues& values) {
                         const auto o = energy_option_set().read(values);
                         if (o.bound < 0)
                           throw OptionError("energy-bound", "must be 0 (unbounded) or positive, got " + option_text(o.bound));
                       },
                       [](int64_t d, const OptionValues& values) {
                         const auto o = energy_option_set().read(values);
                         return std::make_shared<EnergyPrior>(d, o.hidden, o.slope, o.bound);
                       }})
          .add("flow", {flow_prior_option_set().specs(),
                        [](const OptionValues& values) {
                          const auto o = flow_prior_option_set().read(values);
                          at_least_one("flow-layers", o.layers());
                          at_least_one("flow-hidden", o.hidden());
                        },
                        [](int64_t d, const OptionValues& values) {
                          return std::make_shared<FlowPrior>(d, flow_prior_option_set().read(values));
                        }});
  return registry;
}

}  // namespace

std::vector<std::string> prior_kinds() { return prior_registry().names(); }

void check_prior(const PriorOptions& options) { prior_registry().at(options.kind()).check(options.values()); }

std::shared_ptr<Prior> make_prior(const PriorOptions& options) {
  const auto& entry = prior_registry().at(options.kind());
  entry.check(options.values());
  return entry.make(options.latent_dim(), options.values());
}

std::vector<PriorOption> all_prior_options() {
  std::vector<PriorOption> out;
  for (const auto& kind : prior_kinds())
    for (const auto& spec : prior_registry().at(kind).options) out.push_back({spec, {kind}});
  return out;
}

}  // namespace vae_ebm
