#pragma once
// Samplers of an energy prior p(z) = N(z; 0, I) exp(-f(z)) / Z, behind one registry (--sampler):
// `sample`, `evaluate`'s quality scores and `report` draw through it. Exact priors (Gaussian,
// mixture, flow) keep their exact sampler.
//
//   langevin       unadjusted Langevin from the base N(0, I) (the earlier only sampler)
//   mala           the same chains, Metropolis-adjusted
//   hmc            Hamiltonian Monte Carlo from the base (leapfrog, Metropolis-adjusted)
//   flow           draws of a flow q fitted to p (no correction: q's own errors remain)
//   flow-sir       sampling-importance-resampling: per draw, `candidates` samples of the
//                  defensive mixture r = (1 - a) q + a p0, one kept with probability
//                  proportional to p~(z) / r(z)
//   flow-langevin  Langevin started at flow draws
//   flow-mala      MALA started at flow draws
//   transport      MALA in the flow's base space (neural transport): the pull-back of p through
//                  the flow, close to N(0, I) where the flow fits
//
// The flow is the one the training objective trained alongside, where it has one, else one
// fitted to the energy when the sampler is first asked for it (docs/MATH.md section 11).
#include <torch/torch.h>

#include <functional>
#include <string>
#include <vector>

#include "common/options.h"
#include "common/registry.h"
#include "data/json.h"
#include "prior/energy.h"
#include "prior/flow.h"

namespace vae_ebm {

// The samplers' options, declared once (common/options.h): sampler_option_set() gives each its
// name (the flag without "--"), field and help.
struct SamplerOptions {
  TORCH_ARG(int64_t, steps) = 200;         // langevin, mala: steps from the base
  TORCH_ARG(double, step_size) = 0.1;      // langevin, mala: s; hmc: the leapfrog step
  TORCH_ARG(int64_t, trajectories) = 20;   // hmc: trajectories (times leapfrog: gradients, as Langevin's steps)
  TORCH_ARG(int64_t, flow_steps) = 20;     // chains from flow draws, and transport: steps
  TORCH_ARG(double, flow_step_size) = 0.05;  // chains from flow draws: s; transport: s in u
  TORCH_ARG(int64_t, leapfrog) = 10;       // hmc: leapfrog steps per trajectory
  TORCH_ARG(int64_t, candidates) = 10;     // flow-sir: candidates per draw
  TORCH_ARG(double, base_fraction) = 0.1;  // flow-sir: share a of the base in r
  TORCH_ARG(double, noise) = 1.0;          // langevin, flow-langevin: noise scale eta (0: gradient flow)

 public:
  void validate() const;  // throws OptionError naming the option
};

const OptionSet<SamplerOptions>& sampler_option_set();

// Draws and the sampler's diagnostic: acceptance (MCMC samplers, over all steps and chains) or
// the resampling ESS (flow-sir: the mean over draws of (sum w)^2 / sum w^2 of each draw's
// candidates, as a fraction of their number). NaN where it does not apply.
struct SamplerDraws {
  torch::Tensor z;  // [n, D]
  double acceptance = std::nan("");
  double resampling_ess = std::nan("");
};

// Provides the flow (made or fitted when first called; flow samplers only).
using FlowSource = std::function<Flow()>;

struct SamplerEntry {
  std::string help;
  bool needs_flow = false;
  std::function<SamplerDraws(EnergyPrior& prior, const FlowSource& flow, int64_t n, const SamplerOptions& options,
                             at::Generator& generator)>
      draw;
};

const Registry<SamplerEntry>& sampler_registry();
std::vector<std::string> sampler_names();
// The default: the one that measured best (README, "Samplers").
std::string default_sampler();

// Draws n samples with the named sampler; throws UserError for an unknown name.
SamplerDraws draw_samples(const std::string& name, EnergyPrior& prior, const FlowSource& flow, int64_t n,
                          const SamplerOptions& options, at::Generator& generator);
// "flow-sir: 10 candidates from (1 - 0.1) q + 0.1 p0", for records and printed lines.
std::string describe_sampler(const std::string& name, const SamplerOptions& options);

// Sampling-importance-resampling: per draw, `candidates` samples of r = (1 - a) q + a p0, one
// kept with probability proportional to exp(-f(z)) p0(z) / r(z).
SamplerDraws flow_sir(Flow& flow, const std::function<torch::Tensor(const torch::Tensor&)>& energy, int64_t n,
                      int64_t candidates, double base_fraction, at::Generator& generator);

}  // namespace vae_ebm
