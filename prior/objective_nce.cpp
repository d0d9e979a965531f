// "nce": noise-contrastive estimation of the energy prior (MATH.md section 4). The
// classifier logit is log p0(z) - f(z) - b - log p_n(z) - log nu, with b the learned log
// normaliser; the logistic loss separates detached posterior samples (label 1) from nu
// noise samples per posterior sample (label 0). The encoder is trained through
// E_q[log p0] - E_q[f(z)] - b, whose gradient reaches it but not f or b.
// With --nce-noise flow the noise is a flow fitted to the posterior samples by maximum
// likelihood; "fce" (flow contrastive estimation, Gao et al. 2020) trains that flow against
// the energy instead: the energy and b ascend the NCE objective J, the flow descends it
// (docs/MATH.md section 8.5).
#include <torch/torch.h>

#include "prior/energy.h"
#include "prior/flow.h"
#include "prior/objective.h"

#include <cmath>
#include <stdexcept>

#include "common/error.h"

namespace vae_ebm {

namespace {

// The NCE objective J per positive sample, from the logits of the positives and of the noise
// samples: mean log sigma(logit_pos) + nu mean log sigma(-logit_noise).
torch::Tensor nce_objective(const torch::Tensor& logit_pos, const torch::Tensor& logit_noise) {
  const double nu = static_cast<double>(logit_noise.size(0)) / static_cast<double>(logit_pos.size(0));
  return torch::log_sigmoid(logit_pos).mean() + nu * torch::log_sigmoid(-logit_noise).mean();
}

class NceObjective : public PriorObjective {
 public:
  // adversarial: fce (the flow noise descends J); otherwise the flow noise, if any, fits the
  // posterior samples by maximum likelihood.
  NceObjective(const NceOptions& options, double flow_lr, bool adversarial)
      : options_(options), flow_(flow_lr), adversarial_(adversarial) {
    options.validate();
    if (adversarial) options_.noise("flow");
  }
  std::string name() const override { return adversarial_ ? "fce" : "nce"; }
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
    } else if (options_.noise() == "flow") {
      torch::NoGradGuard no_grad;
      auto& flow = flow_.get(q.dim(), q.mu.device(), generator);
      auto [x, log_q] = flow->sample_with_log_prob(m, generator);
      noise = x;
      log_ratio_noise = standard_normal_log_prob(noise) - log_q;
      log_ratio_pos = standard_normal_log_prob(positives) - flow->log_prob(positives);
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
    auto nce = nce_objective(logit_pos, logit_noise);
    PriorTerm term{encoder_prior_term(ebm, q, z) + nce, {}};
    term.diagnostics["nce"] = nce.item<double>();
    term.diagnostics["b"] = ebm.b.item<double>();
    term.diagnostics["accuracy"] =
        0.5 * ((logit_pos > 0).to(torch::kDouble).mean() + (logit_noise < 0).to(torch::kDouble).mean()).item<double>();
    if (options_.noise() == "flow") term.diagnostics["flow_loss"] = fit_flow_step(ebm, positives, m, log_nu, generator);
    return term;
  }

  void save(torch::serialize::OutputArchive& archive) const override { flow_.save(archive); }
  void load(torch::serialize::InputArchive& archive) override {
    if (options_.noise() == "flow") flow_.load(archive);
  }

 private:
  // One Adam step of the flow noise: -mean log q(positives) (nce), or J itself (fce: the flow
  // makes the classifier's task hard), with fresh reparameterised noise samples so that J's
  // gradient reaches the flow through them. No gradient reaches f, b or the encoder.
  double fit_flow_step(EnergyPrior& ebm, const torch::Tensor& positives, int64_t m, double log_nu,
                       at::Generator& generator) {
    torch::AutoGradMode enable_grad(true);
    auto& flow = flow_.get(positives.size(1), positives.device(), generator);
    torch::Tensor loss;
    if (!adversarial_) {
      loss = -flow->log_prob(positives).mean();
    } else {
      auto [x, log_q] = flow->sample_with_log_prob(m, generator);
      auto logit_noise = standard_normal_log_prob(x) - log_q - ebm.energy(x) - ebm.b - log_nu;
      auto logit_pos = standard_normal_log_prob(positives) - flow->log_prob(positives) - ebm.energy(positives) -
                       ebm.b - log_nu;
      loss = nce_objective(logit_pos, logit_noise);
    }
    flow_.step(loss);
    return loss.item<double>();
  }

  NceOptions options_;
  TrainedFlow flow_;
  bool adversarial_;
};

}  // namespace

void NceOptions::validate() const {
  if (noise_ != "base" && noise_ != "aggregate-gaussian" && noise_ != "flow")
    throw OptionError("nce-noise", "unknown noise '" + noise_ + "' (valid: base, aggregate-gaussian, flow)");
  if (!(ratio_ > 0)) throw OptionError("nce-ratio", "must be > 0, got " + std::to_string(ratio_));
}

std::unique_ptr<PriorObjective> make_nce_objective(const ObjectiveOptions& options) {
  if (options.nce().noise() == "flow") options.validate_flow_lr();
  return std::make_unique<NceObjective>(options.nce(), options.flow_lr(), false);
}

std::unique_ptr<PriorObjective> make_fce_objective(const ObjectiveOptions& options) {
  options.validate_flow_lr();
  return std::make_unique<NceObjective>(options.nce(), options.flow_lr(), true);
}

}  // namespace vae_ebm
