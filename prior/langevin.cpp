#include <torch/torch.h>

#include "prior/langevin.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "common/error.h"
#include "common/parallel.h"

namespace vae_ebm {

void LangevinOptions::validate() const {
  auto fail = [](const char* option, const std::string& message) { throw OptionError(option, message); };
  if (steps_ < 0) fail("steps", "Langevin steps must be >= 0, got " + std::to_string(steps_));
  if (!(step_size_ > 0 && std::isfinite(step_size_)))
    fail("step-size", "Langevin step size must be finite and > 0, got " + std::to_string(step_size_));
  if (!(noise_ >= 0)) fail("noise", "Langevin noise scale must be >= 0, got " + std::to_string(noise_));
  if (metropolis_ && noise_ == 0)
    fail("metropolis", "the Metropolis correction needs a noise scale > 0 (noise 0 is deterministic)");
  if (!(grad_clip_ >= 0)) fail("grad-clip", "Langevin gradient clip must be >= 0, got " + std::to_string(grad_clip_));
  if (threads_ < 0) fail("threads", "Langevin threads must be >= 0, got " + std::to_string(threads_));
}

namespace {

// The noise is drawn for this many steps at a time (bounded memory for long chains), the
// chains of one call are split into at most one group per thread, and a group has at
// least kMinChains chains (fewer are not worth a thread).
constexpr int64_t kStepChunk = 32;
constexpr int64_t kMinChains = 64;

PotentialAndGradient autograd_evaluate(const Potential& potential, const torch::Tensor& z) {
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

// One group of chains and everything its steps carry from one chunk of steps to the next.
struct Group {
  PotentialGradient gradient;
  torch::Tensor z;                 // [n, D]
  PotentialAndGradient current;    // at z
  double accepted = 0;             // accepted chain-steps
  std::vector<double> energy_sum;  // per step, sums over the group's chains (trace only)
  std::vector<double> accepted_count;
  std::vector<double> grad_norm_sum;

  PotentialAndGradient evaluate(const torch::Tensor& at, const LangevinOptions& o) {
    auto out = gradient(at, o.metropolis() || o.trace());
    TORCH_CHECK(out.grad.sizes() == at.sizes(), "Langevin gradient must be ", at.sizes(), ", got ", out.grad.sizes());
    out.grad = clip(out.grad, o.grad_clip());
    return out;
  }

  // Steps first .. first + eps/uniform's leading size - 1; eps [c, n, D] (undefined without
  // noise), uniform [c, n] (undefined without MALA).
  void run(const LangevinOptions& o, int64_t first, int64_t count, const torch::Tensor& eps,
           const torch::Tensor& uniform) {
    torch::NoGradGuard no_grad;  // the states carry no graph; gradients come from `gradient`
    const double s = o.step_size(), half_s2 = 0.5 * s * s, eta = o.noise();
    const auto n = static_cast<double>(z.size(0));
    if (first == 0) current = evaluate(z, o);
    for (int64_t j = 0; j < count; ++j) {
      const int64_t step = first + j;
      torch::Tensor proposal = at::add(z, current.grad, -half_s2);
      if (eta > 0) proposal.add_(eps[j], eta * s);
      if (!o.metropolis() && !o.trace() && step + 1 == o.steps()) {
        z = proposal;  // the last unadjusted step: its potential and gradient would go unused
        accepted += n;
        return;
      }
      auto next = evaluate(proposal, o);
      double step_accepted = n;
      if (o.metropolis()) {
        auto log_alpha = mala_log_acceptance(z, current.u, current.grad, proposal, next.u, next.grad, s, eta);
        auto accept = torch::log(uniform[j]) < log_alpha;  // [n]
        auto accept_col = accept.unsqueeze(1);
        z = torch::where(accept_col, proposal, z);
        current.u = torch::where(accept, next.u, current.u);
        current.grad = torch::where(accept_col, next.grad, current.grad);
        step_accepted = accept.sum().item<double>();
      } else {
        z = proposal;
        current = std::move(next);
      }
      accepted += step_accepted;
      if (o.trace()) {
        energy_sum[step] = current.u.sum().item<double>();
        accepted_count[step] = step_accepted;
        grad_norm_sum[step] = current.grad.norm(2, {1}).sum().item<double>();
      }
    }
  }
};

LangevinResult run_chains(const PotentialGradientFactory& make_gradient, const torch::Tensor& z0,
                          const LangevinOptions& options, at::Generator& generator, bool may_split) {
  options.validate();
  TORCH_CHECK(z0.dim() == 2, "Langevin start must be [B, D], got ", z0.sizes());
  LangevinResult result;
  const int64_t n = z0.size(0), steps = options.steps();
  if (steps == 0) {
    result.z = z0.detach().clone();
    return result;
  }
  int64_t groups = 1;
  if (may_split && z0.device().is_cpu()) {
    const int64_t wanted = options.threads() > 0 ? options.threads() : num_threads();
    groups = std::max<int64_t>(1, std::min<int64_t>(wanted, n / kMinChains));
  }
  std::vector<Group> group(groups);
  std::vector<int64_t> offset(groups + 1, 0);
  for (int64_t i = 0; i < groups; ++i) {
    offset[i + 1] = offset[i] + n / groups + (i < n % groups ? 1 : 0);
    auto& g = group[i];
    g.gradient = make_gradient();
    g.z = z0.detach().narrow(0, offset[i], offset[i + 1] - offset[i]).clone();
    if (options.trace()) {
      g.energy_sum.assign(steps, 0.0);
      g.accepted_count.assign(steps, 0.0);
      g.grad_norm_sum.assign(steps, 0.0);
    }
  }
  for (int64_t first = 0; first < steps; first += kStepChunk) {
    const int64_t count = std::min(kStepChunk, steps - first);
    // All random numbers come from the caller's generator, on this thread, in one order.
    torch::Tensor eps, uniform;
    if (options.noise() > 0) eps = torch::randn({count, n, z0.size(1)}, generator, z0.options());
    if (options.metropolis()) uniform = torch::rand({count, n}, generator, z0.options());
    parallel_run(static_cast<int>(groups), [&](int i) {
      const int64_t start = offset[i], size = offset[i + 1] - offset[i];
      group[i].run(options, first, count, eps.defined() ? eps.narrow(1, start, size) : eps,
                   uniform.defined() ? uniform.narrow(1, start, size) : uniform);
    });
  }
  std::vector<torch::Tensor> parts;
  double accepted = 0;
  for (auto& g : group) {
    parts.push_back(g.z);
    accepted += g.accepted;
  }
  result.z = groups == 1 ? parts[0] : torch::cat(parts, 0);
  result.acceptance_rate = accepted / (static_cast<double>(steps) * static_cast<double>(n));
  if (options.trace()) {
    for (int64_t step = 0; step < steps; ++step) {
      double energy = 0, acc = 0, norm = 0;
      for (const auto& g : group) {
        energy += g.energy_sum[step];
        acc += g.accepted_count[step];
        norm += g.grad_norm_sum[step];
      }
      result.trace.energy.push_back(energy / n);
      result.trace.acceptance.push_back(acc / n);
      result.trace.grad_norm.push_back(norm / n);
    }
  }
  return result;
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
  auto make = [&potential]() -> PotentialGradient {
    return [&potential](const torch::Tensor& z, bool) { return autograd_evaluate(potential, z); };
  };
  // One thread: an autograd potential may close over modules and tensors shared with the caller.
  return run_chains(make, z0, options, generator, /*may_split=*/false);
}

LangevinResult langevin(const PotentialGradientFactory& make_gradient, const torch::Tensor& z0,
                        const LangevinOptions& options, at::Generator& generator) {
  return run_chains(make_gradient, z0, options, generator, /*may_split=*/true);
}

LangevinResult hmc_chains(const Potential& potential, const torch::Tensor& z0, int64_t trajectories,
                          int64_t leapfrog, double step_size, at::Generator& generator) {
  TORCH_CHECK(trajectories >= 0 && leapfrog >= 1 && step_size > 0, "hmc_chains: ", trajectories, " trajectories of ",
              leapfrog, " leapfrog steps of ", step_size);
  torch::NoGradGuard no_grad;
  auto z = z0.detach().clone();
  auto [u, g] = autograd_evaluate(potential, z);
  int64_t accepted = 0;
  for (int64_t t = 0; t < trajectories; ++t) {
    auto p = torch::randn(z.sizes(), generator, z.options());
    auto z_new = z.clone();
    auto p_new = p - 0.5 * step_size * g;
    PotentialAndGradient at_new;
    for (int64_t l = 0; l < leapfrog; ++l) {
      z_new = z_new + step_size * p_new;
      at_new = autograd_evaluate(potential, z_new);
      if (l + 1 < leapfrog) p_new = p_new - step_size * at_new.grad;
    }
    p_new = p_new - 0.5 * step_size * at_new.grad;
    // log alpha = H(z, p) - H(z', p'); a NaN (a trajectory that blew up) is a rejection.
    auto log_alpha = (u + 0.5 * p.pow(2).sum(-1)) - (at_new.u + 0.5 * p_new.pow(2).sum(-1));
    auto log_uniform = torch::rand(u.sizes(), generator, u.options()).log();
    auto accept = (log_uniform < log_alpha).logical_and(torch::isfinite(at_new.u));
    accepted += accept.sum().item<int64_t>();
    auto keep = accept.unsqueeze(-1);
    z = torch::where(keep, z_new, z);
    g = torch::where(keep, at_new.grad, g);
    u = torch::where(accept, at_new.u, u);
  }
  LangevinResult out;
  out.z = z;
  out.acceptance_rate = trajectories > 0
                            ? static_cast<double>(accepted) / static_cast<double>(trajectories * z.size(0))
                            : std::nan("");
  return out;
}

}  // namespace vae_ebm
