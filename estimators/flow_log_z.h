#pragma once
// log Z of an energy prior by importance sampling from a learned proposal: a flow (prior/flow.h)
// fitted to p(z) = N(z; 0, I) exp(-f(z)) / Z by reverse KL, mixed with the base so that the
// weights stay bounded where the flow misses mass (docs/MATH.md, "Flow proposals").
#include <torch/torch.h>

#include "estimators/ais.h"
#include "estimators/estimate.h"
#include "estimators/log_z.h"
#include "prior/flow.h"

namespace vae_ebm {

struct FlowFitOptions {
  TORCH_ARG(int64_t, steps) = 2000;   // Adam steps of the reverse-KL fit
  TORCH_ARG(int64_t, batch) = 512;    // flow samples per step
  TORCH_ARG(double, lr) = 1e-3;
  TORCH_ARG(FlowOptions, flow);
  // Then steps of the mass-covering refinement (refine_flow_forward_kl), each on refine_batch
  // importance samples.
  TORCH_ARG(int64_t, refine_steps) = 1000;
  TORCH_ARG(int64_t, refine_batch) = 4096;

 public:
  void validate() const;  // throws OptionError
};

// Fits `flow` to the energy prior by minimising the reverse KL up to the constant log Z,
//   E_q[log q(z) + f(z) + |z|^2 / 2] + (D/2) log 2 pi  =  KL(q || p) - log Z,
// with reparameterised samples of q; only the flow's parameters move. Returns the last 100
// steps' mean of that objective: -(it) is a lower bound on log Z that the estimate should clear.
double fit_flow_reverse_kl(Flow& flow, const EnergyFn& energy, const FlowFitOptions& options, at::Generator& generator);

// Reverse KL is mode-seeking: a flow fitted by it alone puts too little mass where the energy's
// tails hold much (measured: jointly trained energies whose mass lies far out, at |z| = 8-10
// where the flow's samples sit near 7.5). Each step of this refinement draws refine_batch
// samples of r = (1 - a) q + a p0 (a = base_fraction), weighs them by self-normalised
// importance weights w_i ~ p0(z_i) exp(-f(z_i)) / r(z_i), and descends
//   -sum_i w_i log q(z_i)  +  the reverse-KL gap on options.batch() fresh flow samples:
// the first term is the forward KL(p || q) up to a constant, estimated by importance sampling
// (mass-covering: it raises q where the weights are large); the second keeps the fit where the
// weights are too few to say much. Returns the mean ESS of the last 100 steps' weights.
double refine_flow_forward_kl(Flow& flow, const EnergyFn& energy, const FlowFitOptions& options, double base_fraction,
                              at::Generator& generator);

// log Zhat = log mean_s p0(z_s) exp(-f(z_s)) / r(z_s) with r = (1 - a) q + a p0, a =
// base_fraction; round(a S) samples come from the base and the rest from the flow (the balance
// heuristic of multiple importance sampling: unbiased for any a in [0, 1); a > 0 bounds each
// weight by exp(-f) / a). ess and std_error as for log_z_importance.
Estimate log_z_flow_importance(Flow& flow, const EnergyFn& energy, int64_t samples, double base_fraction,
                               at::Generator& generator, int64_t chunk = 8192);

// The flow as the start of forward AIS (estimators/ais.h): its samples, and g = log p0 - log q.
AisStart flow_ais_start(Flow& flow);
// The log weights of samples [first, first + n) of that estimate's S (the first round(a S) of
// the S from the base), drawn from `generator`: [n] float64 on the CPU. The estimate is
// log_z_from_log_weights of all S, named flow_importance_name(S, a): drawn in parts (by several
// processes), it is the same estimate.
torch::Tensor flow_importance_log_weights(Flow& flow, const EnergyFn& energy, int64_t samples, double base_fraction,
                                         int64_t first, int64_t n, at::Generator& generator);
std::string flow_importance_name(int64_t samples, double base_fraction);

}  // namespace vae_ebm
