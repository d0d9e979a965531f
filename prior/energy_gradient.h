#pragma once
// The gradient of the energy prior's Langevin potential, derived by hand for the MLP
//   f(z) = w_L . a(W_{L-1} ... a(W_1 z + c_1) ... + c_{L-1}),   a = LeakyReLU(slope >= 0),
//   and f = g, or f = B tanh(g / B) for a bound B > 0 (then d f / d g = 1 - tanh^2(g / B)
//   scales the backward pass, and g's value is computed for it),
//   U_beta(z) = beta f(z) + |z|^2 / 2:
//   forward:  h_i = a(W_i h_{i-1} + c_i)                  (addmm, leaky_relu_ in place)
//   backward: g_{L-1} = w_L * a'(h_{L-1});  g_{i-1} = (g_i W_i) * a'(h_{i-1})
//             grad U_beta = z + beta g_1 W_1
// a'(h) is read from the sign of the activation's output, so no pre-activation is kept; the
// hidden buffers are allocated once per chain count, and f's value is computed only when
// asked for (unadjusted Langevin needs only the gradient). Measured by bench_langevin
// against autograd: see bench/results/. Checked against autograd in tests/test_prior.cpp.
#include <torch/torch.h>

#include <vector>

#include "prior/langevin.h"

namespace vae_ebm {

class MlpPotentialGradient {
 public:
  // f: Linear and LeakyReLU layers ending in Linear(*, 1). Keeps detached views of the
  // weights (no copy): make a new one after the module moves to another device or dtype.
  MlpPotentialGradient(const torch::nn::Sequential& f, double beta, double bound = 0);

  // U_beta(z) [B] (only if need_value) and grad U_beta(z) [B, D] (a new tensor) at z [B, D].
  PotentialAndGradient operator()(const torch::Tensor& z, bool need_value);

 private:
  std::vector<torch::Tensor> weights_, biases_;
  double slope_ = 0.01;
  double beta_ = 1.0;
  double bound_ = 0;
  std::vector<torch::Tensor> h_, g_, t_;  // per hidden layer: activation, its gradient, scratch
};

}  // namespace vae_ebm
