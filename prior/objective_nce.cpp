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

struct NceOptions {
  // Noise distribution: base | aggregate-gaussian | flow (a flow fitted by maximum likelihood to
  // the posterior samples, one Adam step per training step). fce always uses a flow, trained
  // against the energy.
  TORCH_ARG(std::string, noise) = "base";
  TORCH_ARG(double, ratio) = 1.0;  // noise samples per data sample

 public:
  void validate() const;  // throws OptionError
};

const OptionSet<NceOptions>& nce_options() {
  using O = NceOptions;
  static const auto set =
      OptionSet<O>()
          .text("nce-noise", [](O& o) -> std::string& { return o.noise(); },
                "noise distribution: base, aggregate-gaussian, or flow (fitted to the posterior samples)")
          .real("nce-ratio", [](O& o) -> double& { return o.ratio(); }, "noise samples per posterior sample");
  return set;
}


// The NCE objective J per positive sample, from the logits of the positives and of the noise
// samples: mean log sigma(logit_pos) + nu mean log sigma(-logit_noise), nu = noise / positives.
// In data-parallel training (positives and noise: this process's shares of all of them) it is
// this process's part of J over all of them: the parts sum to J, in value and gradient.
torch::Tensor nce_objective(const torch::Tensor& logit_pos, const torch::Tensor& logit_noise,
                            const BatchShard& positives, const BatchShard& noise) {
  const double nu = static_cast<double>(noise.global) / static_cast<double>(positives.global);
  return part_of_mean(torch::log_sigmoid(logit_pos), positives) +
         nu * part_of_mean(torch::log_sigmoid(-logit_noise), noise);
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
    // The K x B posterior samples and the m noise samples of the whole batch; in data-parallel
    // training this process holds K x B_r of the first and its share of the second, whose
    // noise is drawn for all m and its rows kept (docs/MATH.md section 10).
    const auto rows = dist_ && dist_->parallel() ? rows_ : BatchShard::of(q.batch(), 0, 1);
    const BatchShard positive_share{0, positives.size(0), z.size(0) * rows.global};
    const int64_t m = std::max<int64_t>(1, static_cast<int64_t>(std::llround(nu * positive_share.global)));
    const auto noise_share = dist_ && dist_->parallel() ? BatchShard::of(m, dist_->rank(), dist_->world_size())
                                                        : BatchShard::of(m, 0, 1);
    // Noise density p_n: the base, or a Gaussian moment-matched to the batch's aggregate posterior.
    torch::Tensor noise, log_ratio_pos, log_ratio_noise;  // log p0 - log p_n
    if (options_.noise() == "base") {
      noise = noise_share.rows(torch::randn({m, q.dim()}, generator, q.mu.options().requires_grad(false)), 0);
      log_ratio_pos = torch::zeros({positives.size(0)}, positives.options());
      log_ratio_noise = torch::zeros({noise.size(0)}, noise.options());
    } else if (options_.noise() == "flow") {
      torch::NoGradGuard no_grad;
      auto& flow = flow_.get(q.dim(), q.mu.device(), generator);
      auto [x, log_q] = flow->sample_with_log_prob(noise_share, generator);
      noise = x;
      log_ratio_noise = standard_normal_log_prob(noise) - log_q;
      log_ratio_pos = standard_normal_log_prob(positives) - flow->log_prob(positives);
    } else {
      auto pn = (dist_ && dist_->parallel() ? whole_batch_posterior(q, *dist_, rows_) : q).aggregate_moment_match();
      noise = noise_share.rows(pn.rsample(m, generator).squeeze(1), 0);
      log_ratio_pos = standard_normal_log_prob(positives) - pn.log_prob(positives.unsqueeze(1)).squeeze(1);
      log_ratio_noise = standard_normal_log_prob(noise) - pn.log_prob(noise.unsqueeze(1)).squeeze(1);
    }
    const double log_nu = std::log(static_cast<double>(m) / static_cast<double>(positive_share.global));
    auto logit_pos = log_ratio_pos - ebm.energy(positives) - ebm.b - log_nu;
    auto logit_noise = log_ratio_noise - ebm.energy(noise) - ebm.b - log_nu;
    // Mean log-likelihood of the labels per positive sample (the NCE objective J): one term for
    // the whole batch, of which this process's images carry its part (see shared_mean).
    auto nce = nce_objective(logit_pos, logit_noise, positive_share, noise_share) *
               (static_cast<double>(rows.global) / static_cast<double>(rows.size));
    PriorTerm term{encoder_prior_term(ebm, q, z) + nce, {}};
    term.diagnostics["nce"] = nce.item<double>();
    term.diagnostics["b"] = ebm.b.item<double>();
    term.diagnostics["accuracy"] =
        0.5 * ((logit_pos > 0).to(torch::kDouble).mean() + (logit_noise < 0).to(torch::kDouble).mean()).item<double>();
    if (options_.noise() == "flow")
      term.diagnostics["flow_loss"] = fit_flow_step(ebm, positives, positive_share, noise_share, log_nu, generator);
    return term;
  }

  // Its terms are combined as parts of J (see nce_objective); the noise is the whole batch's.
  void check_data_parallel(int) const override {}
  void set_data_parallel(std::shared_ptr<Distributed> dist, const BatchShard& rows, uint64_t, torch::Device) override {
    dist_ = std::move(dist);
    rows_ = rows;
  }

  void save(torch::serialize::OutputArchive& archive) const override { flow_.save(archive); }
  void load(torch::serialize::InputArchive& archive) override {
    if (options_.noise() == "flow") flow_.load(archive);
  }

 private:
  // One Adam step of the flow noise: -mean log q(positives) (nce), or J itself (fce: the flow
  // makes the classifier's task hard), with fresh reparameterised noise samples so that J's
  // gradient reaches the flow through them. No gradient reaches f, b or the encoder.
  // In data-parallel training the loss is this process's part of the whole batch's (the
  // shares say which) and the flow's gradients are summed over the processes.
  double fit_flow_step(EnergyPrior& ebm, const torch::Tensor& positives, const BatchShard& positive_share,
                       const BatchShard& noise_share, double log_nu, at::Generator& generator) {
    torch::AutoGradMode enable_grad(true);
    auto& flow = flow_.get(positives.size(1), positives.device(), generator);
    torch::Tensor loss;
    if (!adversarial_) {
      loss = -part_of_mean(flow->log_prob(positives), positive_share);
    } else {
      auto [x, log_q] = flow->sample_with_log_prob(noise_share, generator);
      auto logit_noise = standard_normal_log_prob(x) - log_q - ebm.energy(x) - ebm.b - log_nu;
      auto logit_pos = standard_normal_log_prob(positives) - flow->log_prob(positives) - ebm.energy(positives) -
                       ebm.b - log_nu;
      loss = nce_objective(logit_pos, logit_noise, positive_share, noise_share);
    }
    flow_.step(loss, dist_ && dist_->parallel() ? dist_.get() : nullptr);
    return loss.item<double>();
  }

  NceOptions options_;
  TrainedFlow flow_;
  bool adversarial_;
  std::shared_ptr<Distributed> dist_;
  BatchShard rows_;  // data-parallel: this process's rows of each batch
};

