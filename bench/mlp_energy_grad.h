#pragma once
// PROTOTYPE (bench only, a proposal for prior/): the gradient of the energy prior's
// Langevin potential U(z) = f(z) + |z|^2 / 2 derived by hand for the MLP energy
//   f(z) = w_L . a(W_{L-1} ... a(W_1 z + c_1) ... + c_{L-1}),   a = LeakyReLU(slope),
// and an unadjusted Langevin loop built on it, without autograd:
//   forward:  h_i = a(W_i h_{i-1} + c_i)                       (addmm, leaky_relu_ in place)
//   backward: g_{L-1} = w_L * a'(h_{L-1});  g_{i-1} = (g_i W_i) * a'(h_{i-1})
//             grad U = g_1 W_1 + z                             (addmm: z + g_1 W_1)
// a'(h) is read from the sign of the activation's output (slope >= 0), so no
// pre-activation is kept; every buffer is allocated once per chain count, and f's value is
// never computed (ULA needs only the gradient). The weights are views of the module's
// parameters (detached, same storage), so optimiser updates are seen without a copy.
// bench_langevin checks it against autograd (float64, plus finite differences) and
// against the library's langevin() run with the same generator.
#include <torch/torch.h>

#include <vector>

#include "prior/energy.h"

namespace vae_ebm::bench {

class MlpEnergyGrad {
 public:
  explicit MlpEnergyGrad(EnergyPrior& prior) {
    torch::NoGradGuard no_grad;
    auto& f = *prior.f;
    for (size_t i = 0; i < f.size(); ++i) {
      if (auto linear = f.ptr(i)->as<torch::nn::Linear>()) {
        weights_.push_back(linear->weight.detach());  // [out, in]
        biases_.push_back(linear->bias.defined() ? linear->bias.detach() : torch::Tensor());
      } else if (auto act = f.ptr(i)->as<torch::nn::LeakyReLU>()) {
        slope_ = act->options.negative_slope();
      } else {
        TORCH_CHECK(false, "MlpEnergyGrad: f must be Linear and LeakyReLU layers only");
      }
    }
    TORCH_CHECK(weights_.size() >= 2 && weights_.back().size(0) == 1, "MlpEnergyGrad: f must end in Linear(*, 1)");
    TORCH_CHECK(slope_ >= 0, "MlpEnergyGrad: needs a LeakyReLU slope >= 0, got ", slope_);
  }

  // grad U(z) for z [B, D] -> [B, D] (a buffer reused by the next call with the same B).
  const torch::Tensor& potential_grad(const torch::Tensor& z) {
    torch::NoGradGuard no_grad;
    resize(z);
    const size_t hidden = weights_.size() - 1;
    // Forward through the hidden layers, keeping each activation's output.
    const torch::Tensor* in = &z;
    for (size_t i = 0; i < hidden; ++i) {
      at::addmm_out(h_[i], biases_[i], *in, weights_[i].t());
      at::leaky_relu_(h_[i], slope_);
      in = &h_[i];
    }
    // Backward: d f / d h_last = w_L, broadcast over the chains.
    at::leaky_relu_backward_out(g_[hidden - 1], weights_[hidden].expand_as(h_[hidden - 1]), h_[hidden - 1], slope_,
                                /*self_is_result=*/true);
    for (size_t i = hidden - 1; i > 0; --i) {
      at::mm_out(t_[i - 1], g_[i], weights_[i]);
      at::leaky_relu_backward_out(g_[i - 1], t_[i - 1], h_[i - 1], slope_, /*self_is_result=*/true);
    }
    at::addmm_out(grad_, z, g_[0], weights_[0]);  // z + g_1 W_1: the base's |z|^2/2 adds z
    return grad_;
  }

  // Unadjusted Langevin, z <- z - (s^2/2) grad U(z) + eta s eps, from z0 [B, D]. Draws
  // eps [B, D] from `generator` once per step in the order the library's langevin()
  // does, so both give the same chains up to rounding. Returns the final z (a new tensor).
  torch::Tensor langevin(const torch::Tensor& z0, int64_t steps, double step_size, double noise,
                         at::Generator& generator) {
    torch::NoGradGuard no_grad;
    auto z = z0.detach().clone();
    auto eps = torch::empty_like(z);
    const double half_s2 = 0.5 * step_size * step_size;
    for (int64_t step = 0; step < steps; ++step) {
      const auto& grad = potential_grad(z);
      z.add_(grad, -half_s2);
      if (noise > 0) {
        eps.normal_(0, 1, generator);
        z.add_(eps, noise * step_size);
      }
    }
    return z;
  }

  // The multiply-adds of one gradient evaluation per chain (forward and backward products).
  double macs_per_chain() const {
    double m = 0;
    for (size_t i = 0; i + 1 < weights_.size(); ++i) m += 2.0 * weights_[i].size(0) * weights_[i].size(1);
    return m;
  }

 private:
  void resize(const torch::Tensor& z) {
    if (grad_.defined() && grad_.size(0) == z.size(0) && grad_.scalar_type() == z.scalar_type()) return;
    const size_t hidden = weights_.size() - 1;
    h_.clear();
    g_.clear();
    t_.clear();
    for (size_t i = 0; i < hidden; ++i) {
      h_.push_back(torch::empty({z.size(0), weights_[i].size(0)}, z.options()));
      g_.push_back(torch::empty({z.size(0), weights_[i].size(0)}, z.options()));
      t_.push_back(torch::empty({z.size(0), weights_[i].size(0)}, z.options()));
    }
    grad_ = torch::empty_like(z);
  }

  std::vector<torch::Tensor> weights_, biases_;
  double slope_ = 0.01;
  std::vector<torch::Tensor> h_, g_, t_;
  torch::Tensor grad_;
};

}  // namespace vae_ebm::bench
