// Langevin steps per second on the energy prior alone (f: D -> 200 -> 200 -> 200 -> 1,
// LeakyReLU 0.2): the library's sampler as the MCMC objectives and `sample` run it
// (EnergyPrior::run_langevin: hand-derived gradient, chains split over --threads groups
// with one BLAS thread each), the same on one group with --threads BLAS threads, and the
// generic autograd sampler (prior/langevin.h's Potential overload), beside the floor set by
// the matrix products alone and the large matrix product's rate.
//   bench_langevin [--chains 256] [--steps 200] [--step-size 0.1] [--noise 1] [--latent 16]
//                  [--energy-hidden 200,200,200] [--threads 1] [--seconds 2] [--seed 0]
// Before timing it checks the hand-derived gradient against autograd in float64 and
// against central finite differences, and the chains of the three samplers against each
// other (same generator) in float32.
#include <torch/torch.h>

#include <cstdio>

#include "apps/cli.h"
#include "bench/bench_common.h"
#include "data/seed.h"
#include "prior/energy.h"
#include "prior/energy_gradient.h"
#include "prior/langevin.h"

using namespace vae_ebm;
using namespace vae_ebm::bench;

namespace {

// Steps per second of `body`, one call of which is `steps_per_call` Langevin steps.
template <class F>
double rate(F&& body, int64_t steps_per_call, double seconds) {
  return steps_per_call / seconds_per_call(body, seconds);
}

torch::Tensor autograd_grad(EnergyPrior& prior, const torch::Tensor& z) {
  auto zz = z.detach().requires_grad_(true);
  auto u = prior.potential(zz);
  return torch::autograd::grad({u.sum()}, {zz})[0];
}

}  // namespace

