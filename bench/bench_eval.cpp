// Wall time of an IWAE_K evaluation (estimators/bounds.h evaluate_bounds, K = 1000 by
// default) of N test images with the default MLP VAE (784-512-512, latent 16), untrained
// or briefly trained (--train-steps, Gaussian ELBO, batch 256), and where one chunk's
// time goes (encoder, sampling, decoder, Bernoulli log-likelihood, the rest).
//   bench_eval [--images 10000] [--samples 1000] [--prior gaussian|ebm] [--train-steps 0]
//              [--data random|binary-mnist] [--data-dir DIR] [--max-elements 4194304]
//              [--threads 1] [--seed 0] [--log-z-samples 10000] [--skip-full]
// --skip-full measures only the chunk breakdown (and extrapolates the full time).
// The breakdown also times the library's Bernoulli log-likelihood, sum x*l - sum softplus(l),
// against the binary_cross_entropy_with_logits form it replaced and an einsum form of the
// x.l term, and checks that they agree.
#include <torch/torch.h>

#include <cstdio>

#include "apps/cli.h"
#include "bench/bench_common.h"
#include "data/seed.h"
#include "estimators/bounds.h"
#include "prior/energy.h"
#include "prior/gaussian.h"
#include "vae/model.h"

using namespace vae_ebm;
using namespace vae_ebm::bench;

namespace {

template <class F>
double mean_seconds(F&& body, int reps) {
  body();
  auto t0 = clock_type::now();
  for (int i = 0; i < reps; ++i) body();
  return seconds_since(t0) / reps;
}

}  // namespace

