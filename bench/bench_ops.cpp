// Micro-benchmarks of the non-matrix-product parts of a training step, the library's
// choice beside the alternatives (checked against each other):
//  - Adam over the default MLP VAE's parameters (784-512-512, latent 16; 1.35M floats):
//    torch::optim::Adam against the library's vae/fused_adam.h;
//  - the Bernoulli log-likelihood with its backward pass on a training batch's logits
//    [256, 784]: binary_cross_entropy_with_logits (the library's form until 2026-11-23)
//    against sum x*l - sum softplus(l) by autograd (until the 2026-11-23 evening), and
//    against the library's (vae/networks.cpp: an autograd function whose backward is one
//    expression, g (x - sigmoid(l)), with the rows split over the threads).
//   bench_ops [--threads 1] [--seconds 1] [--batch 256] [--seed 0]
#include <torch/torch.h>

#include <cstdio>

#include "apps/cli.h"
#include "bench/bench_common.h"
#include "vae/fused_adam.h"
#include "vae/model.h"

using namespace vae_ebm;
using namespace vae_ebm::bench;

int main(int argc, char** argv) try {
  Flags flags(argc, argv, {});
  const int threads = static_cast<int>(flags.integer("threads", 1));
  const double seconds = flags.real("seconds", 1.0);
  const int64_t batch = flags.integer("batch", 256);
  const uint64_t seed = static_cast<uint64_t>(flags.integer("seed", 0));
  flags.done();
  cli::set_threads(threads);
  torch::manual_seed(seed);

  // --- Adam.
  VaeModel model(NetworkOptions(), PriorOptions("gaussian", 16));
  auto params = model.vae_parameters();
  std::vector<torch::Tensor> copies;
  int64_t numel = 0;
  for (auto& p : params) {
    copies.push_back(p.detach().clone().requires_grad_(true));
    numel += p.numel();
  }
  torch::optim::Adam adam(params, torch::optim::AdamOptions(1e-4).betas({0.5, 0.999}));
  FusedAdam fused(copies, torch::optim::AdamOptions(1e-4).betas({0.5, 0.999}));
  // Twenty steps with the same random gradients, then compare the parameters.
  for (int s = 0; s < 20; ++s) {
    for (size_t i = 0; i < params.size(); ++i) {
      auto g = torch::randn_like(params[i]) * 1e-2;
      params[i].mutable_grad() = g.clone();
      copies[i].mutable_grad() = g.clone();
    }
    adam.step();
    fused.step();
  }
  double adam_diff = 0, moved = 0;
  for (size_t i = 0; i < params.size(); ++i)
    adam_diff = std::max(adam_diff, (params[i] - copies[i]).abs().max().item<double>());
  moved = 20 * 1e-4;  // each step moves a parameter by about lr
  const double t_adam = seconds_per_call([&] { adam.step(); }, seconds);
  const double t_fused = seconds_per_call([&] { fused.step(); }, seconds);

  // --- Bernoulli log-likelihood, forward and backward.
  auto logits0 = torch::randn({batch, 784}) * 3;
  auto x = torch::bernoulli(torch::full({batch, 784}, 0.13));
  auto run_ll = [&](int form) {
    auto l = logits0.detach().requires_grad_(true);
    torch::Tensor ll;
    if (form == 0) ll = -torch::binary_cross_entropy_with_logits(l, x, {}, {}, at::Reduction::None).sum(-1);
    else if (form == 1) ll = (l * x).sum(-1) - at::softplus(l).sum(-1);
    else ll = bernoulli_log_likelihood(l, x);
    ll.sum().backward();
    return std::make_pair(ll.detach(), l.grad());
  };
  auto [ll0, g0] = run_ll(0);
  auto [ll1, g1] = run_ll(1);
  auto [ll2, g2] = run_ll(2);
  const double ll_diff = std::max((ll0 - ll1).abs().max().item<double>(), (ll0 - ll2).abs().max().item<double>());
  const double g_diff = std::max((g0 - g1).abs().max().item<double>(), (g0 - g2).abs().max().item<double>());
  const double t_bce = seconds_per_call([&] { run_ll(0); }, seconds);
  const double t_autograd = seconds_per_call([&] { run_ll(1); }, seconds);
  const double t_library = seconds_per_call([&] { run_ll(2); }, seconds);

  std::printf("threads=%d batch=%lld vae_parameters=%lld\n", threads, (long long)batch, (long long)numel);
  print_kv("adam_libtorch_seconds", t_adam, "%.6f");
  print_kv("adam_fused_seconds", t_fused, "%.6f");
  print_kv("adam_fused_speedup", t_adam / t_fused, "%.2f");
  print_kv("adam_libtorch_gb_per_second", 7.0 * 4 * numel / t_adam / 1e9, "%.1f");  // 4 reads + 3 writes, ideal
  print_kv("adam_fused_gb_per_second", 7.0 * 4 * numel / t_fused / 1e9, "%.1f");
  print_kv("check_adam_fused_max_abs_diff_after_20_steps", adam_diff, "%.3g");
  print_kv("check_adam_total_movement_scale", moved, "%.3g");
  print_kv("loglik_bce_fwd_bwd_seconds", t_bce, "%.6f");
  print_kv("loglik_softplus_autograd_fwd_bwd_seconds", t_autograd, "%.6f");
  print_kv("loglik_library_fwd_bwd_seconds", t_library, "%.6f");
  print_kv("check_loglik_max_abs_diff", ll_diff, "%.3g");
  print_kv("check_loglik_grad_max_abs_diff", g_diff, "%.3g");
  print_kv("peak_rss_mb", peak_rss_mb(), "%.1f");
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_ops: %s\n", e.what());
  return 2;
}
