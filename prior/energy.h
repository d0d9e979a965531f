#pragma once
// The energy prior p(z) = N(z; 0, I) exp(-f(z)) / Z, with a learned scalar b ~ log Z.
#include <optional>

#include "prior/langevin.h"
#include "prior/prior.h"

namespace vae_ebm {

// -b - exp(log Zhat - b) + 1, the terms that replace -log Z in the SNL bound (MATH.md
// section 2): a lower bound on -log Z for any b, tight at b = log Z. Scalars.
torch::Tensor snl_terms(const torch::Tensor& b, const torch::Tensor& log_z_hat);

// The energy prior's options (prior kind "ebm"), declared once by energy_option_set():
// energy-hidden, energy-slope and energy-bound.
struct EnergyOptions {
  std::vector<int64_t> hidden{200, 200, 200};  // f's hidden widths
  double slope = 0.2;                          // LeakyReLU negative slope
  double bound = 0;                            // B > 0: f = B tanh(g / B) bounds |f| by B; 0: f = g
};
const OptionSet<EnergyOptions>& energy_option_set();

class EnergyPrior : public Prior {
 public:
  // g: D -> hidden... -> 1, LeakyReLU(slope) between, no bias on the last layer; the energy
  // is f = g, or f = bound tanh(g / bound) for bound > 0 (|f| < bound: the prior's density
  // stays within exp(+-bound) of the base's, so its tails cannot fall below the base's nor
  // its mass run off where g extrapolates; MATH.md section 1).
  EnergyPrior(int64_t latent_dim, std::vector<int64_t> hidden, double slope, double bound = 0);
  std::string kind() const override { return "ebm"; }
  int64_t latent_dim() const override { return latent_dim_; }
  bool exact() const override { return false; }

  // f(z): [..., D] -> [...].
  torch::Tensor energy(const torch::Tensor& z);
  // f from g's value (the identity when unbounded), for callers that run the network g
  // themselves (score matching differentiates it twice).
  torch::Tensor bounded(const torch::Tensor& g) const;
  double bound() const { return bound_; }
  // Langevin potential U(z) = f(z) + |z|^2 / 2 (constant dropped): [B, D] -> [B].
  torch::Tensor potential(const torch::Tensor& z);
  // log p0(z) - f(z).
  torch::Tensor log_prob_unnormalised(const torch::Tensor& z) override;
  // SNL bound log p0(z) - f(z) - b - exp(log_z_hat - b) + 1 (MATH.md section 2), with
  // log_z_hat a scalar tensor (may carry gradient).
  torch::Tensor sn_log_prob(const torch::Tensor& z, const torch::Tensor& log_z_hat);
  // sn_log_prob with the estimate set by set_log_z_estimate; throws if none was set.
  torch::Tensor log_prob_bound(const torch::Tensor& z) override;
  // E_q[log p0] in closed form, E_q[f] over the K samples z [K, B, D], then the SNL
  // terms with the stored log Z estimate: the SNELBO's prior term, [B].
  torch::Tensor expected_log_prob(const DiagonalGaussian& q, const torch::Tensor& z) override;
  // Evaluation settings: the log Zhat that the bounds hold fixed, and optionally a value
  // that replaces the learned b in them (for priors whose objective does not learn b: an
  // estimate of log Z from base samples independent of those behind log_z_hat, so that
  // the bound stays an unbiased estimate of a true lower bound).
  void set_log_z_estimate(double log_z_hat, std::optional<double> b_override = std::nullopt) {
    log_z_estimate_ = log_z_hat;
    b_override_ = b_override;
  }
  std::optional<double> log_z_estimate() const { return log_z_estimate_; }
  // The b the bounds use: the override if set, else the learned parameter.
  torch::Tensor bound_b() const;

  // Langevin on U_beta(z) = beta f(z) + |z|^2 / 2 from z0 [B, D], with f's gradient derived
  // by hand (MlpPotentialGradient): no autograd graph, and on the CPU the chains are split
  // over options.threads() workers. beta = 1 is the prior itself (AIS uses the others).
  LangevinResult run_langevin(const torch::Tensor& z0, const LangevinOptions& options, at::Generator& generator,
                              double beta = 1.0);

  // Langevin from the base (settings: sampling_options()).
  torch::Tensor sample(int64_t n, at::Generator& generator) override;
  LangevinOptions& sampling_options() { return sampling_; }
  // How sample() runs its chains unless told otherwise: 200 steps of 0.1 from the base.
  static LangevinOptions default_sampling() { return LangevinOptions().steps(200).step_size(0.1); }
  // "Langevin, 200 steps of 0.1", for help texts and records.
  static std::string describe_default_sampling();

  torch::Tensor b;  // scalar, init 0
  torch::nn::Sequential f{nullptr};  // the network g (f itself when unbounded)

 private:
  int64_t latent_dim_;
  double bound_ = 0;
  LangevinOptions sampling_ = default_sampling();
  std::optional<double> log_z_estimate_;
  std::optional<double> b_override_;
};

}  // namespace vae_ebm
