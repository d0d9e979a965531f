#include <torch/torch.h>

#include "vae/model.h"

namespace vae_ebm {

VaeModel::VaeModel(const NetworkOptions& networks, const PriorOptions& prior_options) {
  TORCH_CHECK(networks.latent_dim() == prior_options.latent_dim(), "encoder latent size ", networks.latent_dim(),
              " differs from the prior's ", prior_options.latent_dim());
  encoder = register_module("encoder", make_encoder(networks));
  decoder = register_module("decoder", make_decoder(networks));
  prior = register_module("prior", make_prior(prior_options));
}

std::vector<torch::Tensor> VaeModel::vae_parameters() const {
  auto params = encoder->parameters();
  auto dec = decoder->parameters();
  params.insert(params.end(), dec.begin(), dec.end());
  return params;
}

std::vector<torch::Tensor> VaeModel::prior_parameters() const { return prior->parameters(); }

}  // namespace vae_ebm
