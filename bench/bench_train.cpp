// Training throughput of one objective, beside the rate of a large matrix product
// measured in the same process, in blocks between the steps. Prints one `key value` line
// per figure.
//   bench_train [--objective exact|snelbo|short-run-mcmc|long-run-mcmc|nce|fce|score-matching]
//               [--prior gaussian|mog|ebm|flow] [--persistent] [--mcmc-steps N] [--mcmc-step-size S]
//               [--negatives N] [--base-samples S] [--proposal base|flow|...] [--flow-fit ml|reverse-kl|mix]
//               [--nce-noise base|aggregate-gaussian|flow] [--buffer-size N] [--threads N] [--torch-threads N]
//               [--steps N] [--seconds S] [--warmup N] [--batch N] [--samples K]
//               [--architecture mlp|conv] [--hidden 512,512] [--latent 16] [--energy-hidden 200,200,200]
//               [--data random|binary-mnist] [--data-images N] [--data-dir DIR] [--seed N]
//               [--profile] [--skip-matmul]
// The prior follows the objective when not given (exact: gaussian, the others: ebm).
// Measurement: --warmup steps, then steps until at least --steps steps and --seconds
// seconds have passed. --profile adds the time per step of the forward pass (with the
// objective's Langevin chains), the backward pass and the two optimiser steps, and for
// the MCMC objectives the time of the objective's Langevin run alone. The step is the
// trainer's: elbo_terms, one backward pass, FusedAdam for the VAE and for the prior.
#include <torch/torch.h>

#include <map>

#include <algorithm>
#include <cstdio>
#include <string>

#include "apps/cli.h"
#include "bench/bench_common.h"
#include "data/seed.h"
#include "prior/energy.h"
#include "prior/objective.h"
#include "vae/fused_adam.h"
#include "vae/model.h"

using namespace vae_ebm;
using namespace vae_ebm::bench;

namespace {

std::vector<int64_t> with_ends(int64_t first, const std::vector<int64_t>& middle, int64_t last) {
  std::vector<int64_t> w{first};
  w.insert(w.end(), middle.begin(), middle.end());
  w.push_back(last);
  return w;
}

}  // namespace

