#include <torch/torch.h>

#include "vae/model.h"

namespace vae_ebm {

VaeModel::VaeModel(const NetworkOptions& networks, const PriorOptions& prior_options,
                   const LikelihoodOptions& likelihood_options) {
  TORCH_CHECK(networks.latent_dim() == prior_options.latent_dim(), "encoder latent size ", networks.latent_dim(),
              " differs from the prior's ", prior_options.latent_dim());
  likelihood = make_likelihood(likelihood_options, networks.pixels());
  auto nets = networks;
  nets.outputs_per_value(likelihood->outputs_per_value());
  encoder = register_module("encoder", make_encoder(nets));
  decoder = register_module("decoder", make_decoder(nets));
  prior = register_module("prior", make_prior(prior_options));
  if (!likelihood->parameters().empty()) register_module("likelihood", likelihood);
}

torch::Tensor VaeModel::log_likelihood(const torch::Tensor& z, const torch::Tensor& x) {
  return likelihood->log_prob(decoder->params(z), x);
}

torch::Tensor VaeModel::decode_mean(const torch::Tensor& z) { return likelihood->mean(decoder->params(z)); }

torch::Tensor VaeModel::decode_sample(const torch::Tensor& z, at::Generator& generator) {
  return likelihood->sample(decoder->params(z), generator);
}

std::vector<torch::Tensor> VaeModel::vae_parameters() const {
  auto params = encoder->parameters();
  for (const auto& part : {decoder->parameters(), likelihood->parameters()})
    params.insert(params.end(), part.begin(), part.end());
  return params;
}

std::vector<torch::Tensor> VaeModel::prior_parameters() const { return prior->parameters(); }

}  // namespace vae_ebm
