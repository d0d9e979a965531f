#pragma once
// PROTOTYPE (bench only): the library's training step with the three changes bench_ops
// and bench_langevin measure one by one, to time them together (bench_train --prototype):
//  - the ELBO terms of vae/elbo.cpp with the Bernoulli log-likelihood written as
//    sum x*l - sum softplus(l) (vae/networks.cpp uses binary_cross_entropy_with_logits);
//  - the MCMC objectives of prior/objective_mcmc.cpp with Langevin on the hand-derived
//    gradient (bench/mlp_energy_grad.h) instead of autograd (unadjusted Langevin only);
//  - Adam as one fused pass per parameter (bench/fused_adam.h), set up in bench_train.
// Same mathematics as the library; the checks live in bench_langevin and bench_ops.
#include <torch/torch.h>

#include <memory>

#include "bench/mlp_energy_grad.h"
#include "prior/energy.h"
#include "prior/gaussian.h"
#include "prior/objective.h"
#include "vae/model.h"

namespace vae_ebm::bench {

inline torch::Tensor fast_bernoulli_log_likelihood(const torch::Tensor& logits, const torch::Tensor& x) {
  return (logits * x).sum(-1) - at::softplus(logits).sum(-1);
}

// elbo_terms (vae/elbo.cpp) without posterior refinement, with the fused log-likelihood.
inline ElboTerms prototype_elbo_terms(VaeModel& model, PriorObjective& objective, const torch::Tensor& x, int64_t k,
                                      at::Generator& generator) {
  auto q = model.encoder->forward(x);
  auto z = q.rsample(k, generator);
  ElboTerms terms;
  terms.reconstruction = fast_bernoulli_log_likelihood(model.decoder->logits(z), x).mean(0);
  terms.entropy = q.entropy();
  auto prior_term = objective.prior_term(*model.prior, q, z, generator);
  terms.log_prior = prior_term.log_prior;
  terms.diagnostics = std::move(prior_term.diagnostics);
  terms.kl = -(terms.entropy + terms.log_prior);
  terms.total = terms.reconstruction - terms.kl;
  return terms;
}

// prior/objective_mcmc.cpp's surrogate, with the negatives from MlpEnergyGrad::langevin.
class PrototypeMcmcObjective : public PriorObjective {
 public:
  PrototypeMcmcObjective(std::string name, const ObjectiveOptions& options)
      : name_(std::move(name)), options_(options) {
    const bool short_run = name_ == "short-run-mcmc";
    steps_ = options.mcmc_steps() > 0 ? options.mcmc_steps() : (short_run ? 60 : 200);
    step_size_ = options.mcmc_step_size() > 0 ? options.mcmc_step_size() : (short_run ? 0.4 : 0.1);
    TORCH_CHECK(!options.mcmc_metropolis() && options.mcmc_grad_clip() == 0,
                "the prototype does unadjusted Langevin without clipping only");
  }
  std::string name() const override { return name_; }
  void check(const Prior& prior) const override { TORCH_CHECK(prior.kind() == "ebm", "needs the energy prior"); }

  PriorTerm prior_term(Prior& prior, const DiagonalGaussian& q, const torch::Tensor& z,
                       at::Generator& generator) override {
    auto& ebm = static_cast<EnergyPrior&>(prior);
    if (!grad_) grad_ = std::make_unique<MlpEnergyGrad>(ebm);
    const int64_t n = options_.negatives() > 0 ? options_.negatives() : q.batch();
    torch::Tensor start, index;
    if (options_.persistent()) {
      if (!buffer_.defined())
        buffer_ = torch::randn({options_.buffer_size(), q.dim()}, generator, q.mu.options().requires_grad(false));
      index = torch::randint(buffer_.size(0), {n}, generator, torch::TensorOptions().dtype(torch::kLong));
      start = buffer_.index_select(0, index);
      auto fresh = torch::rand({n, 1}, generator, start.options()) < options_.reinit_fraction();
      start = torch::where(fresh, torch::randn(start.sizes(), generator, start.options()), start);
    } else {
      start = torch::randn({n, q.dim()}, generator, q.mu.options().requires_grad(false));
    }
    auto negatives = grad_->langevin(start, steps_, step_size_, options_.mcmc_noise(), generator);
    if (options_.persistent()) buffer_.index_copy_(0, index, negatives);
    auto negative_energy = ebm.energy(negatives);
    auto positive_energy = ebm.energy(z).mean(0);
    auto cross_entropy = GaussianPrior(q.dim()).expected_log_prob(q, z);
    PriorTerm term{cross_entropy - positive_energy + negative_energy.mean(), {}};
    term.diagnostics["energy_positive"] = positive_energy.mean().item<double>();
    term.diagnostics["energy_negative"] = negative_energy.mean().item<double>();
    return term;
  }

 private:
  std::string name_;
  ObjectiveOptions options_;
  int64_t steps_;
  double step_size_;
  std::unique_ptr<MlpEnergyGrad> grad_;
  torch::Tensor buffer_;
};

}  // namespace vae_ebm::bench
