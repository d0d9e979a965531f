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
  // Throws OptionError naming the bad option: conv needs images {C, H, W} with at most 4
  // channels and sides of at least 8; conv_width and outputs_per_value must be >= 1.
  void validate() const;
  // conv: true for the SNL reference networks (images 1x28x28), false for the conv family.
  bool conv_reference() const;
};

// The conv family's geometry for images C x H x W (architecture conv, every shape but 1x28x28;
// networks.cpp says how the family is built): n stride-2 stages between a start of
// start_h x start_w and a canvas of start 2^n, cropped (decoder) or zero-padded (encoder)
// centrally to H x W, top and left being the rows and columns cut or added before the image.
struct ConvFamilyGeometry {
  int64_t channels, height, width;
  int64_t stages;              // n
  int64_t start_h, start_w;    // ceil(H / 2^n), ceil(W / 2^n)
  int64_t canvas_h, canvas_w;  // start 2^n >= H, W
  int64_t top, left;           // (canvas - side) / 2, rounded down
  std::vector<int64_t> decoder_channels;  // 8w, then per stage, the last C M
  std::vector<int64_t> encoder_channels;  // C, then per stage w, 2w, 4w, 8w, 8w, ...
};
ConvFamilyGeometry conv_family_geometry(const NetworkOptions& options);

// The parameters make_encoder and make_decoder allocate, counted without allocating them (the
// memory check a command makes before it builds its networks). Validates the options first.
double network_parameters(const NetworkOptions& options);

std::shared_ptr<Encoder> make_encoder(const NetworkOptions& options);
std::shared_ptr<Decoder> make_decoder(const NetworkOptions& options);
std::vector<std::string> architectures();
std::vector<std::string> activations();

// log p(x|z) for Bernoulli logits [..., P] and targets x [..., P], broadcast against
// each other (logits [K, B, P] with x [B, P]): the broadcast shape without P.
torch::Tensor bernoulli_log_likelihood(const torch::Tensor& logits, const torch::Tensor& x);

}  // namespace vae_ebm
