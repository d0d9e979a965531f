#include <torch/torch.h>

#include "prior/mixture.h"

#include <cmath>

#include "data/seed.h"

namespace vae_ebm {

const OptionSet<MixtureOptions>& mixture_option_set() {
  static const auto set = OptionSet<MixtureOptions>().integer(
      "mog-components", [](MixtureOptions& o) -> int64_t& { return o.components; }, "mixture prior: components");
  return set;
}

MixturePrior::MixturePrior(int64_t latent_dim, int64_t components, uint64_t init_seed)
    : Prior("MixturePrior"), latent_dim_(latent_dim) {
  TORCH_CHECK(latent_dim > 0, "Invalid latent dimension: ", latent_dim);
  TORCH_CHECK(components > 0, "Invalid number of mixture components: ", components);
  auto gen = make_generator(init_seed);
  logits = register_parameter("logits", torch::zeros({components}));
  means = register_parameter("means", torch::randn({components, latent_dim}, gen));
  log_vars = register_parameter("log_vars", torch::zeros({components, latent_dim}));
}

torch::Tensor MixturePrior::log_prob_unnormalised(const torch::Tensor& z) { return log_prob_bound(z); }

torch::Tensor MixturePrior::log_prob_bound(const torch::Tensor& z) {
  // z [..., D] -> [..., 1, D] against [K, D].
  auto diff = z.unsqueeze(-2) - means;
  auto per_component = -0.5 * (std::log(2.0 * M_PI) + log_vars + diff * diff * torch::exp(-log_vars)).sum(-1);
  return torch::logsumexp(per_component + torch::log_softmax(logits, 0), -1);
}

torch::Tensor MixturePrior::sample(int64_t n, at::Generator& generator) {
  torch::NoGradGuard no_grad;
  auto component = torch::multinomial(torch::softmax(logits, 0), n, /*replacement=*/true, generator);
  auto eps = torch::randn({n, latent_dim_}, generator, means.options());
  return means.index_select(0, component) + torch::exp(0.5 * log_vars.index_select(0, component)) * eps;
}

}  // namespace vae_ebm
