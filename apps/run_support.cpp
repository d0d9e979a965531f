#include <torch/torch.h>

#include "apps/run_support.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>
#include <filesystem>
#include <memory>
#include <optional>
#include <sstream>

#include "apps/flags.h"
#include "common/registry.h"
#include "common/text.h"
#include "data/archive.h"
#include "data/error.h"
#include "data/files.h"
#include "data/json.h"
#include "data/run_config.h"
#include "prior/mixture.h"
#include "prior/flow.h"
#include "prior/energy.h"
#include "data/seed.h"
#include "estimators/log_z.h"
#include "estimators/flow_log_z.h"
#include "vae/trainer.h"

namespace vae_ebm::cli {

torch::Device parse_device(const std::string& text) {
  try {
    torch::Device device(text);
    if (device.is_cuda() && !torch::cuda::is_available())
      throw UsageError("--device " + text + ": this LibTorch build has no CUDA device available");
    return device;
  } catch (const c10::Error&) {
    throw UsageError("--device: unknown device '" + text + "' (expected cpu, cuda or cuda:N)");
  }
}

Dataset load_data(const std::string& name, const CommonConfig& common, uint64_t binarisation_seed) {
  DatasetOptions options;
  options.data_dir = common.data_dir;
  options.binarisation_seed = binarisation_seed;
  auto data = load_dataset(name, options);
  std::fprintf(stderr, "data: %s: %s\n", name.c_str(), data.reading.c_str());
  return data;
}

namespace {
constexpr const char* kDataComment = "data: ";  // config.ini's comment line of the data's fingerprint

// {3, 32, 32} as "3x32x32".
std::string shape_text(const std::vector<int64_t>& shape) {
  std::string out;
  for (auto s : shape) out += (out.empty() ? "" : "x") + std::to_string(s);
  return out;
}
}  // namespace

std::string data_line(const Dataset& data) {
  std::string files;
  for (const auto& f : data.files)
    files += (files.empty() ? "" : ", ") + std::filesystem::path(f.path).filename().string() + " " + f.sha256;
  return std::string(kDataComment) + data.name + " sha256 " + data.fingerprint() + " (" + files + ")";
}

void warn_if_data_changed(const std::string& config_path, const Dataset& data) {
  const auto line = RunConfig(read_file(config_path)).comment(kDataComment);
  if (line.empty()) return;
  const auto recorded = line.substr(0, line.find(" ("));
  const auto now = data_line(data);
  if (recorded != now.substr(0, now.find(" (")))
    std::fprintf(stderr,
                 "warning: the data differ from those the run was made with: %s records \"%s\", the data read now are "
                 "\"%s\"\n",
                 config_path.c_str(), line.c_str(), now.c_str());
}

Json data_record(const Dataset& data) {
  Json files = Json::object();
  for (const auto& f : data.files) files.set(std::filesystem::path(f.path).filename().string(), f.sha256);
  return Json::object().set("name", data.name).set("fingerprint", data.fingerprint()).set("files", files);
}

namespace {
// Weights and biases of a chain of linear layers of these widths.
double linear_parameters(const std::vector<int64_t>& widths) {
  double n = 0;
  for (size_t i = 1; i < widths.size(); ++i) n += (static_cast<double>(widths[i - 1]) + 1) * static_cast<double>(widths[i]);
  return n;
}

// The parameters of the networks the flags size: the encoder and decoder exactly
// (vae/networks.h), the energy MLP or the mixture.
double flag_sized_parameters(const TrainConfig& c, const std::vector<int64_t>& image_shape) {
  const int64_t d = c.latent;
  double n = as_usage([&] {
    int64_t values = 1;
    for (const auto s : image_shape) values *= s;
    const auto m = make_likelihood(c.likelihood, values)->outputs_per_value();  // no tensors of the networks' size
    return network_parameters(c.network_options(image_shape).outputs_per_value(m));
  });
  as_usage([&] { check_prior(c.prior_options()); });
  if (c.prior == "ebm") {
    std::vector<int64_t> energy = {d};
    for (const auto h : energy_option_set().read(c.prior_values).hidden) energy.push_back(h);
    energy.push_back(1);
    n += linear_parameters(energy);
  } else if (c.prior == "mog") {
    n += 2.0 * static_cast<double>(mixture_option_set().read(c.prior_values).components) * static_cast<double>(d);
  } else if (c.prior == "flow") {  // each coupling layer's conditioner: d -> hidden -> hidden -> 2d
    const auto flow = flow_prior_option_set().read(c.prior_values);
    n += static_cast<double>(flow.layers()) * linear_parameters({d, flow.hidden(), flow.hidden(), 2 * d});
  }
  return n;
}
}  // namespace

std::shared_ptr<VaeModel> build_model(const TrainConfig& c, const Dataset& data) {
  // Checked before the networks exist: too large a --latent or --hidden would otherwise be
  // allocated (lazily, so it seems to work) and then run until the machine kills it.
  const double parameters = flag_sized_parameters(c, data.image_shape);
  const double bytes = parameters * 4 * 4;  // float32 weights, gradients, Adam's two moments
  const auto available = available_memory_bytes();
  if (available > 0 && bytes > static_cast<double>(available)) {
    char count[32];
    std::snprintf(count, sizeof count, "%.3g", parameters);
    const auto sizes = c.architecture == "mlp" ? " with --hidden " + c.hidden : " with --conv-width " + std::to_string(c.conv_width);
    throw UsageError("--latent " + std::to_string(c.latent) + sizes +
                     (c.prior_flags_text().empty() ? std::string() : " and" + c.prior_flags_text()) +
                     " makes networks of " + count + " parameters, " + gigabytes(bytes) +
                     " with their gradients and Adam's moments: more than the " + gigabytes(static_cast<double>(available)) +
                     " of memory available");
  }
  auto model = as_usage([&] {
    return std::make_shared<VaeModel>(c.network_options(data.image_shape), c.prior_options(), c.likelihood);
  });
  if (const auto warning = model->likelihood->check_data(data.name, data.train.images, data.binary); !warning.empty())
    std::fprintf(stderr, "warning: %s\n", warning.c_str());
  return model;
}

// Starts `model`'s encoder and decoder, and with `with_prior` its prior, from a checkpoint's;

std::string checkpoint_path(const RunDir& run, const std::string& which) {
  if (which == "best" || which == "latest") {
    auto best = run.best_checkpoint_path();
    if (which == "best" && file_exists(best)) return best;
    auto all = run.checkpoints();
    if (all.empty()) throw DataError("run directory " + run.path() + " has no checkpoint yet");
    return all.back();
  }
  if (!file_exists(which)) throw DataError("checkpoint " + which + " does not exist");
  return which;
}

LoadedRun load_run(const std::string& run_dir, const std::string& checkpoint, const CommonConfig& common,
                   const std::string& dataset_override) {
  auto run = RunDir::open(run_dir);
  LoadedRun out;
  parse_train({"--config", run.config_path()}, out.config);
  out.config.common = common;
  out.device = parse_device(common.device);
  use_machine(common);
  auto run_data = load_data(out.config.dataset, common, out.config.binarisation_seed);
  warn_if_data_changed(run.config_path(), run_data);
  out.model = build_model(out.config, run_data);
  if (!dataset_override.empty() && dataset_override != out.config.dataset) {
    out.data = load_data(dataset_override, common, out.config.binarisation_seed);
    if (out.data.dim() != run_data.dim())
      throw DataError("data set " + dataset_override + " has " + std::to_string(out.data.dim()) +
                      " values per example; the run's model expects " + std::to_string(run_data.dim()));
    // The conv networks read the values as images of the run's shape; the MLP sees P values.
    if (out.config.architecture == "conv" && out.data.image_shape != run_data.image_shape)
      throw DataError("data set " + dataset_override + " has images of shape " + shape_text(out.data.image_shape) +
                      "; the run's conv networks expect " + shape_text(run_data.image_shape));
  } else {
    out.data = std::move(run_data);
  }
  out.checkpoint = checkpoint_path(run, checkpoint);
  if (!load_model_from_checkpoint(out.checkpoint, *out.model, out.device))
    std::fprintf(stderr, "warning: checkpoint %s has no integrity seal (written by vae-ebm 0.1 before checkpoints were "
                 "sealed): a damaged byte in it cannot be detected\n", out.checkpoint.c_str());
  out.model->to(out.device);
  out.model->eval();
  return out;
}

std::shared_ptr<Distributed> connect_processes(double timeout, torch::Device device) {
  if (!(timeout > 0 && timeout <= 7 * 24 * 3600.0))
    throw UsageError("--dist-timeout must be > 0 and at most a week (seconds), got " + shortest(timeout));
  Distributed::Options options;
  options.timeout = std::chrono::milliseconds(static_cast<int64_t>(timeout * 1000.0));
  options.device = device;
  return Distributed::connect(Distributed::launch_from_environment(), options);
}

FlowSource sampling_flow(const LoadedRun& run, EnergyPrior& prior, const FlowFitOptions& fit, double base_fraction,
                         uint64_t seed, std::shared_ptr<std::string> how) {
  auto made = std::make_shared<Flow>(nullptr);
  const auto checkpoint = run.checkpoint;
  const auto device = run.device;
  return [made, checkpoint, device, &prior, fit, base_fraction, seed, how]() {
    if (*made) return *made;
    *made = load_objective_flow_from_checkpoint(checkpoint, device);
    if (*made) {
      if (how) *how = "the flow the training objective trained alongside (from the checkpoint)";
    } else {
      std::fprintf(stderr, "fitting a flow to the energy for the flow samplers (%lld + %lld steps)...\n",
                   (long long)fit.steps(), (long long)fit.refine_steps());
      auto gen = make_generator(mix_seed(seed, 0x666c6f77ULL), device);
      *made = fit_log_z_flow(prior, fit, base_fraction, gen);
      if (how)
        *how = "a flow fitted to the energy as for log Z (" + std::to_string(fit.steps()) + " reverse-KL steps, " +
               std::to_string(fit.refine_steps()) + " refinement steps)";
    }
    return *made;
  };
}

PriorDraws draw_prior(Prior& prior, const std::string& sampler, const SamplerOptions& options, const FlowSource& flow,
                      int64_t n, at::Generator& generator) {
  torch::NoGradGuard no_grad;
  PriorDraws out;
  const auto t0 = std::chrono::steady_clock::now();
  auto* ebm = dynamic_cast<EnergyPrior*>(&prior);
  if (!ebm) {
    out.z = prior.sample(n, generator);
    out.sampler = "exact";
    out.description = "the " + prior.kind() + " prior's exact sampler";
  } else {
    auto draws = draw_samples(sampler, *ebm, flow, n, options, generator);
    out.z = draws.z;
    out.sampler = sampler;
    out.description = describe_sampler(sampler, options);
    out.acceptance = draws.acceptance;
    out.resampling_ess = draws.resampling_ess;
  }
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return out;
}

Json PriorDraws::record() const {
  auto r = Json::object();
  r.set("sampler", sampler).set("description", description);
  if (!std::isnan(acceptance)) r.set("acceptance", acceptance);
  if (!std::isnan(resampling_ess)) r.set("resampling_ess_fraction", resampling_ess);
  return r;
}

std::string PriorDraws::diagnostic_text() const {
  char buf[96] = "";
  if (!std::isnan(acceptance)) std::snprintf(buf, sizeof buf, " (acceptance %.3f)", acceptance);
  else if (!std::isnan(resampling_ess))
    std::snprintf(buf, sizeof buf, " (resampling ESS %.1f%% of the candidates)", 100 * resampling_ess);
  return buf;
}

LogZMethod log_z_method_from_flag(const std::string& name, const LogZSettings& settings,
                                  const std::string& ais_flag_prefix) {
  return as_usage([&] { return vae_ebm::log_z_method(name, settings); }, ais_flag_prefix);
}

std::string fmt(double v, int precision) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", precision, v);
  return buf;
}

void print_row(const std::string& name, const Estimate& e) {
  std::printf("  %-26s %12s  +- %-8s  n=%lld%s\n", name.c_str(), fmt(e.value).c_str(), fmt(e.std_error).c_str(),
              (long long)e.count, std::isnan(e.ess) ? "" : ("  ESS=" + fmt(e.ess, 1)).c_str());
}

}  // namespace vae_ebm::cli
