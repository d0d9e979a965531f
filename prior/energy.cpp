#include <torch/torch.h>

#include "prior/energy.h"
#include "prior/flow.h"

#include <cmath>
#include <functional>
#include <sstream>

#include "prior/energy_gradient.h"
#include "common/fused_mlp.h"

namespace vae_ebm {

EnergyPrior::EnergyPrior(int64_t latent_dim, std::vector<int64_t> hidden, double slope, double bound)
    : Prior("EnergyPrior"), latent_dim_(latent_dim), bound_(bound) {
  TORCH_CHECK(latent_dim > 0, "Invalid latent dimension: ", latent_dim);
  TORCH_CHECK(slope >= 0, "Invalid LeakyReLU slope: ", slope);
  TORCH_CHECK(std::isfinite(bound) && bound >= 0, "Invalid energy bound (want 0 for none, or a positive number): ",
              bound);
  torch::nn::Sequential net;
  int64_t in = latent_dim;
  for (auto width : hidden) {
    TORCH_CHECK(width > 0, "Invalid energy hidden width: ", width);
    net->push_back(torch::nn::Linear(in, width));
    net->push_back(torch::nn::LeakyReLU(torch::nn::LeakyReLUOptions().negative_slope(slope)));
    in = width;
  }
  net->push_back(torch::nn::Linear(torch::nn::LinearOptions(in, 1).bias(false)));
  f = register_module("f", net);
  b = register_parameter("b", torch::zeros({}));
}

torch::Tensor EnergyPrior::energy(const torch::Tensor& z) {
  auto flat = z.reshape({-1, latent_dim_});
  auto out = bounded(fused_mlp_forward(f, flat).squeeze(-1));
  auto shape = z.sizes().vec();
  shape.pop_back();
  return out.reshape(shape);
}

torch::Tensor EnergyPrior::bounded(const torch::Tensor& g) const {
  return bound_ > 0 ? bound_ * torch::tanh(g / bound_) : g;
}

torch::Tensor EnergyPrior::potential(const torch::Tensor& z) { return energy(z) + 0.5 * (z * z).sum(-1); }

torch::Tensor EnergyPrior::log_prob_unnormalised(const torch::Tensor& z) {
  return standard_normal_log_prob(z) - energy(z);
}

torch::Tensor snl_terms(const torch::Tensor& b, const torch::Tensor& log_z_hat) {
  return -b - torch::exp(log_z_hat - b) + 1.0;
}

torch::Tensor EnergyPrior::sn_log_prob(const torch::Tensor& z, const torch::Tensor& log_z_hat) {
  return log_prob_unnormalised(z) + snl_terms(b, log_z_hat);
}

torch::Tensor EnergyPrior::bound_b() const {
  return b_override_ ? torch::full({}, *b_override_, b.options()) : b;
}

torch::Tensor EnergyPrior::log_prob_bound(const torch::Tensor& z) {
  TORCH_CHECK(log_z_estimate_.has_value(),
              "EnergyPrior::log_prob_bound needs a log Z estimate: call set_log_z_estimate first");
  auto bb = bound_b();
  return log_prob_unnormalised(z) + snl_terms(bb, torch::full({}, *log_z_estimate_, b.options()));
}

torch::Tensor EnergyPrior::expected_log_prob(const DiagonalGaussian& q, const torch::Tensor& z) {
  TORCH_CHECK(log_z_estimate_.has_value(),
              "EnergyPrior::expected_log_prob needs a log Z estimate: call set_log_z_estimate first");
  return q.expected_standard_normal_log_prob() - energy(z).mean(0) +
         snl_terms(bound_b(), torch::full({}, *log_z_estimate_, b.options()));
}

LangevinResult EnergyPrior::run_langevin(const torch::Tensor& z0, const LangevinOptions& options,
                                         at::Generator& generator, double beta) {
  auto make = [this, beta]() -> PotentialGradient { return MlpPotentialGradient(f, beta, bound_); };
  return langevin(make, z0, options, generator);
}

torch::Tensor EnergyPrior::sample(int64_t n, at::Generator& generator) {
  auto z0 = torch::randn({n, latent_dim_}, generator, b.options());
  return run_langevin(z0, sampling_, generator).z;
}

torch::Tensor Prior::expected_log_prob(const DiagonalGaussian&, const torch::Tensor& z) {
  return log_prob_bound(z).mean(0);
}

std::string EnergyPrior::describe_default_sampling() {
  std::ostringstream text;
  text << "Langevin, " << default_sampling().steps() << " steps of " << default_sampling().step_size();
  return text.str();
}

const OptionSet<EnergyOptions>& energy_option_set() {
  static const auto set =
      OptionSet<EnergyOptions>()
          .widths("energy-hidden", [](EnergyOptions& o) -> std::vector<int64_t>& { return o.hidden; },
                  "energy MLP hidden widths")
          .real("energy-slope", [](EnergyOptions& o) -> double& { return o.slope; }, "energy MLP LeakyReLU slope")
          .real("energy-bound", [](EnergyOptions& o) -> double& { return o.bound; },
                "B > 0 bounds the energy, f = B tanh(g / B) with g the MLP, so that the prior's density stays "
                "within exp(+-B) of N(0, I)'s; 0: f = g, unbounded");
  return set;
}

}  // namespace vae_ebm
