// Micro-benchmarks of the non-matrix-product parts of a training step, the library's
// choice beside the alternatives (checked against each other):
//  - Adam over the default MLP VAE's parameters (784-512-512, latent 16; 1.35M floats):
//    torch::optim::Adam against the library's vae/fused_adam.h;
//  - the Bernoulli log-likelihood with its backward pass on a training batch's logits
//    [256, 784]: binary_cross_entropy_with_logits (the library's form until 2026-11-23)
//    against sum x*l - sum softplus(l) by autograd (until the 2026-11-23 evening), and
//    against the library's (vae/networks.cpp: an autograd function whose backward is one
//    expression, g (x - sigmoid(l)), with the rows split over the threads);
//  - the decoder MLP (16-512-512-784, ReLU) forward and backward on a batch: LibTorch's
//    modules against common/fused_mlp.h (one node per Linear and activation, the gradients
//    added into the ones FusedAdam zeroed).
//   bench_ops [--threads 1] [--seconds 1] [--batch 256] [--seed 0]
#include <torch/torch.h>

#include <cstdio>

#include "apps/cli.h"
#include "bench/bench_common.h"
#include "common/fused_mlp.h"
#include "vae/fused_adam.h"
#include "vae/model.h"

using namespace vae_ebm;
using namespace vae_ebm::bench;

namespace {

// The decoder MLP (16-512-512-784, ReLU), forward and backward on a batch: LibTorch's modules
// with the gradients handed over (set to none first), against common/fused_mlp.h adding into
// gradients that were zeroed (the zeroing is timed apart: FusedAdam does it in its own pass)
// and with them set to none.
struct MlpTimes {
  double plain, fused, fused_none, zero, gflop, max_diff, max_grad_diff;
};

MlpTimes time_decoder_mlp(int64_t batch, double seconds) {
  namespace nn = torch::nn;
  auto make = [] {
    return nn::Sequential(nn::Linear(16, 512), nn::ReLU(), nn::Linear(512, 512), nn::ReLU(), nn::Linear(512, 784));
  };
  auto plain = make(), fused = make();
  {
    torch::NoGradGuard no_grad;
    auto a = plain->parameters(), b = fused->parameters();
    for (size_t i = 0; i < a.size(); ++i) b[i].copy_(a[i]);
  }
  auto z0 = torch::randn({batch, 16});
  auto out_weights = torch::randn({batch, 784});
  auto run = [&](nn::Sequential& net, bool fused_forward, bool keep_zeroed) {
    for (auto& p : net->parameters()) {
      if (keep_zeroed && p.grad().defined()) p.mutable_grad().zero_();
      else p.mutable_grad() = torch::Tensor();
    }
    auto z = z0.detach().requires_grad_(true);
    auto y = fused_forward ? fused_mlp_forward(net, z) : net->forward(z);
    (y * out_weights).sum().backward();
    return std::make_pair(y.detach(), z.grad());
  };
  MlpTimes t{};
  auto [y_plain, gz_plain] = run(plain, false, false);
  auto [y_fused, gz_fused] = run(fused, true, true);
  t.max_diff = (y_plain - y_fused).abs().max().item<double>();
  t.max_grad_diff = (gz_plain - gz_fused).abs().max().item<double>();
  // Alternating, so that the machine's drift falls on all three alike.
  for (int round = 0; round < 3; ++round) {
    t.plain += seconds_per_call([&] { run(plain, false, false); }, seconds / 3);
    t.fused_none += seconds_per_call([&] { run(fused, true, false); }, seconds / 3);
    t.fused += seconds_per_call([&] { run(fused, true, true); }, seconds / 3);
    t.zero += seconds_per_call([&] { for (auto& p : fused->parameters()) p.mutable_grad().zero_(); }, seconds / 3);
  }
  t.plain /= 3, t.fused_none /= 3, t.fused /= 3, t.zero /= 3;
  t.fused -= t.zero;
  t.gflop = (3 * 2.0 * batch * (16 * 512 + 512 * 512 + 512 * 784) - 2.0 * batch * 16 * 512) / 1e9;
  return t;
}

}  // namespace

