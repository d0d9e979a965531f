#include <torch/torch.h>

#include "estimators/estimate.h"

#include <cmath>

namespace vae_ebm {

Json Estimate::to_json() const {
  Json j = Json::object();
  j.set("estimator", estimator).set("value", value).set("std_error", std_error).set("count", count);
  if (!std::isnan(ess)) j.set("ess", ess);
  j.set("units", units);
  return j;
}

Estimate mean_estimate(const torch::Tensor& per_item, const std::string& estimator) {
  auto v = per_item.detach().to(torch::kCPU, torch::kDouble).reshape({-1});
  Estimate e;
  e.estimator = estimator;
  e.count = v.size(0);
  if (e.count == 0) return e;
  e.value = v.mean().item<double>();
  e.std_error = e.count > 1 ? v.std().item<double>() / std::sqrt(static_cast<double>(e.count)) : 0.0;
  return e;
}

}  // namespace vae_ebm
