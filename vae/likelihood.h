#pragma once
// The decoder's likelihood p(x|z): Bernoulli, Gaussian or discretised logistic (docs/MATH.md,
// section 9). The decoder maps z to M parameters per data value (vae/networks.h); the
// likelihood turns them into log p(x|z), the mean image and a draw.
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

namespace vae_ebm {

struct LikelihoodOptions {
  TORCH_ARG(std::string, kind) = "bernoulli";  // bernoulli | gaussian | logistic
  TORCH_ARG(std::string, variance) = "learned";  // gaussian: fixed | learned (one sigma per value)
  TORCH_ARG(double, sigma) = 0.3;        // gaussian, fixed: the standard deviation, in the range's units
  TORCH_ARG(double, min_sigma) = 0.01;   // gaussian, learned: the floor of each sigma
  TORCH_ARG(std::string, range) = "0,1";  // gaussian: the data as the density sees it: 0,1 or -1,1
  TORCH_ARG(int64_t, mixture) = 1;       // logistic: components per value

 public:
  // Throws OptionError naming the bad option ("likelihood", "likelihood-sigma", ...).
  void validate() const;
};

std::vector<std::string> likelihood_kinds();

class Likelihood : public torch::nn::Module {
 public:
  explicit Likelihood(std::string name) : torch::nn::Module(std::move(name)) {}
  // M: the decoder's parameters per data value.
  virtual int64_t outputs_per_value() const = 0;
  // log p(x | params) summed over the P values: params [..., M P], x [..., P] in [0, 1], broadcast
  // against each other; the broadcast shape without the last dimension.
  virtual torch::Tensor log_prob(const torch::Tensor& params, const torch::Tensor& x) = 0;
  // The image a parameter set stands for, in [0, 1] (the Bernoulli's probabilities, the
  // Gaussian's or the logistics' mean): [..., P].
  virtual torch::Tensor mean(const torch::Tensor& params) = 0;
  // One draw of x, in [0, 1]: [..., P].
  virtual torch::Tensor sample(const torch::Tensor& params, at::Generator& generator) = 0;
  // True when log p(x|z) is the log of a probability (a mass over the values the data can
  // take), so that bounds are on log P(x) and bits per dimension mean what they say. False for
  // a density (the Gaussian), whose bounds are not comparable with a mass.
  virtual bool probability_mass() const = 0;
  // Refuses data this likelihood cannot model (DataError naming the data set and what is
  // wrong); returns a warning for data it models poorly, or "". `images` [N, P] in [0, 1].
  virtual std::string check_data(const std::string& dataset, const torch::Tensor& images, bool binary) const = 0;
  // One line for config files and records, e.g. "gaussian (learned sigma >= 0.01, data in [-1, 1])".
  virtual std::string describe() const = 0;
};

std::shared_ptr<Likelihood> make_likelihood(const LikelihoodOptions& options, int64_t values);

// log P(x) of 8-bit values x = k / 255 under a mixture of discretised logistics, each value's
// own: logit_weights, means, log_scales [..., K, P] (means and scales in the [-1, 1] units of
// 2x - 1; K = 1 needs no weights: pass an undefined tensor). Values summed: [...].
torch::Tensor discretised_logistic_log_prob(const torch::Tensor& logit_weights, const torch::Tensor& means,
                                            const torch::Tensor& log_scales, const torch::Tensor& x);

// Bits per dimension of a bound in nats on log P(x) over `values` values: -nats / (values ln 2).
double bits_per_dim(double nats, int64_t values);

}  // namespace vae_ebm