void NceOptions::validate() const {
  if (noise_ != "base" && noise_ != "aggregate-gaussian" && noise_ != "flow")
    throw OptionError("nce-noise", "unknown noise '" + noise_ + "' (valid: base, aggregate-gaussian, flow)");
  if (!(ratio_ > 0 && ratio_ <= 1000)) throw OptionError("nce-ratio", "must be in (0, 1000], got " + std::to_string(ratio_));
}

}  // namespace

ObjectiveEntry nce_objective_entry() {
  auto options = nce_options().specs();
  options.push_back(flow_lr_option());
  return {options, [](const OptionValues& values) -> std::unique_ptr<PriorObjective> {
            const auto options = nce_options().read(values);
            // The flow's rate matters only to flow noise; elsewhere it is not checked.
            const double lr = flow_lr(options.noise() == "flow" ? values : OptionValues());
            return std::make_unique<NceObjective>(options, lr, false);
          }};
}

// fce: the noise is always a flow, trained against the energy; --nce-noise is nce's alone.
ObjectiveEntry fce_objective_entry() {
  std::vector<OptionSpec> options;
  for (const auto& spec : nce_options().specs())
    if (spec.name != "nce-noise") options.push_back(spec);
  options.push_back(flow_lr_option());
  return {options, [](const OptionValues& values) -> std::unique_ptr<PriorObjective> {
            return std::make_unique<NceObjective>(nce_options().read(values).noise("base"), flow_lr(values), true);
          }};
}

}  // namespace vae_ebm