int main(int argc, char** argv) try {
  Flags flags(argc, argv, {"skip-full"});
  const int64_t images = flags.integer("images", 10000), k = flags.integer("samples", 1000);
  const std::string prior_kind = flags.str("prior", "gaussian");
  const int64_t train_steps = flags.integer("train-steps", 0);
  const std::string source = flags.str("data", "random");
  const std::string data_dir = flags.str("data-dir", "");
  const int64_t max_elements = flags.integer("max-elements", int64_t{1} << 22);
  const int threads = static_cast<int>(flags.integer("threads", 1));
  const uint64_t seed = static_cast<uint64_t>(flags.integer("seed", 0));
  const int64_t log_z_samples = flags.integer("log-z-samples", 10000);
  const bool skip_full = flags.on("skip-full");
  const std::string blas_request = flags.str("blas-kernel", "auto");
  flags.done();
  use_machine(threads, blas_request);
  const double mm_gflops = matmul_gflops();

  torch::manual_seed(seed);
  VaeModel model(NetworkOptions(), PriorOptions(prior_kind, 16));
  auto gen = make_generator(seed);
  auto test = bench_data(source, images, data_dir, "test", seed);
  if (train_steps > 0) {
    auto train = bench_data(source, 256 * 16, data_dir, "train", seed);
    auto objective = make_objective("exact");
    GaussianPrior gaussian(16);
    torch::optim::Adam opt(model.vae_parameters(), torch::optim::AdamOptions(1e-3));
    for (int64_t s = 0; s < train_steps; ++s) {
      auto x = train.narrow(0, (s % 16) * 256, 256);
      // The Gaussian ELBO trains encoder and decoder; an energy prior keeps its initial f.
      auto q = model.encoder->forward(x);
      auto z = q.rsample(1, gen);
      auto elbo = bernoulli_log_likelihood(model.decoder->params(z), x).mean(0) + q.entropy() +
                  gaussian.expected_log_prob(q, z);
      opt.zero_grad();
      (-elbo.mean()).backward();
      opt.step();
    }
  }
  if (auto* ebm = dynamic_cast<EnergyPrior*>(model.prior.get())) {
    torch::NoGradGuard ng;
    auto zs = torch::randn({log_z_samples, 16}, gen);
    ebm->set_log_z_estimate((torch::logsumexp(-ebm->energy(zs), 0) - std::log((double)log_z_samples)).item<double>());
  }
  auto options = BoundOptions().samples(k).max_elements(max_elements);
  const int64_t chunk = std::max<int64_t>(1, max_elements / (k * 784));

  // --- One chunk, phase by phase (the steps of evaluate_bounds, Gaussian or energy prior).
  torch::Tensor q_mu, z, logits;
  DiagonalGaussian q;
  auto x = test.narrow(0, 0, std::min(chunk, images));
  model.eval();
  torch::NoGradGuard no_grad;
  const int reps = 5;
  const double t_enc = mean_seconds([&] { q = model.encoder->forward(x); }, reps);
  const double t_sample = mean_seconds([&] { z = q.rsample(k, gen); }, reps);
  const double t_dec = mean_seconds([&] { logits = model.decoder->params(z); }, reps);
  torch::Tensor ll, ll_bce;
  const double t_ll = mean_seconds([&] { ll = bernoulli_log_likelihood(logits, x); }, reps);
  const double t_ll_bce = mean_seconds(
      [&] {
        ll_bce = -torch::binary_cross_entropy_with_logits(logits, x.expand_as(logits), {}, {}, at::Reduction::None)
                      .sum(-1);
      },
      reps);
  torch::Tensor ll_einsum;
  const double t_ll_einsum = mean_seconds(
      [&] { ll_einsum = torch::einsum("kbp,bp->kb", {logits, x}) - at::softplus(logits).sum(-1); }, reps);
  const double ll_diff = std::max((ll - ll_bce).abs().max().item<double>(),
                                  (ll - ll_einsum).abs().max().item<double>());
  const double t_rest = mean_seconds(
      [&] {
        auto k_term = -(q.entropy() + model.prior->expected_log_prob(q, z));
        auto log_w = (ll + model.prior->log_prob_bound(z) - q.log_prob(z)).to(torch::kDouble);
        auto iwae = torch::logsumexp(log_w, 0);
      },
      reps);
  const double t_chunk = t_enc + t_sample + t_dec + t_ll + t_rest;
  const double n_chunks = std::ceil(static_cast<double>(images) / chunk);
  // Decoder products per chunk: K * chunk latents through 16-512-512-784.
  const double dec_flop = mlp_flops({16, 512, 512, 784}, static_cast<double>(k * x.size(0)), true, false, false);

  std::printf("images=%lld samples=%lld prior=%s train_steps=%lld data=%s chunk_images=%lld threads=%d\n",
              (long long)images, (long long)k, prior_kind.c_str(), (long long)train_steps, source.c_str(),
              (long long)chunk, threads);
  print_kv("matmul_gflops", mm_gflops, "%.1f");
  print_kv("chunk_encoder_seconds", t_enc, "%.6f");
  print_kv("chunk_sample_seconds", t_sample, "%.6f");
  print_kv("chunk_decoder_seconds", t_dec, "%.6f");
  print_kv("chunk_decoder_gflops", dec_flop / t_dec / 1e9, "%.1f");
  print_kv("chunk_loglik_seconds", t_ll, "%.6f");
  print_kv("chunk_loglik_bce_seconds", t_ll_bce, "%.6f");
  print_kv("chunk_loglik_einsum_seconds", t_ll_einsum, "%.6f");
  print_kv("check_loglik_forms_max_abs_diff", ll_diff, "%.3g");
  print_kv("chunk_rest_seconds", t_rest, "%.6f");
  print_kv("estimated_eval_seconds", t_chunk * n_chunks, "%.1f");
  std::fflush(stdout);
  if (!skip_full) {
    auto t0 = clock_type::now();
    auto report = evaluate_bounds(*model.encoder, *model.decoder, *model.likelihood, *model.prior, test, options, gen);
    const double secs = seconds_since(t0);
    print_kv("eval_seconds", secs, "%.2f");
    print_kv("eval_images_per_second", images / secs, "%.1f");
    print_kv("eval_gflops_decoder_only", dec_flop * n_chunks / secs / 1e9, "%.1f");
    std::printf("%s %.4f (se %.4f)\n", report.iwae.estimator.c_str(), report.iwae.value, report.iwae.std_error);
  }
  print_kv("peak_rss_mb", peak_rss_mb(), "%.1f");
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_eval: %s\n", e.what());
  return 2;
}
