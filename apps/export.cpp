// vae-ebm export: a run's parameters in HDF5, with attributes that describe the networks.
#include <torch/torch.h>

#include <algorithm>
#include <cstdio>
#include <sstream>

#include "apps/command.h"
#include "apps/flags.h"
#include "apps/run_support.h"
#include "data/archive.h"
#include "data/error.h"
#include "data/files.h"
#include "data/hdf5_io.h"
#include "prior/flow.h"
#include "prior/mixture.h"
#include "prior/energy.h"

namespace vae_ebm::cli {

namespace {

// How the decoder's M P outputs (parameter j of value p at j P + p) make p(x|z) (docs/MATH.md section 9).
std::string likelihood_layout(const LikelihoodOptions& o) {
  if (o.kind() == "gaussian")
    return std::string("M = 1: the mean mu of y = ") + (o.range() == "-1,1" ? "2x - 1" : "x") + "; sigma " +
           (o.variance() == "learned" ? "= likelihood_min_sigma + softplus(likelihood/sigma_raw[p])"
                                      : "= likelihood_sigma") +
           "; log p = sum_p -0.5 ((y - mu) / sigma)^2 - log sigma - 0.5 log(2 pi)";
  if (o.kind() == "logistic")
    return o.mixture() == 1
               ? "M = 2: [mu | log s] in the units of y = 2x - 1; P(x) = sigmoid((y + 1/255 - mu) / s) - sigmoid((y - "
                 "1/255 - mu) / s), the CDF's tails at x = 0 and x = 1; log s clamped at -7"
               : "M = 3K: [mixture logits (K) | mu (K) | log s (K)], each component as for K = 1";
  return "M = 1: Bernoulli logits";
}

}  // namespace

int run_export(const ExportConfig& c) {
  auto run = load_run(c.run_dir, c.checkpoint, c.common);
  const auto& cfg = run.config;
  H5Writer h5(c.out);
  for (const auto& p : run.model->named_parameters()) {
    auto name = p.key();
    std::replace(name.begin(), name.end(), '.', '/');
    h5.write(name, p.value().detach().to(torch::kCPU));
  }
  // The flow an objective trained alongside, under objective_flow/ (the same layout as a flow prior's).
  const auto flow = load_objective_flow_from_checkpoint(run.checkpoint, torch::kCPU);
  if (flow) {
    for (const auto& p : flow->named_parameters()) {
      auto name = "objective_flow/" + p.key();
      std::replace(name.begin(), name.end(), '.', '/');
      h5.write(name, p.value().detach());
    }
    h5.attribute("/", "objective_flow", "the flow the " + cfg.objective_name() + " objective trained alongside (docs/MATH.md section 8), " +
                                            std::to_string(FlowOptions().layers()) + " coupling layers of width " +
                                            std::to_string(FlowOptions().hidden()) + "; layout as flow_layout");
  }
  std::string shape;
  for (auto s : run.data.image_shape) shape += (shape.empty() ? "" : ",") + std::to_string(s);
  h5.attribute("/", "format", "vae-ebm model export 1");
  h5.attribute("/", "checkpoint", run.checkpoint);
  h5.attribute("/", "architecture", cfg.architecture);
  h5.attribute("/", "hidden", cfg.hidden);
  h5.attribute("/", "activation", cfg.activation);
  h5.attribute("/", "latent", cfg.latent);
  h5.attribute("/", "image_shape", shape);
  const auto networks = cfg.network_options(run.data.image_shape);
  const bool conv_family = cfg.architecture == "conv" && !networks.conv_reference();
  if (conv_family) h5.attribute("/", "conv_width", cfg.conv_width);
  h5.attribute("/", "likelihood", cfg.likelihood.kind());
  h5.attribute("/", "likelihood_description", run.model->likelihood->describe());
  h5.attribute("/", "outputs_per_value", run.model->likelihood->outputs_per_value());
  h5.attribute("/", "likelihood_layout", likelihood_layout(cfg.likelihood));
  if (cfg.likelihood.kind() == "gaussian") {
    h5.attribute("/", "likelihood_sigma", cfg.likelihood.sigma());
    h5.attribute("/", "likelihood_min_sigma", cfg.likelihood.min_sigma());
  }
  h5.attribute("/", "prior", cfg.prior);
  h5.attribute("/", "dataset", cfg.dataset);
  if (cfg.prior == "mog") h5.attribute("/", "mog_components", mixture_option_set().read(cfg.prior_values).components);
  if (cfg.prior == "flow") {
    const auto o = flow_prior_option_set().read(cfg.prior_values);
    h5.attribute("/", "flow_layers", o.layers());
    h5.attribute("/", "flow_hidden", o.hidden());
  }
  if (cfg.prior == "flow" || flow) {
    h5.attribute("/", "flow_max_log_scale", FlowOptions().max_log_scale());
    h5.attribute("/", "flow_layout",
                 "affine coupling (RealNVP) on N(0, I), layer k: mask m = 1 on the even coordinates (k even) or odd ones "
                 "(k odd); nets/k is Linear-tanh-Linear-tanh-Linear giving [s_raw | t] (2D outputs); s = max_log_scale "
                 "tanh(s_raw); y = m x + (1 - m) (x exp(s) + t); sampling applies layers 0..K-1 to a N(0, I) draw");
  }
  if (cfg.prior == "ebm") {
    const auto o = energy_option_set().read(cfg.prior_values);
    h5.attribute("/", "energy_hidden", option_text(o.hidden));
    h5.attribute("/", "energy_activation", "leaky-relu");
    h5.attribute("/", "energy_slope", o.slope);
    h5.attribute("/", "energy_last_layer_bias", int64_t{0});
    h5.attribute("/", "energy_bound", o.bound);
    h5.attribute("/", "energy_layout",
                 "g(z) = prior/f (Linear layers at even indices, LeakyReLU(energy_slope) between); the energy is "
                 "f = g, or f = energy_bound * tanh(g / energy_bound) when energy_bound > 0; "
                 "p(z) = N(z; 0, I) exp(-f(z)) / Z");
  }
  std::ostringstream layout;
  layout << "encoder: x -> net -> [mu | logvar] (first " << cfg.latent << " outputs are mu); "
         << "decoder: z -> net -> the likelihood's parameters (likelihood_layout); net/N are the layers of a Sequential: "
         << (cfg.architecture == "mlp" ? "Linear layers at even indices with the activation between"
             : conv_family
                 ? "the conv family (README, Models; vae/networks.cpp): decoder ConvTranspose2d layers at even "
                   "indices with LeakyReLU(0.2) between, layer 0 on z as a 1x1 map, the output cropped centrally "
                   "to image_shape; encoder: the image zero-padded centrally to the decoder's canvas, Conv2d "
                   "layers at even indices with LeakyReLU(0.2) after each, then Flatten and Linear"
                 : "the SNL conv networks (README, Models)");
  h5.attribute("/", "layout", layout.str());
  h5.close();
  std::printf("wrote %s (%zu parameter tensors)\n", c.out.c_str(), run.model->named_parameters().size());
  return 0;
}

// The command line: flags, their defaults and their checks.
bool parse_export(const std::vector<std::string>& args, ExportConfig& c) {
  po::options_description d("export flags");
  add_run_and_checkpoint(d, c.run_dir, c.checkpoint);
  d.add_options()("out", po::value(&c.out), "HDF5 file to write (required)");
  if (!parse_run_command(args, d, c.common, "export",
                         "usage: vae-ebm export RUN_DIR --out model.h5\nWrites every parameter to HDF5 with attributes that describe the networks."))
    return false;
  if (c.out.empty()) throw UsageError("export needs --out FILE.h5");
  return true;
}

Command export_command() {
  return command_of("export", "write a run's parameters to HDF5 for other frameworks", parse_export, run_export);
}

}  // namespace vae_ebm::cli