int main(int argc, char** argv) try {
  Flags flags(argc, argv, {});
  const int threads = static_cast<int>(flags.integer("threads", 1));
  const double seconds = flags.real("seconds", 1.0);
  const int64_t batch = flags.integer("batch", 256);
  const uint64_t seed = static_cast<uint64_t>(flags.integer("seed", 0));
  const std::string blas_request = flags.str("blas-kernel", "auto");
  flags.done();
  use_machine(threads, blas_request);
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
  // Timed with fresh gradients each step, as in training (the copy into the gradients is
  // timed apart and subtracted), and then with zero gradients for 300 steps first: the moments
  // of a parameter whose gradient stays zero (a dead unit's weights) decay into the denormal
  // range, where Intel cores take a microcode assist per operation (issue 19 measured the
  // fused step 2x slower than LibTorch's there, timed this way by accident).
  std::vector<torch::Tensor> grads;
  for (auto& p : params) grads.push_back(torch::randn_like(p) * 1e-2);
  auto refill = [&](std::vector<torch::Tensor>& ps) {
    for (size_t i = 0; i < ps.size(); ++i) ps[i].mutable_grad().copy_(grads[i]);
  };
  const double t_copy = seconds_per_call([&] { refill(params); }, seconds / 2);
  const double t_adam = seconds_per_call([&] { refill(params); adam.step(); }, seconds) - t_copy;
  const double t_fused = seconds_per_call([&] { refill(copies); fused.step(); }, seconds) - t_copy;
  for (auto* ps : {&params, &copies})
    for (auto& p : *ps) p.mutable_grad().zero_();
  for (int s = 0; s < 300; ++s) adam.step(), fused.step();
  const double t_adam_zero = seconds_per_call([&] { adam.step(); }, seconds);
  const double t_fused_zero = seconds_per_call([&] { fused.step(); }, seconds);

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

  const auto mlp = time_decoder_mlp(batch, seconds);

  std::printf("threads=%d batch=%lld vae_parameters=%lld\n", threads, (long long)batch, (long long)numel);
  print_kv("adam_libtorch_seconds", t_adam, "%.6f");
  print_kv("adam_fused_seconds", t_fused, "%.6f");
  print_kv("adam_fused_speedup", t_adam / t_fused, "%.2f");
  print_kv("adam_libtorch_zero_grads_seconds", t_adam_zero, "%.6f");
  print_kv("adam_fused_zero_grads_seconds", t_fused_zero, "%.6f");
  print_kv("adam_libtorch_gb_per_second", 7.0 * 4 * numel / t_adam / 1e9, "%.1f");  // 4 reads + 3 writes, ideal
  print_kv("adam_fused_gb_per_second", 7.0 * 4 * numel / t_fused / 1e9, "%.1f");
  print_kv("check_adam_fused_max_abs_diff_after_20_steps", adam_diff, "%.3g");
  print_kv("check_adam_total_movement_scale", moved, "%.3g");
  print_kv("loglik_bce_fwd_bwd_seconds", t_bce, "%.6f");
  print_kv("loglik_softplus_autograd_fwd_bwd_seconds", t_autograd, "%.6f");
  print_kv("loglik_library_fwd_bwd_seconds", t_library, "%.6f");
  print_kv("check_loglik_max_abs_diff", ll_diff, "%.3g");
  print_kv("check_loglik_grad_max_abs_diff", g_diff, "%.3g");
  print_kv("decoder_mlp_libtorch_fwd_bwd_seconds", mlp.plain, "%.6f");
  print_kv("decoder_mlp_fused_fwd_bwd_seconds", mlp.fused, "%.6f");
  print_kv("decoder_mlp_fused_fwd_bwd_grads_none_seconds", mlp.fused_none, "%.6f");
  print_kv("decoder_mlp_grad_zeroing_seconds", mlp.zero, "%.6f");
  print_kv("decoder_mlp_libtorch_gflops", mlp.gflop / mlp.plain, "%.1f");
  print_kv("decoder_mlp_fused_gflops", mlp.gflop / mlp.fused, "%.1f");
  print_kv("check_decoder_mlp_max_abs_diff", mlp.max_diff, "%.3g");
  print_kv("check_decoder_mlp_input_grad_max_abs_diff", mlp.max_grad_diff, "%.3g");
  print_kv("peak_rss_mb", peak_rss_mb(), "%.1f");
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_ops: %s\n", e.what());
  return 2;
}
