#include <torch/torch.h>

#include "prior/energy_gradient.h"

namespace vae_ebm {

MlpPotentialGradient::MlpPotentialGradient(const torch::nn::Sequential& f, double beta, double bound)
    : beta_(beta), bound_(bound) {
  TORCH_CHECK(bound >= 0, "MlpPotentialGradient: the energy bound must be >= 0, got ", bound);
  torch::NoGradGuard no_grad;
  bool have_slope = false;
  for (size_t i = 0; i < f->size(); ++i) {
    if (auto linear = f->ptr(i)->as<torch::nn::Linear>()) {
      weights_.push_back(linear->weight.detach());  // [out, in]
      biases_.push_back(linear->bias.defined() ? linear->bias.detach() : torch::Tensor());
    } else if (auto act = f->ptr(i)->as<torch::nn::LeakyReLU>()) {
      TORCH_CHECK(!have_slope || act->options.negative_slope() == slope_,
                  "MlpPotentialGradient: all LeakyReLU slopes must be equal");
      slope_ = act->options.negative_slope();
      have_slope = true;
    } else {
      TORCH_CHECK(false, "MlpPotentialGradient: f must hold Linear and LeakyReLU layers only");
    }
  }
  TORCH_CHECK(!weights_.empty() && weights_.back().size(0) == 1 && !biases_.back().defined(),
              "MlpPotentialGradient: f must end in Linear(*, 1) without bias");
  TORCH_CHECK(slope_ >= 0, "MlpPotentialGradient: needs a LeakyReLU slope >= 0, got ", slope_);
}

PotentialAndGradient MlpPotentialGradient::operator()(const torch::Tensor& z, bool need_value) {
  torch::NoGradGuard no_grad;
  TORCH_CHECK(z.dim() == 2 && z.size(1) == weights_.front().size(1), "MlpPotentialGradient: z must be [B, ",
              weights_.front().size(1), "], got ", z.sizes());
  const size_t hidden = weights_.size() - 1;
  if (h_.empty() || h_[0].size(0) != z.size(0) || h_[0].scalar_type() != z.scalar_type()) {
    h_.clear();
    g_.clear();
    t_.clear();
    for (size_t i = 0; i < hidden; ++i) {
      h_.push_back(torch::empty({z.size(0), weights_[i].size(0)}, z.options()));
      g_.push_back(torch::empty_like(h_.back()));
      t_.push_back(torch::empty_like(h_.back()));
    }
  }
  const auto& w_last = weights_[hidden];  // [1, width]
  // Forward through the hidden layers, keeping each activation's output.
  const torch::Tensor* in = &z;
  for (size_t i = 0; i < hidden; ++i) {
    if (biases_[i].defined())
      at::addmm_out(h_[i], biases_[i], *in, weights_[i].t());
    else
      at::mm_out(h_[i], *in, weights_[i].t());
    at::leaky_relu_(h_[i], slope_);
    in = &h_[i];
  }
  PotentialAndGradient out;
  // g's value [B]: for U's value, or for the bound's slope.
  const auto g = need_value || bound_ > 0 ? in->matmul(w_last.t()).squeeze(1) : torch::Tensor();
  torch::Tensor slope;  // d f / d g per chain [B, 1], or undefined when f = g
  if (bound_ > 0) {
    auto t = torch::tanh(g / bound_);
    if (need_value) out.u = beta_ * bound_ * t + 0.5 * (z * z).sum(1);
    slope = (1 - t * t).unsqueeze(1);
  } else if (need_value) {
    out.u = beta_ * g + 0.5 * (z * z).sum(1);
  }
  if (hidden == 0) {  // f(z) = w . z (or its bounded form)
    out.grad = slope.defined() ? z + beta_ * slope * w_last : z + beta_ * w_last;
    return out;
  }
  // Backward: d f / d h_last = w_L (times the bound's slope, into the last layer's scratch,
  // which the loop below does not use), broadcast over the chains.
  const auto top = slope.defined() ? at::mul_out(t_[hidden - 1], slope, w_last) : w_last.expand_as(h_[hidden - 1]);
  at::leaky_relu_backward_out(g_[hidden - 1], top, h_[hidden - 1], slope_, /*self_is_result=*/true);
  for (size_t i = hidden - 1; i > 0; --i) {
    at::mm_out(t_[i - 1], g_[i], weights_[i]);
    at::leaky_relu_backward_out(g_[i - 1], t_[i - 1], h_[i - 1], slope_, /*self_is_result=*/true);
  }
  out.grad = at::addmm(z, g_[0], weights_[0], /*beta=*/1.0, /*alpha=*/beta_);  // z + beta g_1 W_1
  return out;
}

}  // namespace vae_ebm