int main(int argc, char** argv) try {
  Flags flags(argc, argv, {"persistent", "profile", "skip-matmul"});
  std::string objective = flags.str("objective", "");
  std::string prior = flags.str("prior", "");
  if (prior.empty()) prior = objective.empty() || objective == "exact" ? "gaussian" : "ebm";
  if (objective.empty()) objective = default_objective(prior);
  const int threads = static_cast<int>(flags.integer("threads", 1));
  const int torch_threads = static_cast<int>(flags.integer("torch-threads", 0));
  const double min_seconds = flags.real("seconds", 0);
  const int64_t min_steps = flags.integer("steps", min_seconds > 0 ? 3 : 200);
  const int64_t warmup = flags.integer("warmup", 5);
  const int64_t batch = flags.integer("batch", 256), samples = flags.integer("samples", 1);
  const int64_t latent = flags.integer("latent", 16);
  const std::string architecture = flags.str("architecture", "mlp");
  const bool conv = architecture == "conv";
  const std::string hidden = flags.str("hidden", "512,512");
  const std::string energy_hidden = flags.str("energy-hidden", "200,200,200");
  const std::string data_source = flags.str("data", "random");
  const int64_t data_images = flags.integer("data-images", 10240);
  const std::string data_dir = flags.str("data-dir", "");
  const uint64_t seed = static_cast<uint64_t>(flags.integer("seed", 0));
  const bool profile = flags.on("profile"), skip_matmul = flags.on("skip-matmul");
  // The objectives' own options, by the names train's flags use (prior/objective.h declares them).
  OptionValues objective_options;
  std::map<std::string, std::string> option_defaults;
  for (const auto& option : all_objective_options()) {
    const auto& spec = option.spec;
    option_defaults[spec.name] = spec.default_text;
    if (spec.type == OptionType::flag) {
      if (flags.on(spec.name)) objective_options.set(spec.name, true);
    } else {
      const auto text = flags.str(spec.name, "");
      if (!text.empty()) objective_options.set(spec.name, text);
    }
  }
  auto option = [&](const std::string& name) {
    const auto* given = objective_options.find(name);
    return given ? *given : option_defaults.at(name);
  };
  const int64_t option_negatives = option_integer("negatives", option("negatives"));
  const int64_t option_mcmc_steps = option_integer("mcmc-steps", option("mcmc-steps"));
  const double option_mcmc_step_size = option_real("mcmc-step-size", option("mcmc-step-size"));
  const int64_t option_base_samples = option_integer("base-samples", option("base-samples"));
  const bool option_persistent = option_flag("persistent", option("persistent"));
  const std::string blas_request = flags.str("blas-kernel", "auto");
  flags.done();

  use_machine(threads, blas_request);
  if (torch_threads > 0) at::set_num_threads(torch_threads);  // experiment: OpenMP threads apart from BLAS

  auto widths = cli::parse_widths(hidden, "hidden");
  auto energy_widths = cli::parse_widths(energy_hidden, "energy-hidden");
  auto net = NetworkOptions().architecture(architecture).hidden(widths).latent_dim(latent);
  VaeModel model(net, PriorOptions(prior, latent).set("energy-hidden", energy_hidden));
  const bool mcmc = objective == "short-run-mcmc" || objective == "long-run-mcmc";
  auto obj = make_objective(objective, objective_options);  // validates the options
  obj->check(*model.prior);
  // The SNL reference optimiser settings (README): Adam, betas 0.5/0.999.
  auto adam = [](double lr) { return torch::optim::AdamOptions(lr).betas({0.5, 0.999}); };
  auto prior_params = model.prior_parameters();
  auto vae_opt = std::make_unique<FusedAdam>(model.vae_parameters(), adam(1e-4));
  std::unique_ptr<FusedAdam> prior_opt;
  if (!prior_params.empty()) prior_opt = std::make_unique<FusedAdam>(prior_params, adam(2e-5));
  auto gen = make_generator(seed);
  const int64_t n_batches = std::max<int64_t>(1, data_images / batch);
  auto data = bench_data(data_source, n_batches * batch, data_dir, "train", seed);

  double t_forward = 0, t_backward = 0, t_optim = 0;
  int64_t step_index = 0;
  auto one_step = [&] {
    auto x = data.narrow(0, (step_index++ % n_batches) * batch, batch);
    auto t0 = clock_type::now();
    auto terms = elbo_terms(model, *obj, x, samples, gen);
    auto loss = -terms.total.mean();
    auto t1 = clock_type::now();
    vae_opt->clear_grads();
    if (prior_opt) prior_opt->clear_grads();
    loss.backward();
    auto t2 = clock_type::now();
    vae_opt->step();
    if (prior_opt) prior_opt->step();
    auto t3 = clock_type::now();
    t_forward += std::chrono::duration<double>(t1 - t0).count();
    t_backward += std::chrono::duration<double>(t2 - t1).count();
    t_optim += std::chrono::duration<double>(t3 - t2).count();
  };
  // Matrix-product floating-point operations of one step (elementwise work not counted).
  const double kb = static_cast<double>(samples * batch);
  double flops = conv ? conv_step_flops(latent, batch, samples)
                      : mlp_flops(with_ends(784, widths, 2 * latent), batch, true, true, false) +
                            mlp_flops(with_ends(latent, std::vector<int64_t>(widths.rbegin(), widths.rend()), 784), kb,
                                      true, true, true);
  auto ew = with_ends(latent, energy_widths, 1);
  const int64_t negatives = option_negatives > 0 ? option_negatives : batch;
  int64_t mcmc_steps = option_mcmc_steps;
  if (mcmc_steps == 0) mcmc_steps = objective == "short-run-mcmc" ? 60 : 200;
  if (objective == "snelbo") {
    const int64_t s = option_base_samples > 0 ? option_base_samples : batch;
    flops += mlp_flops(ew, s, true, true, false) + mlp_flops(ew, kb, true, true, true);
  } else if (mcmc) {
    // Unadjusted Langevin evaluates the gradient `steps` times (the last step's is skipped).
    flops += mcmc_steps * mlp_flops(ew, negatives, true, false, true) + mlp_flops(ew, negatives, true, true, false) +
             mlp_flops(ew, kb, true, true, true);
  } else if (objective == "nce") {
    flops += 3 * mlp_flops(ew, kb, true, true, false) + mlp_flops(ew, kb, true, true, true);
  }
  for (int64_t s = 0; s < warmup; ++s) one_step();
  t_forward = t_backward = t_optim = 0;
  // After every kBlock steps, a block of [256,784]x[784,512] products runs, so that the
  // step's rate and the product's rate are measured under the same conditions: this
  // virtual machine's rate moves by up to 30% over seconds. The fraction of the product's
  // rate is the median over blocks; throughput counts the steps' time only.
  constexpr int kBlock = 4, kProducts = 6;
  auto mm_a = torch::randn({256, 784}), mm_b = torch::randn({784, 512}), mm_c = torch::empty({256, 512});
  std::vector<double> step_times, block_matmul, block_fraction;
  double secs = 0, block_seconds = 0;
  auto t0 = clock_type::now();
  int64_t steps = 0;
  while (steps < min_steps || seconds_since(t0) < min_seconds) {
    auto ts = clock_type::now();
    one_step();
    const double dt = seconds_since(ts);
    step_times.push_back(dt);
    secs += dt;
    block_seconds += dt;
    if (++steps % kBlock == 0 && !skip_matmul) {
      torch::mm_out(mm_c, mm_a, mm_b);  // untimed: restarts OpenBLAS's workers if a parallel region stopped them
      auto tm = clock_type::now();
      for (int r = 0; r < kProducts; ++r) torch::mm_out(mm_c, mm_a, mm_b);
      const double mm = 2.0 * 256 * 784 * 512 * kProducts / seconds_since(tm) / 1e9;
      block_matmul.push_back(mm);
      block_fraction.push_back(flops * kBlock / block_seconds / 1e9 / mm);
      block_seconds = 0;
    }
  }
  const double images_per_s = steps * batch / secs;

  const double step_seconds = secs / steps;
  const double step_gflops = flops / step_seconds / 1e9;
  std::sort(step_times.begin(), step_times.end());

  std::printf(
      "threads=%d prior=%s objective=%s batch=%lld K=%lld architecture=%s hidden=%s latent=%lld persistent=%d data=%s\n",
      threads, prior.c_str(), objective.c_str(), (long long)batch, (long long)samples, architecture.c_str(),
      conv ? "-" : hidden.c_str(), (long long)latent,
      (int)option_persistent, data_source.c_str());
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0.0 : v[v.size() / 2];
  };
  if (!skip_matmul) print_kv("matmul_gflops", median(block_matmul), "%.1f");
  print_kv("train_images_per_second", images_per_s, "%.0f");
  print_kv("train_steps", steps, "%.0f");
  print_kv("step_seconds_mean", step_seconds, "%.6f");
  print_kv("step_seconds_min", step_times.front(), "%.6f");
  print_kv("step_seconds_median", step_times[step_times.size() / 2], "%.6f");
  print_kv("step_gflop", flops / 1e9, "%.3f");
  print_kv("train_step_gflops", step_gflops, "%.1f");
  if (!skip_matmul) {
    print_kv("train_step_fraction_of_matmul", median(block_fraction), "%.3f");
    print_kv("interleaved_blocks", static_cast<double>(block_fraction.size()), "%.0f");
  }
  if (profile) {
    print_kv("phase_forward_seconds", t_forward / steps, "%.6f");
    print_kv("phase_backward_seconds", t_backward / steps, "%.6f");
    print_kv("phase_optimizer_seconds", t_optim / steps, "%.6f");
    if (mcmc) {
      // The objective's Langevin run alone, on the trained-so-far prior.
      auto& ebm = static_cast<EnergyPrior&>(*model.prior);
      auto options = LangevinOptions().steps(mcmc_steps).step_size(
          option_mcmc_step_size > 0 ? option_mcmc_step_size
                                                 : (objective == "short-run-mcmc" ? 0.4 : 0.1));
      const int reps = 3;
      auto tl = clock_type::now();
      for (int r = 0; r < reps; ++r) ebm.run_langevin(torch::randn({negatives, latent}, gen), options, gen);
      const double per_call = seconds_since(tl) / reps;
      print_kv("phase_langevin_seconds", per_call, "%.6f");
      print_kv("langevin_steps_per_second", mcmc_steps / per_call, "%.0f");
    }
  }
  print_kv("peak_rss_mb", peak_rss_mb(), "%.1f");
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_train: %s\n", e.what());
  return 2;
}
