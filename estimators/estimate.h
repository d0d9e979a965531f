#pragma once
// An estimate is never a bare number: value, standard error, count, ESS, units.
#include <torch/torch.h>

#include <cstdint>
#include <limits>
#include <string>

#include "data/json.h"

namespace vae_ebm {

struct Estimate {
  std::string estimator;  // e.g. "ELBO_10", "IS(base, S=10000)"
  double value = std::numeric_limits<double>::quiet_NaN();
  double std_error = std::numeric_limits<double>::quiet_NaN();
  int64_t count = 0;  // images, or samples for a log Z estimate
  double ess = std::numeric_limits<double>::quiet_NaN();  // effective sample size where it applies
  std::string units = "nats";

  Json to_json() const;
};

// Mean of per-item values [N] in float64, with standard error sd / sqrt(N).
Estimate mean_estimate(const torch::Tensor& per_item, const std::string& estimator);

}  // namespace vae_ebm
