// "score-matching": denoising score matching (Vincent 2011) of the energy prior on the batch's
// posterior samples, the third family of EBM training beside MLE by MCMC and NCE. The model's
// score is grad log p(z) = -z - grad f(z); the loss fits it to the score of the posterior
// samples blurred by N(0, sigma^2 I) (docs/MATH.md section 8.6). It never sees log Z: b is not
// learned, and evaluation estimates log Z. The encoder is trained through
// E_q[log p0] - E_q[f(z)] - b, as with nce.
#include <torch/torch.h>

#include "prior/energy.h"
#include "prior/objective.h"

#include <cmath>
#include <optional>
#include <string>

#include "common/error.h"

namespace vae_ebm {

torch::Tensor denoising_score_matching_loss(const std::function<torch::Tensor(const torch::Tensor&)>& score,
                                            const torch::Tensor& x, double sigma, at::Generator& generator) {
  auto eps = torch::randn(x.sizes(), generator, x.options().requires_grad(false));
  return denoising_score_matching_loss(score, x, sigma, eps);
}

torch::Tensor denoising_score_matching_loss(const std::function<torch::Tensor(const torch::Tensor&)>& score,
                                            const torch::Tensor& x, double sigma, const torch::Tensor& eps) {
  auto noisy = (x.detach() + sigma * eps).detach();
  return 0.5 * (sigma * score(noisy) + eps).pow(2).sum(-1).mean();
}

namespace {

// Denoising score matching of the energy prior on posterior samples (Vincent 2011).
struct ScoreMatchingOptions {
  TORCH_ARG(double, noise) = 0.1;  // sigma of the Gaussian noise added to the samples

 public:
  void validate() const;  // throws OptionError
};

const OptionSet<ScoreMatchingOptions>& score_matching_options() {
  static const auto set = OptionSet<ScoreMatchingOptions>().real(
      "sm-noise", [](ScoreMatchingOptions& o) -> double& { return o.noise(); }, "sigma of the denoising noise");
  return set;
}


class ScoreMatchingObjective : public PriorObjective {
 public:
  explicit ScoreMatchingObjective(const ScoreMatchingOptions& options) : options_(options) { options.validate(); }
  std::string name() const override { return "score-matching"; }
  bool supports(const Prior& prior) const override { return is_energy_prior(prior); }
  std::string requirement() const override { return kEnergyPriorRequirement; }

  PriorTerm prior_term(Prior& prior, const DiagonalGaussian& q, const torch::Tensor& z,
                       at::Generator& generator) override {
    auto& ebm = as_energy_prior(prior);
    // g's own modules, not the fused forward: the loss differentiates grad f once more.
    auto score = [&ebm](const torch::Tensor& y) {
      auto v = y.detach().requires_grad_(true);
      auto f = ebm.bounded(ebm.f->forward(v).squeeze(-1)).sum();
      auto grad_f = torch::autograd::grad({f}, {v}, {}, /*retain_graph=*/true, /*create_graph=*/true)[0];
      return -v - grad_f;
    };
    torch::AutoGradMode enable_grad(true);
    // The noise of the whole batch's K x B samples, this process's rows kept (docs/MATH.md
    // section 10). The loss is the mean over this process's K x B_r samples: weighted B_r / B
    // by the trainer, its part of the mean over all of them.
    const auto options = z.options().requires_grad(false);
    auto eps = rows_ ? rows_->rows(torch::randn({z.size(0), rows_->global, q.dim()}, generator, options), 1)
                           .reshape({-1, q.dim()})
                     : torch::randn({z.numel() / q.dim(), q.dim()}, generator, options);
    auto dsm = denoising_score_matching_loss(score, z.detach().reshape({-1, q.dim()}), options_.noise(), eps);
    PriorTerm term{encoder_prior_term(ebm, q, z) - dsm, {}};
    term.diagnostics["score_matching"] = dsm.item<double>();
    return term;
  }

  // Each image's loss is the mean over its own samples' noise: nothing to combine.
  void check_data_parallel(int) const override {}
  void set_data_parallel(std::shared_ptr<Distributed>, const BatchShard& rows, uint64_t, torch::Device) override {
    rows_ = rows;
  }

 private:
  ScoreMatchingOptions options_;
  std::optional<BatchShard> rows_;  // data-parallel: this process's rows of each batch
};

void ScoreMatchingOptions::validate() const {
  if (!(noise_ > 0 && std::isfinite(noise_)))
    throw OptionError("sm-noise", "must be finite and > 0, got " + std::to_string(noise_));
}

}  // namespace

ObjectiveEntry score_matching_objective_entry() {
  return {score_matching_options().specs(), [](const OptionValues& values) -> std::unique_ptr<PriorObjective> {
            return std::make_unique<ScoreMatchingObjective>(score_matching_options().read(values));
          }};
}

}  // namespace vae_ebm
