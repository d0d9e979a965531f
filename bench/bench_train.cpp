// Training throughput of one objective, beside the rate of a large matrix product
// measured in the same process. Prints one line per figure.
//   bench_train [--prior gaussian|mog|ebm] [--objective NAME] [--threads N] [--steps N]
//               [--batch N] [--samples K] [--hidden 512,512] [--latent 16]
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <string>

#include "apps/cli.h"
#include "data/seed.h"
#include "prior/objective.h"
#include "vae/model.h"

using namespace vae_ebm;
using clock_type = std::chrono::steady_clock;

static double seconds_since(clock_type::time_point t) {
  return std::chrono::duration<double>(clock_type::now() - t).count();
}

int main(int argc, char** argv) {
  std::string prior = "gaussian", objective, hidden = "512,512";
  int threads = 1, torch_threads = 0;
  int64_t steps = 200, batch = 256, samples = 1, latent = 16;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--prior") prior = v;
    else if (k == "--objective") objective = v;
    else if (k == "--threads") threads = std::stoi(v);
    else if (k == "--torch-threads") torch_threads = std::stoi(v);
    else if (k == "--steps") steps = std::stoll(v);
    else if (k == "--batch") batch = std::stoll(v);
    else if (k == "--samples") samples = std::stoll(v);
    else if (k == "--hidden") hidden = v;
    else if (k == "--latent") latent = std::stoll(v);
    else { std::fprintf(stderr, "bench_train: unknown flag %s\n", k.c_str()); return 2; }
  }
  cli::set_threads(threads);
  if (torch_threads > 0) at::set_num_threads(torch_threads);  // experiment: OpenMP threads apart from BLAS
  if (objective.empty()) objective = default_objective(prior);

  // Matrix product rate: [256, 784] x [784, 512], as in MEASURED.md.
  auto a = torch::randn({256, 784}), b = torch::randn({784, 512});
  for (int i = 0; i < 20; ++i) torch::mm(a, b);
  auto t0 = clock_type::now();
  const int reps = 400;
  for (int i = 0; i < reps; ++i) torch::mm(a, b);
  double mm_gflops = 2.0 * 256 * 784 * 512 * reps / seconds_since(t0) / 1e9;

  auto widths = cli::parse_widths(hidden, "hidden");
  auto net = NetworkOptions().hidden(widths).latent_dim(latent);
  VaeModel model(net, PriorOptions(prior, latent));
  auto obj = make_objective(objective, ObjectiveOptions());
  torch::optim::Adam vae_opt(model.vae_parameters(), torch::optim::AdamOptions(1e-4));
  auto prior_params = model.prior_parameters();
  std::unique_ptr<torch::optim::Adam> prior_opt;
  if (!prior_params.empty()) prior_opt = std::make_unique<torch::optim::Adam>(prior_params, torch::optim::AdamOptions(2e-5));
  auto gen = make_generator(0);
  auto data = torch::bernoulli(torch::full({batch * 8, 784}, 0.13), gen);
  auto run_steps = [&](int64_t n) {
    for (int64_t s = 0; s < n; ++s) {
      auto x = data.narrow(0, (s % 8) * batch, batch);
      auto terms = elbo_terms(model, *obj, x, samples, gen);
      auto loss = -terms.total.mean();
      vae_opt.zero_grad();
      if (prior_opt) prior_opt->zero_grad();
      loss.backward();
      vae_opt.step();
      if (prior_opt) prior_opt->step();
    }
  };
  run_steps(10);
  t0 = clock_type::now();
  run_steps(steps);
  double secs = seconds_since(t0);
  double images_per_s = steps * batch / secs;
  // Multiply-adds per image of the forward pass of encoder and decoder (K decoder passes).
  double macs = 0;
  int64_t in = 784;
  for (auto w : widths) { macs += in * w; in = w; }
  macs += in * 2 * latent;
  double dec = 0;
  in = latent;
  for (auto it = widths.rbegin(); it != widths.rend(); ++it) { dec += in * *it; in = *it; }
  dec += in * 784;
  macs += dec * samples;
  double step_gflops = 3 * 2 * macs * images_per_s / 1e9;  // forward + two backward products
  std::printf("threads=%d prior=%s objective=%s batch=%lld K=%lld hidden=%s latent=%lld\n", threads, prior.c_str(),
              objective.c_str(), (long long)batch, (long long)samples, hidden.c_str(), (long long)latent);
  std::printf("matmul_gflops %.1f\n", mm_gflops);
  std::printf("train_images_per_second %.0f\n", images_per_s);
  std::printf("train_step_gflops %.1f (%.0f%% of matmul)\n", step_gflops, 100 * step_gflops / mm_gflops);
  return 0;
}
