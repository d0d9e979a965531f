#pragma once
// log Z of an energy prior by importance sampling (MATH.md section 5).
#include <torch/torch.h>

#include <functional>

#include "estimators/estimate.h"
#include "prior/energy.h"

namespace vae_ebm {

// log Zhat = logsumexp_s(-f(z_s)) - log S with z_s ~ p0 (so p0 / r = 1), S samples drawn
// in chunks of `chunk`. Zhat is unbiased; E[log Zhat] <= log Z. std_error is the delta-method
// error of log Zhat, sd(w) / (sqrt(S) mean(w)); ess = (sum w)^2 / sum w^2.
Estimate log_z_importance(EnergyPrior& prior, int64_t samples, at::Generator& generator, int64_t chunk = 8192);

// The same for any energy f: [S, D] -> [S] over R^dim, against the base N(0, I).
using EnergyFn = std::function<torch::Tensor(const torch::Tensor&)>;
Estimate log_z_importance(const EnergyFn& energy, int64_t dim, int64_t samples, at::Generator& generator,
                          torch::TensorOptions options = {}, int64_t chunk = 8192);

// The log weights of that estimate, -f(z_s) for `samples` z_s ~ N(0, I) drawn in chunks:
// [samples] float64 on the CPU. log_z_importance is log_z_from_log_weights of these, named
// base_importance_name(samples); an estimate drawn in parts (by several processes) is the same.
torch::Tensor base_log_weights(const EnergyFn& energy, int64_t dim, int64_t samples, at::Generator& generator,
                               torch::TensorOptions options = {}, int64_t chunk = 8192);
std::string base_importance_name(int64_t samples);

// The same from given log weights [S] (float64 arithmetic).
Estimate log_z_from_log_weights(const torch::Tensor& log_weights, const std::string& estimator);

}  // namespace vae_ebm
