#pragma once
// Encoders (x -> q(z|x)) and decoders (z -> the likelihood's parameters), MLP and conv.
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "prior/posterior.h"

namespace vae_ebm {

class Encoder : public torch::nn::Module {
 public:
  explicit Encoder(std::string name) : torch::nn::Module(std::move(name)) {}
  // x: [B, P] flattened images -> q(z|x) with mu, logvar [B, D].
  virtual DiagonalGaussian forward(const torch::Tensor& x) = 0;
};

class Decoder : public torch::nn::Module {
 public:
  explicit Decoder(std::string name) : torch::nn::Module(std::move(name)) {}
  // z: [..., D] -> the likelihood's parameters [..., M P] (vae/likelihood.h): parameter j of
  // value p at j P + p, M = NetworkOptions::outputs_per_value. For the Bernoulli, M = 1 and
  // they are the logits.
  virtual torch::Tensor params(const torch::Tensor& z) = 0;
};

struct NetworkOptions {
  TORCH_ARG(std::string, architecture) = "mlp";  // mlp | conv
  TORCH_ARG(std::vector<int64_t>, hidden) = std::vector<int64_t>{512, 512};  // mlp widths
  TORCH_ARG(std::string, activation) = "relu";  // mlp: relu | leaky-relu | tanh | elu | softplus
  TORCH_ARG(int64_t, latent_dim) = 16;
  TORCH_ARG(std::vector<int64_t>, image_shape) = std::vector<int64_t>{1, 28, 28};  // {C, H, W} or {D}
  TORCH_ARG(int64_t, outputs_per_value) = 1;  // M: the likelihood's parameters per data value
  TORCH_ARG(int64_t, conv_width) = 64;        // conv family (not the 28x28 reference nets): base channels

 public:
  int64_t pixels() const;
  // Throws std::invalid_argument naming the bad value (conv needs a 1x28x28 image).
  void validate() const;
};

std::shared_ptr<Encoder> make_encoder(const NetworkOptions& options);
std::shared_ptr<Decoder> make_decoder(const NetworkOptions& options);
std::vector<std::string> architectures();
std::vector<std::string> activations();

// log p(x|z) for Bernoulli logits [..., P] and targets x [..., P], broadcast against
// each other (logits [K, B, P] with x [B, P]): the broadcast shape without P.
torch::Tensor bernoulli_log_likelihood(const torch::Tensor& logits, const torch::Tensor& x);

}  // namespace vae_ebm