int main(int argc, char** argv) try {
  Flags flags(argc, argv, {});
  const int64_t chains = flags.integer("chains", 256), steps = flags.integer("steps", 200);
  const double step_size = flags.real("step-size", 0.1), noise = flags.real("noise", 1.0);
  const int64_t latent = flags.integer("latent", 16);
  auto hidden = cli::parse_widths(flags.str("energy-hidden", "200,200,200"), "energy-hidden");
  const int threads = static_cast<int>(flags.integer("threads", 1));
  const double seconds = flags.real("seconds", 2.0);
  const uint64_t seed = static_cast<uint64_t>(flags.integer("seed", 0));
  const std::string blas_request = flags.str("blas-kernel", "auto");
  flags.done();
  use_machine(threads, blas_request);
  const double mm_gflops = matmul_gflops();

  // --- Checks.
  torch::manual_seed(seed);
  EnergyPrior prior64(latent, hidden, 0.2);
  prior64.to(torch::kDouble);
  MlpPotentialGradient hand64(prior64.f, 1.0);
  auto z64 = 1.5 * torch::randn({64, latent}, torch::kDouble);
  auto g_auto = autograd_grad(prior64, z64);
  auto g_hand = hand64(z64, false).grad;
  const double grad_err = (g_hand - g_auto).abs().max().item<double>() / g_auto.abs().max().item<double>();
  // Central finite differences on 8 chains, every coordinate, float64.
  const double h = 1e-6;
  auto z8 = z64.narrow(0, 0, 8);
  auto eye = torch::eye(latent, torch::kDouble);
  auto plus = (z8.unsqueeze(1) + h * eye.unsqueeze(0)).reshape({-1, latent});
  auto minus = (z8.unsqueeze(1) - h * eye.unsqueeze(0)).reshape({-1, latent});
  torch::Tensor g_fd;
  {
    torch::NoGradGuard ng;
    g_fd = ((prior64.potential(plus) - prior64.potential(minus)) / (2 * h)).reshape({8, latent});
  }
  const double fd_err = (hand64(z8, false).grad - g_fd).abs().max().item<double>() / g_fd.abs().max().item<double>();

  torch::manual_seed(seed);
  EnergyPrior prior(latent, hidden, 0.2);
  auto potential = [&prior](const torch::Tensor& z) { return prior.potential(z); };
  auto options = LangevinOptions().steps(steps).step_size(step_size).noise(noise);
  auto one_group = LangevinOptions(options).threads(1);
  auto split = LangevinOptions(options).threads(threads);
  auto z0 = torch::randn({chains, latent}, make_generator(seed + 3));
  auto gen_a = make_generator(seed + 7), gen_b = make_generator(seed + 7), gen_c = make_generator(seed + 7);
  auto z_autograd = langevin(potential, z0, options, gen_a).z;
  auto z_one = prior.run_langevin(z0, one_group, gen_b).z;
  auto z_split = prior.run_langevin(z0, split, gen_c).z;
  const double chain_err = (z_autograd - z_one).abs().max().item<double>();
  const double split_err = (z_one - z_split).abs().max().item<double>();

  // --- Timing.
  auto gen = make_generator(seed + 11);
  auto start = torch::randn({chains, latent}, gen);
  const double split_rate = rate([&] { prior.run_langevin(start, split, gen); }, steps, seconds);
  const double one_rate = rate([&] { prior.run_langevin(start, one_group, gen); }, steps, seconds);
  const double autograd_rate = rate([&] { langevin(potential, start, options, gen); }, steps, seconds);
  // One gradient evaluation alone (autograd, hand), and the forward pass alone without autograd.
  MlpPotentialGradient hand(prior.f, 1.0);
  const double grad_rate = rate([&] { autograd_grad(prior, start); }, 1, seconds / 2);
  const double hand_grad_rate = rate([&] { hand(start, false); }, 1, seconds / 2);
  const double forward_rate = rate(
      [&] {
        torch::NoGradGuard ng;
        prior.potential(start);
      },
      1, seconds / 2);
  // The floor: the step's matrix products alone, into preallocated outputs.
  std::vector<torch::Tensor> w;
  for (size_t i = 0; i < prior.f->size(); ++i)
    if (auto l = prior.f->ptr(i)->as<torch::nn::Linear>()) w.push_back(l->weight.detach());
  std::vector<torch::Tensor> fwd_out, bwd_out;
  double macs_per_chain = 0;
  for (size_t i = 0; i + 1 < w.size(); ++i) {
    fwd_out.push_back(torch::empty({chains, w[i].size(0)}));
    bwd_out.push_back(torch::empty({chains, w[i].size(1)}));
    macs_per_chain += 2.0 * w[i].size(0) * w[i].size(1);  // forward and backward products
  }
  const double matmul_floor_rate = rate(
      [&] {
        torch::NoGradGuard ng;
        const torch::Tensor* in = &start;
        for (size_t i = 0; i + 1 < w.size(); ++i) {
          at::mm_out(fwd_out[i], *in, w[i].t());
          in = &fwd_out[i];
        }
        for (size_t i = w.size() - 1; i-- > 0;) at::mm_out(bwd_out[i], fwd_out[i], w[i]);
      },
      1, seconds / 2);
  const double flop_per_step = 2.0 * macs_per_chain * chains;

  std::printf("chains=%lld steps=%lld step_size=%g noise=%g latent=%lld threads=%d\n", (long long)chains,
              (long long)steps, step_size, noise, (long long)latent, threads);
  print_kv("matmul_gflops", mm_gflops, "%.1f");
  print_kv("check_grad_vs_autograd_float64_rel", grad_err, "%.3g");
  print_kv("check_grad_vs_finite_diff_float64_rel", fd_err, "%.3g");
  print_kv("check_chains_hand_vs_autograd_float32_max_abs", chain_err, "%.3g");
  print_kv("check_chains_split_vs_one_group_float32_max_abs", split_err, "%.3g");
  print_kv("langevin_flop_per_step", flop_per_step, "%.4g");
  print_kv("langevin_steps_per_second", split_rate, "%.0f");
  print_kv("langevin_us_per_step", 1e6 / split_rate, "%.1f");
  print_kv("langevin_gflops", flop_per_step * split_rate / 1e9, "%.1f");
  print_kv("langevin_one_group_steps_per_second", one_rate, "%.0f");
  print_kv("langevin_autograd_steps_per_second", autograd_rate, "%.0f");
  print_kv("langevin_speedup_over_autograd", split_rate / autograd_rate, "%.2f");
  print_kv("grad_autograd_us", 1e6 / grad_rate, "%.1f");
  print_kv("grad_hand_us", 1e6 / hand_grad_rate, "%.1f");
  print_kv("forward_nograd_us", 1e6 / forward_rate, "%.1f");
  print_kv("matmul_floor_us_per_step", 1e6 / matmul_floor_rate, "%.1f");
  print_kv("matmul_floor_gflops", flop_per_step * matmul_floor_rate / 1e9, "%.1f");
  print_kv("peak_rss_mb", peak_rss_mb(), "%.1f");
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_langevin: %s\n", e.what());
  return 2;
}
