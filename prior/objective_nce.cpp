// "nce": noise-contrastive estimation of the energy prior (MATH.md section 4). The
// classifier logit is log p0(z) - f(z) - b - log p_n(z) - log nu, with b the learned log
// normaliser; the logistic loss separates detached posterior samples (label 1) from nu
// noise samples per posterior sample (label 0). The encoder is trained through
// E_q[log p0] - E_q[f(z)] - b, whose gradient reaches it but not f or b.
#include <torch/torch.h>

#include "prior/energy.h"
#include "prior/objective.h"

#include <cmath>
#include <stdexcept>

#include "common/error.h"

namespace vae_ebm {

namespace {

class NceObjective : public PriorObjective {
 public:
  explicit NceObjective(const NceOptions& options) : options_(options) { options.validate(); }
  std::string name() const override { return "nce"; }
  bool supports(const Prior& prior) const override { return is_energy_prior(prior); }
  std::string requirement() const override { return kEnergyPriorRequirement; }

  PriorTerm prior_term(Prior& prior, const DiagonalGaussian& q, const torch::Tensor& z,
                       at::Generator& generator) override {
    auto& ebm = as_energy_prior(prior);
    const double nu = options_.ratio();
    auto positives = z.detach().reshape({-1, q.dim()});
    const int64_t m = std::max<int64_t>(1, static_cast<int64_t>(std::llround(nu * positives.size(0))));
    // Noise density p_n: the base, or a Gaussian moment-matched to the batch's aggregate posterior.
    torch::Tensor noise, log_ratio_pos, log_ratio_noise;  // log p0 - log p_n
    if (options_.noise() == "base") {
      noise = torch::randn({m, q.dim()}, generator, q.mu.options().requires_grad(false));
      log_ratio_pos = torch::zeros({positives.size(0)}, positives.options());
      log_ratio_noise = torch::zeros({m}, noise.options());
    } else {
      auto pn = q.aggregate_moment_match();
      noise = pn.rsample(m, generator).squeeze(1);
      log_ratio_pos = standard_normal_log_prob(positives) - pn.log_prob(positives.unsqueeze(1)).squeeze(1);
      log_ratio_noise = standard_normal_log_prob(noise) - pn.log_prob(noise.unsqueeze(1)).squeeze(1);
    }
    const double log_nu = std::log(static_cast<double>(m) / positives.size(0));
    auto logit_pos = log_ratio_pos - ebm.energy(positives) - ebm.b - log_nu;
    auto logit_noise = log_ratio_noise - ebm.energy(noise) - ebm.b - log_nu;
    // Mean log-likelihood of the labels per positive sample (the NCE objective J).
    auto nce = torch::log_sigmoid(logit_pos).mean() +
               (static_cast<double>(m) / positives.size(0)) * torch::log_sigmoid(-logit_noise).mean();
    // The encoder's term: value E_q[log p0] - E_q f - b, gradient through z only.
    // f(z) - f(sg(z)) is zero in value; its gradient for f's parameters cancels, leaving
    // the gradient through z.
    auto f_z = ebm.energy(z);
    auto f_through_z = f_z - ebm.energy(z.detach()) + f_z.detach();
    auto encoder_term = q.expected_standard_normal_log_prob() - f_through_z.mean(0) - ebm.b.detach();
    PriorTerm term{encoder_term + nce, {}};
    term.diagnostics["nce"] = nce.item<double>();
    term.diagnostics["b"] = ebm.b.item<double>();
    term.diagnostics["accuracy"] =
        0.5 * ((logit_pos > 0).to(torch::kDouble).mean() + (logit_noise < 0).to(torch::kDouble).mean()).item<double>();
    return term;
  }

 private:
  NceOptions options_;
};

}  // namespace

void NceOptions::validate() const {
  if (noise_ != "base" && noise_ != "aggregate-gaussian")
    throw OptionError("nce-noise", "unknown noise '" + noise_ + "' (valid: base, aggregate-gaussian)");
  if (!(ratio_ > 0)) throw OptionError("nce-ratio", "must be > 0, got " + std::to_string(ratio_));
}

std::unique_ptr<PriorObjective> make_nce_objective(const ObjectiveOptions& options) {
  return std::make_unique<NceObjective>(options.nce());
}

}  // namespace vae_ebm
