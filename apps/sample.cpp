// vae-ebm sample: PNG grids of prior samples (means and binary draws) and reconstructions.
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "apps/command.h"
#include "apps/flags.h"
#include "apps/run_support.h"
#include "data/png.h"
#include "common/text.h"
#include "data/seed.h"

namespace vae_ebm::cli {

int run_sample(const SampleConfig& c) {
  auto run = load_run(c.run_dir, c.checkpoint, c.common);
  auto out = c.out.empty() ? c.run_dir + "/samples" : c.out;
  std::filesystem::create_directories(out);
  torch::NoGradGuard no_grad;
  auto& model = *run.model;
  const auto& shape = run.data.image_shape;
  auto as_images = [&](const torch::Tensor& flat) {
    std::vector<int64_t> s{flat.size(0)};
    s.insert(s.end(), shape.begin(), shape.end());
    if (s.size() == 2) s = {flat.size(0), 1, 1, flat.size(1)};  // flat user data: one row per example
    return flat.reshape(s).to(torch::kCPU);
  };
  const int64_t nrow = std::max<int64_t>(1, static_cast<int64_t>(std::sqrt(static_cast<double>(c.count))));
  // One pair of grids a sampler: the default's as prior_means.png and prior_draws.png, the others'
  // (--sampler all) as prior_means-NAME.png and prior_draws-NAME.png. Exact priors: one pair.
  auto* ebm = dynamic_cast<EnergyPrior*>(model.prior.get());
  std::vector<std::string> samplers = {c.sampler};
  if (c.sampler == "all") samplers = ebm ? sampler_names() : std::vector<std::string>{default_sampler()};
  auto flow_how = std::make_shared<std::string>();
  FlowSource flow;
  if (ebm) {
    flow = sampling_flow(run, *ebm, FlowFitOptions(), 0.1, c.seed, flow_how);
    // Made (read or fitted) before any sampler's clock starts.
    for (const auto& name : samplers)
      if (sampler_registry().at(name).needs_flow) flow();
  }
  std::vector<std::string> written;
  for (const auto& sampler : samplers) {
    auto gen = make_generator(c.seed, run.device);
    auto draws = draw_prior(*model.prior, sampler, c.sampler_options, flow, c.count, gen);
    const std::string suffix = ebm && (c.sampler == "all" ? sampler != default_sampler() : false) ? "-" + sampler : "";
    auto params = model.decoder->params(draws.z);
    write_png_grid(out + "/prior_means" + suffix + ".png", as_images(model.likelihood->mean(params)), nrow);
    write_png_grid(out + "/prior_draws" + suffix + ".png", as_images(model.likelihood->sample(params, gen)), nrow);
    written.push_back("prior_means" + suffix + ".png");
    written.push_back("prior_draws" + suffix + ".png");
    if (ebm)
      std::printf("energy prior, %s: %.2f s%s\n", draws.description.c_str(), draws.seconds,
                  draws.diagnostic_text().c_str());
  }
  if (ebm && !flow_how->empty()) std::printf("flow samplers: %s\n", flow_how->c_str());
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
  written.push_back("reconstructions.png");
  std::printf("wrote in %s: %s\n", out.c_str(), join_names(written).c_str());
  return 0;
}

// The command line: flags, their defaults and their checks.
bool parse_sample(const std::vector<std::string>& args, SampleConfig& c) {
  po::options_description d("sample flags");
  add_run_and_checkpoint(d, c.run_dir, c.checkpoint);
  d.add_options()
      ("out", po::value(&c.out)->default_value(c.out), "output directory (default RUN_DIR/samples)")
      ("count", po::value(&c.count)->default_value(c.count), "images per grid")
      ("seed", po::value(&c.seed)->default_value(c.seed), "sampling seed");
  add_sampler_flags(d, c.sampler, c.sampler_options);
  if (!parse_run_command(args, d, c.common, "sample",
                         "usage: vae-ebm sample RUN_DIR [flags]\nWrites PNG grids of prior samples and reconstructions."))
    return false;
  if (c.count < 1) throw UsageError("--count must be >= 1, got " + std::to_string(c.count));
  check_sampler(c.sampler, c.sampler_options);
  return true;
}

Command sample_command() {
  return command_of("sample", "PNG grids of prior samples and reconstructions", parse_sample, run_sample);
}

}  // namespace vae_ebm::cli
