#include <torch/torch.h>

#include "prior/langevin.h"

#include <stdexcept>
#include <string>

namespace vae_ebm {

void LangevinOptions::validate() const {
  if (steps_ < 0) throw std::invalid_argument("Langevin steps must be >= 0, got " + std::to_string(steps_));
  if (!(step_size_ > 0)) throw std::invalid_argument("Langevin step size must be > 0, got " + std::to_string(step_size_));
  if (!(noise_ >= 0)) throw std::invalid_argument("Langevin noise scale must be >= 0, got " + std::to_string(noise_));
  if (metropolis_ && noise_ == 0)
    throw std::invalid_argument("the Metropolis correction needs a noise scale > 0 (noise 0 is deterministic)");
  if (!(grad_clip_ >= 0)) throw std::invalid_argument("Langevin gradient clip must be >= 0, got " + std::to_string(grad_clip_));
}

namespace {

struct Evaluated {
  torch::Tensor u;     // [B], detached
  torch::Tensor grad;  // [B, D]
};

Evaluated evaluate(const Potential& potential, const torch::Tensor& z) {
  // Gradients with respect to z only: the potential's parameters are left untouched.
  // Gradient mode on even under a caller's NoGradGuard (sampling, evaluation).
  torch::AutoGradMode enable(true);
  auto zz = z.detach().requires_grad_(true);
  auto u = potential(zz);
  TORCH_CHECK(u.dim() == 1 && u.size(0) == z.size(0), "Langevin potential must return [B], got ", u.sizes());
  auto grad = torch::autograd::grad({u.sum()}, {zz}, /*grad_outputs=*/{}, /*retain_graph=*/false,
                                    /*create_graph=*/false)[0];
  return {u.detach(), grad.detach()};
}

torch::Tensor clip(const torch::Tensor& grad, double max_norm) {
  if (max_norm <= 0) return grad;
  auto norm = grad.norm(2, {1}, /*keepdim=*/true);
  return grad * torch::clamp_max(max_norm / (norm + 1e-12), 1.0);
}

}  // namespace

torch::Tensor mala_log_acceptance(const torch::Tensor& z, const torch::Tensor& u, const torch::Tensor& grad,
                                  const torch::Tensor& z_new, const torch::Tensor& u_new,
                                  const torch::Tensor& grad_new, double step_size, double noise) {
  const double half_s2 = 0.5 * step_size * step_size;
  const double variance = noise * noise * step_size * step_size;
  auto backward = (z - z_new + half_s2 * grad_new).pow(2).sum(-1);
  auto forward = (z_new - z + half_s2 * grad).pow(2).sum(-1);
  return -u_new + u - backward / (2 * variance) + forward / (2 * variance);
}

LangevinResult langevin(const Potential& potential, const torch::Tensor& z0, const LangevinOptions& options,
                        at::Generator& generator) {
  options.validate();
  TORCH_CHECK(z0.dim() == 2, "Langevin start must be [B, D], got ", z0.sizes());
  LangevinResult result;
  auto z = z0.detach().clone();
  const double s = options.step_size();
  const double half_s2 = 0.5 * s * s;
  const double eta = options.noise();
  auto current = evaluate(potential, z);
  current.grad = clip(current.grad, options.grad_clip());
  double accepted = 0;
  for (int64_t step = 0; step < options.steps(); ++step) {
    torch::Tensor proposal = z - half_s2 * current.grad;
    if (eta > 0) proposal = proposal + (eta * s) * torch::randn(z.sizes(), generator, z.options());
    if (!options.metropolis() && !options.trace() && step + 1 == options.steps()) {
      z = proposal;  // the last unadjusted step: its potential and gradient would go unused
      accepted += 1.0;
      break;
    }
    auto next = evaluate(potential, proposal);
    next.grad = clip(next.grad, options.grad_clip());
    double step_acceptance = 1.0;
    if (options.metropolis()) {
      auto log_alpha = mala_log_acceptance(z, current.u, current.grad, proposal, next.u, next.grad, s, eta);
      auto uniform = torch::rand({z.size(0)}, generator, z.options());
      auto accept = torch::log(uniform) < log_alpha;  // [B]
      auto accept_col = accept.unsqueeze(1);
      z = torch::where(accept_col, proposal, z);
      current.u = torch::where(accept, next.u, current.u);
      current.grad = torch::where(accept_col, next.grad, current.grad);
      step_acceptance = accept.to(torch::kDouble).mean().item<double>();
    } else {
      z = proposal;
      current = next;
    }
    accepted += step_acceptance;
    if (options.trace()) {
      result.trace.energy.push_back(current.u.mean().item<double>());
      result.trace.acceptance.push_back(step_acceptance);
      result.trace.grad_norm.push_back(current.grad.norm(2, {1}).mean().item<double>());
    }
  }
  result.z = z.detach();
  result.acceptance_rate = options.steps() > 0 ? accepted / static_cast<double>(options.steps()) : 1.0;
  return result;
}

}  // namespace vae_ebm
