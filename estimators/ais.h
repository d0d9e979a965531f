#pragma once
// log Z of an energy f over R^D by annealed importance sampling (MATH.md section 5):
// the geometric path f_t(z) = p0(z) exp(-beta_t f(z)), 0 = beta_0 < ... < beta_T = 1,
// p0 = N(0, I), with MALA transitions from the one Langevin sampler (prior/langevin.h)
// on U_t(z) = beta_t f(z) + |z|^2 / 2.
#include <torch/torch.h>

#include <string>
#include <vector>

#include "estimators/estimate.h"
#include "estimators/log_z.h"
#include "prior/energy.h"

namespace vae_ebm {

struct AisOptions {
  TORCH_ARG(int64_t, temperatures) = 1000;      // T: the path has T + 1 inverse temperatures
  TORCH_ARG(std::string, schedule) = "sigmoid";  // "linear" or "sigmoid" (see ais_schedule)
  TORCH_ARG(double, sigmoid_width) = 4.0;        // delta of the sigmoidal schedule
  TORCH_ARG(int64_t, chains) = 100;              // forward AIS: chains from p0
  TORCH_ARG(int64_t, steps) = 1;                 // MALA steps per temperature
  TORCH_ARG(double, step_size) = 0.1;            // Langevin step size s (the first, when adapted)
  // After each temperature's transitions the step size moves towards this MALA acceptance rate
  // (over the chains): s *= exp(0.1 (acceptance - target)), within [1e-4, 10]. 0: s stays fixed.
  // A transition that depends on the chains' past still leaves its temperature's distribution
  // invariant, so the weights stay valid (as in Wu et al. 2017's AIS for decoder-based models).
  TORCH_ARG(double, target_acceptance) = 0.6;

 public:
  // Throws std::invalid_argument naming the bad value.
  void validate() const;
};

// Schedule names accepted by AisOptions::schedule.
std::vector<std::string> ais_schedules();

// The inverse temperatures beta_0 = 0 < ... < beta_T = 1: [T + 1] float64.
// linear: beta_t = t / T. sigmoid (Grosse et al. 2015, "Sandwiching the marginal
// likelihood"): beta~_t = sigma(delta (2t / T - 1)), rescaled affinely so that beta_0 = 0 and
// beta_T = 1; it spends more temperatures near both ends of the path.
torch::Tensor ais_schedule(const AisOptions& options);

struct AisResult {
  // Forward: log Zhat = logmeanexp(log w), a stochastic lower bound (E[log Zhat] <= log Z).
  // Reverse: -logmeanexp(log w_rev), a stochastic upper bound (E >= log Z).
  // std_error is the delta-method error (as log_z_from_log_weights), ess that of the weights.
  Estimate log_z;
  torch::Tensor log_weights;     // [C] float64, the per-chain log weights (reverse: log w_rev)
  torch::Tensor samples;         // [C, D] final states: approximate samples of the target
                                 // (forward) or of p0 (reverse), detached
  double acceptance_rate = 1.0;  // MALA acceptance over all transitions and chains
  double last_step_size = 0;     // the MALA step size at the last temperature (adapted)
};

// Forward AIS with options.chains() chains of dimension `dim` started from exact p0 samples
// (tensor_options: dtype and device of the chains; the weights accumulate in float64).
// For t = 1..T: log w += -(beta_t - beta_{t-1}) f(z_{t-1}); then options.steps() MALA steps
// on U_t. energy: [S, D] -> [S], differentiable in z.
AisResult ais_log_z(const EnergyFn& energy, int64_t dim, const AisOptions& options, at::Generator& generator,
                    torch::TensorOptions tensor_options = {});
AisResult ais_log_z(EnergyPrior& prior, const AisOptions& options, at::Generator& generator);
// The name of forward AIS's estimate with these options ("AIS(forward, T=..., chains=C, ...)"):
// with log_z_from_log_weights, the estimate from the log weights of chains run in parts. start:
// the name of an AisStart ("forward from flow"), empty for the base.
std::string ais_estimator_name(const AisOptions& options, const std::string& start = "");

// A start for forward AIS other than the base: a distribution q with exact samples and
// g(z) = log p0(z) - log q(z) (so that q = p0 exp(-g)), differentiable in z. A flow fitted to
// the target makes a start from which few temperatures reach it (estimators/flow_log_z.h).
struct AisStart {
  std::function<torch::Tensor(int64_t n, at::Generator& generator)> sample;  // [n, D], detached
  EnergyFn relative_energy;                                                  // g: [S, D] -> [S]
  std::string name;                                                          // "flow", in the estimator's name
};

// Forward AIS from q along pi_beta(z) ~ p0(z) exp(-((1 - beta) g(z) + beta f(z))): for
// t = 1..T, log w += -(beta_t - beta_{t-1}) (f - g)(z_{t-1}), then MALA on
// U_t = |z|^2 / 2 + g + beta_t (f - g). Z_0 = 1 (q is normalised), so E[w] = Z as from the
// base; with g = 0 it is the path above. Transitions differentiate f and g by autograd.
AisResult ais_log_z(const EnergyFn& energy, const AisStart& start, const AisOptions& options, at::Generator& generator);

// Reverse AIS from exact samples of the target p = p0 exp(-f) / Z, target_samples [N, D]: one
// chain per row (options.chains() is not used). The schedule runs backwards: for
// t = T..1, log w_rev += (beta_t - beta_{t-1}) f(z), then MALA on U_{t-1} (skipped for t = 1,
// where it would not change any weight). E[w_rev] = 1 / Z, so log Z_rev = -logmeanexp(log w_rev)
// is an upper bound on log Z in expectation -- only if the samples are exact: approximate
// samples (e.g. from a Langevin chain) void the guarantee.
AisResult reverse_ais_log_z(const EnergyFn& energy, const torch::Tensor& target_samples, const AisOptions& options,
                            at::Generator& generator);
AisResult reverse_ais_log_z(EnergyPrior& prior, const torch::Tensor& target_samples, const AisOptions& options,
                            at::Generator& generator);

}  // namespace vae_ebm
