#pragma once
// The one Langevin sampler: prior sampling, MCMC objectives, AIS transitions, `sample`.
#include <torch/torch.h>

#include <functional>
#include <vector>

namespace vae_ebm {

struct LangevinOptions {
  TORCH_ARG(int64_t, steps) = 60;
  TORCH_ARG(double, step_size) = 0.4;  // s in z <- z - (s^2/2) grad U + eta s eps
  TORCH_ARG(double, noise) = 1.0;      // eta: 1 is ULA, 0 the noiseless gradient flow
  TORCH_ARG(bool, metropolis) = false; // MALA correction per chain (needs noise > 0)
  TORCH_ARG(double, grad_clip) = 0.0;  // clip each chain's gradient norm; 0 = off
  TORCH_ARG(bool, trace) = false;      // record per-step means of U, acceptance, |grad U|
  // Worker threads for the chains when the potential allows it (a PotentialGradientFactory
  // on the CPU); 0 = num_threads() from common/parallel.h. Results do not depend on it.
  TORCH_ARG(int, threads) = 0;

 public:
  // Throws std::invalid_argument naming the bad value.
  void validate() const;
};

struct LangevinTrace {
  std::vector<double> energy;      // mean U(z) over chains after each step
  std::vector<double> acceptance;  // fraction of chains that moved (1 without MALA)
  std::vector<double> grad_norm;   // mean |grad U(z)| over chains at each step
};

struct LangevinResult {
  torch::Tensor z;               // [B, D] final states, detached
  double acceptance_rate = 1.0;  // over all steps and chains
  LangevinTrace trace;           // filled only with options.trace()
};

// U: [B, D] -> [B], differentiable in z. The potential's parameters get no gradient.
using Potential = std::function<torch::Tensor(const torch::Tensor&)>;

// U(z) [B] and grad U(z) [B, D] at z [B, D], without an autograd graph; u may be left
// undefined when need_value is false (unadjusted steps need only the gradient).
struct PotentialAndGradient {
  torch::Tensor u;
  torch::Tensor grad;
};
using PotentialGradient = std::function<PotentialAndGradient(const torch::Tensor& z, bool need_value)>;
// Makes one PotentialGradient per group of chains (each may own buffers and run on its own
// thread; it must not write to anything shared).
using PotentialGradientFactory = std::function<PotentialGradient()>;

// Runs `options.steps()` steps from z0 [B, D], differentiating `potential` by autograd,
// on the calling thread.
LangevinResult langevin(const Potential& potential, const torch::Tensor& z0, const LangevinOptions& options,
                        at::Generator& generator);
// Hamiltonian Monte Carlo on `potential` (differentiated by autograd) from z0 [B, D]:
// `trajectories` of `leapfrog` steps of `step_size` with unit mass, each accepted or rejected
// per chain (a trajectory that is not finite is rejected). Sets z and acceptance_rate (over all
// trajectories and chains; NaN without trajectories). The sampler registry's `hmc` and the
// MCMC objectives' `--mcmc-sampler hmc` (docs/MATH.md section 11).
LangevinResult hmc_chains(const Potential& potential, const torch::Tensor& z0, int64_t trajectories,
                          int64_t leapfrog, double step_size, at::Generator& generator);
// The same chains from a potential that supplies its own gradient. On the CPU the chains
// are split into groups over options.threads() workers. The noise is drawn from `generator`
// on the calling thread in the same order either way, so the result does not depend on the
// number of threads (up to the BLAS's rounding for different row counts).
LangevinResult langevin(const PotentialGradientFactory& make_gradient, const torch::Tensor& z0,
                        const LangevinOptions& options, at::Generator& generator);

// The MALA log acceptance ratio per chain (MATH.md section 3), exposed for tests:
// log alpha = -U(z') + U(z) - |z - z' + (s^2/2) g'|^2 / (2 v) + |z' - z + (s^2/2) g|^2 / (2 v),
// with v = (eta s)^2 the proposal variance. All [B, D] or [B].
torch::Tensor mala_log_acceptance(const torch::Tensor& z, const torch::Tensor& u, const torch::Tensor& grad,
                                  const torch::Tensor& z_new, const torch::Tensor& u_new,
                                  const torch::Tensor& grad_new, double step_size, double noise);

}  // namespace vae_ebm
