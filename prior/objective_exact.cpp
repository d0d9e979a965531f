// "exact": E_q[log p(z)] under a prior with a known density (Gaussian, mixture).
// The ELBO's prior term; maximum likelihood for the mixture's parameters.
#include <torch/torch.h>

#include "prior/objective.h"

#include <stdexcept>

namespace vae_ebm {

namespace {
class ExactObjective : public PriorObjective {
 public:
  std::string name() const override { return "exact"; }
  bool supports(const Prior& prior) const override { return prior.exact(); }
  std::string requirement() const override {
    return "a prior with a known density (gaussian, mog, flow; an energy prior trains with snelbo)";
  }
  PriorTerm prior_term(Prior& prior, const DiagonalGaussian& q, const torch::Tensor& z, at::Generator&) override {
    PriorTerm term{prior.expected_log_prob(q, z), {}};
    if (want_samples_) term.log_prior_samples = prior.log_prob_bound(z);
    return term;
  }
  bool per_sample_terms() const override { return true; }
  void set_per_sample_terms(bool on) override { want_samples_ = on; }
  // Each image's term is its own: a process needs nothing from the others' rows.
  void check_data_parallel(int) const override {}

 private:
  bool want_samples_ = false;
};
}  // namespace

ObjectiveEntry exact_objective_entry() {
  return {{}, [](const OptionValues&) -> std::unique_ptr<PriorObjective> { return std::make_unique<ExactObjective>(); }};
}

}  // namespace vae_ebm
