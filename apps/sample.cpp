// vae-ebm sample: PNG grids of prior samples (means and binary draws) and reconstructions.
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "apps/command.h"
#include "apps/run_support.h"
#include "data/png.h"
#include "data/seed.h"

namespace vae_ebm::cli {

int run_sample(const SampleConfig& c) {
  auto run = load_run(c.run_dir, c.checkpoint, c.common);
  auto out = c.out.empty() ? c.run_dir + "/samples" : c.out;
  std::filesystem::create_directories(out);
  torch::NoGradGuard no_grad;
  auto gen = make_generator(c.seed, run.device);
  auto& model = *run.model;
  if (auto* ebm = dynamic_cast<EnergyPrior*>(model.prior.get())) {
    ebm->sampling_options() = c.langevin;
    std::printf("energy prior: Langevin from N(0, I), %lld steps, step size %g, noise %g%s\n",
                (long long)c.langevin.steps(), c.langevin.step_size(), c.langevin.noise(),
                c.langevin.metropolis() ? ", Metropolis-corrected" : "");
  }
  const auto& shape = run.data.image_shape;
  auto as_images = [&](const torch::Tensor& flat) {
    std::vector<int64_t> s{flat.size(0)};
    s.insert(s.end(), shape.begin(), shape.end());
    if (s.size() == 2) s = {flat.size(0), 1, 1, flat.size(1)};  // flat user data: one row per example
    return flat.reshape(s).to(torch::kCPU);
  };
  const int64_t nrow = std::max<int64_t>(1, static_cast<int64_t>(std::sqrt(static_cast<double>(c.count))));
  auto z = model.prior->sample(c.count, gen);
  auto params = model.decoder->params(z);
  write_png_grid(out + "/prior_means.png", as_images(model.likelihood->mean(params)), nrow);
  write_png_grid(out + "/prior_draws.png", as_images(model.likelihood->sample(params, gen)), nrow);
  // Reconstructions: each test image above its reconstruction (decoder mean at the posterior mean).
  const int64_t half = std::max<int64_t>(1, std::min<int64_t>(c.count / 2, run.data.test.size()));
  auto x = run.data.test.images.narrow(0, 0, half).to(run.device);
  auto recon = model.decode_mean(model.encoder->forward(x).mean());
  std::vector<torch::Tensor> rows;
  for (int64_t start = 0; start < half; start += nrow) {
    auto n = std::min(nrow, half - start);
    rows.push_back(x.narrow(0, start, n));
    rows.push_back(recon.narrow(0, start, n));
  }
  write_png_grid(out + "/reconstructions.png", as_images(torch::cat(rows)), nrow);
  std::printf("wrote %s/prior_means.png, prior_draws.png, reconstructions.png\n", out.c_str());
  return 0;
}

Command sample_command() {
  return command_of("sample", "PNG grids of prior samples and reconstructions", parse_sample, run_sample);
}

}  // namespace vae_ebm::cli
