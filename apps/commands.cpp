#include <torch/torch.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <limits>
#include <iostream>
#include <optional>

#include <boost/version.hpp>
#include <torch/version.h>

#include "apps/cli.h"
#include "common/blas_kernel.h"
#include "data/dataset.h"
#include "data/error.h"
#include "data/files.h"
#include "data/hdf5_io.h"
#include "data/json.h"
#include "data/png.h"
#include "data/run_dir.h"
#include "data/seed.h"
#include "estimators/ais.h"
#include "estimators/bounds.h"
#include "estimators/classifier.h"
#include "estimators/feature_network.h"
#include "estimators/quality.h"
#include "estimators/log_z.h"
#include "prior/energy.h"
#include "vae/model.h"
#include "vae/trainer.h"

namespace vae_ebm::cli {

namespace {

std::atomic<bool> g_stop{false};

extern "C" void on_interrupt(int) {
  g_stop.store(true);
  std::signal(SIGINT, SIG_DFL);  // a second Ctrl-C ends the process at once
}

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
  return load_dataset(name, options);
}

std::shared_ptr<VaeModel> build_model(const TrainConfig& c, const Dataset& data) {
  try {
    return std::make_shared<VaeModel>(c.network_options(data.image_shape), c.prior_options());
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
}

// Starts `model`'s encoder and decoder, and with `with_prior` its prior, from a checkpoint's;
// returns the parts taken, as "encoder, decoder[, prior]". Each must have the same networks and shapes.
std::string init_model_from(const std::string& path, VaeModel& model, bool with_prior) {
  auto bytes = read_file(path);
  std::vector<std::pair<std::string, torch::nn::Module*>> parts = {{"encoder", model.encoder.get()},
                                                                   {"decoder", model.decoder.get()}};
  if (with_prior) parts.push_back({"prior", model.prior.get()});
  std::string taken;
  try {
    std::istringstream in(bytes);
    torch::serialize::InputArchive archive, model_archive;
    archive.load_from(in);
    archive.read("model", model_archive);
    for (const auto& [name, module] : parts) {
      torch::serialize::InputArchive part;
      model_archive.read(name, part);
      try {
        load_module_checked(*module, part);
      } catch (const std::exception& e) {
        std::string what = e.what();
        throw std::runtime_error("its " + name + " does not fit this run's: " + what.substr(0, what.find('\n')));
      }
      taken += (taken.empty() ? "" : ", ") + name;
    }
  } catch (const std::exception& e) {
    std::string what = e.what();
    throw DataError("cannot start the model from " + path + ": " + what.substr(0, what.find('\n')));
  }
  return taken;
}

// An estimator of log Z and the words that say how it estimates.
struct LogZMethod {
  std::function<Estimate(EnergyPrior&, at::Generator&)> estimate;
  std::string how;
};

LogZMethod importance_sampling(int64_t samples) {
  return {[samples](EnergyPrior& prior, at::Generator& gen) { return log_z_importance(prior, samples, gen); },
          "importance sampling from the base N(0, I)"};
}

// Throws UsageError for bad options.
LogZMethod annealed_importance_sampling(const AisOptions& options) {
  try {
    options.validate();
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
  return {[options](EnergyPrior& prior, at::Generator& gen) { return ais_log_z(prior, options, gen).log_z; },
          "annealed importance sampling from the base N(0, I) (forward, MALA transitions)"};
}

// Sets the log Z estimate that an energy prior's bounds hold fixed. With a learned b
// (snelbo) one estimate serves as Zhat; otherwise b is replaced by a first estimate and Zhat
// comes from a second, independent one by the same method. Records both in `record`.
Estimate set_normaliser(EnergyPrior& prior, bool use_learned_b, const LogZMethod& method, uint64_t seed,
                        Json& record) {
  auto gen = make_generator(seed, prior.b.device());
  auto log_z = method.estimate(prior, gen);
  Json lz = log_z.to_json();
  if (use_learned_b) {
    prior.set_log_z_estimate(log_z.value);
    lz.set("how", method.how + ", held fixed over the split; b is the learned one");
  } else {
    auto gen_b = make_generator(mix_seed(seed, 0x62ULL), prior.b.device());
    auto log_z_b = method.estimate(prior, gen_b);
    prior.set_log_z_estimate(log_z.value, log_z_b.value);
    lz.set("how", method.how + ", held fixed over the split; b replaced by an independent estimate of log Z by the "
                  "same method (the objective does not learn b)");
    record.set("b_used", log_z_b.to_json());
  }
  record.set("log_z", lz);
  record.set("b", prior.b.item<double>());
  return log_z;
}

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

struct LoadedRun {
  TrainConfig config;
  Dataset data;
  std::shared_ptr<VaeModel> model;
  std::string checkpoint;
  torch::Device device = torch::kCPU;
};

LoadedRun load_run(const std::string& run_dir, const std::string& checkpoint, const CommonConfig& common,
                   const std::string& dataset_override = "") {
  auto run = RunDir::open(run_dir);
  LoadedRun out;
  parse_train({"--config", run.config_path()}, out.config);
  out.config.common = common;
  out.device = parse_device(common.device);
  use_machine(common);
  auto run_data = load_data(out.config.dataset, common, out.config.binarisation_seed);
  out.model = build_model(out.config, run_data);
  if (!dataset_override.empty() && dataset_override != out.config.dataset) {
    out.data = load_data(dataset_override, common, out.config.binarisation_seed);
    if (out.data.dim() != run_data.dim())
      throw DataError("data set " + dataset_override + " has " + std::to_string(out.data.dim()) +
                      " values per example; the run's model expects " + std::to_string(run_data.dim()));
  } else {
    out.data = std::move(run_data);
  }
  out.checkpoint = checkpoint_path(run, checkpoint);
  load_model_from_checkpoint(out.checkpoint, *out.model, out.device);
  out.model->to(out.device);
  out.model->eval();
  return out;
}

std::string fmt(double v, int precision = 3) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", precision, v);
  return buf;
}

void print_row(const std::string& name, const Estimate& e) {
  std::printf("  %-26s %12s  +- %-8s  n=%lld%s\n", name.c_str(), fmt(e.value).c_str(), fmt(e.std_error).c_str(),
              (long long)e.count, std::isnan(e.ess) ? "" : ("  ESS=" + fmt(e.ess, 1)).c_str());
}

}  // namespace

int run_train(TrainConfig c) {
  auto device = parse_device(c.common.device);
  c.train.device(device);
  use_machine(c.common);
  auto data = load_data(c.dataset, c.common, c.binarisation_seed);
  c.train.dynamic_binarisation(data.dynamic);
  torch::manual_seed(c.train.seed());  // the networks' initialisation draws from the global generator
  auto model = build_model(c, data);
  std::unique_ptr<PriorObjective> objective;
  try {
    objective = make_objective(c.objective_name(), c.objective_options());
    objective->check(*model->prior);
    c.train.validate();
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
  const bool resuming = !c.resume.empty();
  // A checkpoint that does not fit fails here, before the run directory exists.
  std::string initialised;
  if (!resuming && !c.init_from.empty()) initialised = init_model_from(c.init_from, *model, c.init_prior);
  RunDir run = resuming ? RunDir::open(c.run_dir) : RunDir::create(c.run_dir);
  if (!resuming) {
    atomic_write(run.config_path(), with_blas_comment(c.config_text));
    if (!initialised.empty()) {
      std::fprintf(stderr, "started %s from %s\n", initialised.c_str(), c.init_from.c_str());
      run.append_metrics(Json::object().set("event", "initialised").set("from", c.init_from).set("parts", initialised));
    }
  }
  auto train_images = data.train.images;
  Trainer trainer(model, std::move(objective), train_images, c.train, run);
  if (resuming) {
    // The flags a resumed run may change (how long it goes on, where it runs) are written
    // back, so that config.ini keeps saying what the run is.
    Json changed = Json::object();
    for (const auto& [flag, values] : c.resume_changes) {
      changed.set(flag, Json::object().set("was", values.first).set("now", values.second));
      std::fprintf(stderr, "resuming with --%s %s (config.ini had %s)\n", flag.c_str(), values.second.c_str(),
                   values.first.c_str());
    }
    if (!trainer.resume_latest()) std::fprintf(stderr, "no checkpoint in %s yet: starting from the beginning\n", c.run_dir.c_str());
    else std::fprintf(stderr, "resuming %s at step %lld (epoch %lld)\n", c.run_dir.c_str(),
                      (long long)trainer.state().step, (long long)trainer.state().epoch);
    if (!c.resume_changes.empty()) atomic_write(run.config_path(), with_blas_comment(c.config_text));
    run.append_metrics(Json::object().set("event", "resumed").set("step", trainer.state().step).set("changed", changed)
                           .set("blas_kernel", blas::kernel_state().summary()));
  }
  auto validation = data.validation.images.to(device);
  const auto eval_samples = c.eval_samples;
  const auto log_z_method =
      c.validation_log_z == "ais"
          ? annealed_importance_sampling(
                AisOptions().chains(c.validation_ais_chains).temperatures(c.validation_ais_temperatures))
          : importance_sampling(c.log_z_samples);
  const auto seed = c.train.seed();
  trainer.set_validator([&, validation](VaeModel& m, Json& record) {
    torch::NoGradGuard no_grad;
    const auto epoch = trainer.state().epoch;
    if (auto* ebm = dynamic_cast<EnergyPrior*>(m.prior.get()))
      set_normaliser(*ebm, trainer.objective().learns_log_normaliser(), log_z_method,
                     mix_seed(seed, 0x6c6f677aULL, epoch), record);
    auto gen = make_generator(mix_seed(seed, 0x76616cULL, epoch), device);
    auto report = evaluate_bounds(*m.encoder, *m.decoder, *m.prior, validation,
                                  BoundOptions().samples(eval_samples).importance_weighted(false), gen);
    record.set("validation", report.bound.to_json());
    record.set("reconstruction", report.reconstruction.value).set("kl", report.kl.value);
    return report.bound.value;
  });
  g_stop = false;
  auto previous = std::signal(SIGINT, on_interrupt);
  std::fprintf(stderr, "training %s prior (%s) on %s: %lld train images, run directory %s\n", c.prior.c_str(),
               c.objective_name().c_str(), c.dataset.c_str(), (long long)data.train.size(), c.run_dir.c_str());
  trainer.set_stop_flag(&g_stop);
  auto t0 = std::chrono::steady_clock::now();
  bool finished = trainer.run();
  std::signal(SIGINT, previous);
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  Json record = Json::object();
  record.set("event", finished ? "finished" : "interrupted").set("step", trainer.state().step)
      .set("seconds", seconds).set("train_seconds", trainer.state().train_seconds)
      .set("best_validation_bound", trainer.state().best_validation);
  run.append_metrics(record);
  std::fprintf(stderr, "%s after %lld steps in %.1f s; best validation bound %s\nrun directory: %s\n",
               finished ? "finished" : "interrupted", (long long)trainer.state().step, seconds,
               std::isfinite(trainer.state().best_validation) ? (fmt(trainer.state().best_validation) + " nats").c_str()
                                                              : "(none yet)",
               c.run_dir.c_str());
  if (!finished) std::fprintf(stderr, "continue with: vae-ebm train --resume %s\n", c.run_dir.c_str());
  return finished ? 0 : 130;
}

int run_evaluate(const EvaluateConfig& c) {
  auto t0 = std::chrono::steady_clock::now();
  auto run = load_run(c.run_dir, c.checkpoint, c.common, c.dataset);
  const auto& split = run.data.split(c.split);
  auto images = split.images;
  if (c.limit > 0 && c.limit < images.size(0)) images = images.narrow(0, 0, c.limit);
  images = images.to(run.device);
  Json report = Json::object();
  report.set("run", c.run_dir).set("checkpoint", run.checkpoint)
      .set("dataset", c.dataset.empty() ? run.config.dataset : c.dataset).set("split", c.split)
      .set("images", images.size(0)).set("samples_K", c.samples).set("prior", run.config.prior)
      .set("objective", run.config.objective_name()).set("blas_kernel", blas::kernel_state().kernel);
  Estimate log_z;
  auto* ebm = dynamic_cast<EnergyPrior*>(run.model->prior.get());
  if (ebm) {
    bool learned = c.normaliser == "learned" ||
                   (c.normaliser == "auto" && make_objective(run.config.objective_name(), ObjectiveOptions())->learns_log_normaliser());
    LogZMethod method = importance_sampling(c.log_z_samples);
    if (c.log_z_method == "ais")
      method = annealed_importance_sampling(
          AisOptions().temperatures(c.ais_temperatures).chains(c.ais_chains).step_size(c.ais_step_size));
    log_z = set_normaliser(*ebm, learned, method, mix_seed(c.seed, 0x6c6f677aULL), report);
  }
  const auto dataset_name = c.dataset.empty() ? run.config.dataset : c.dataset;
  const auto classifier_path =
      c.classifier.empty() ? default_classifier_path(c.common.data_dir, dataset_name) : c.classifier;
  std::optional<QualityReport> quality;
  double classifier_score_value = std::numeric_limits<double>::quiet_NaN();
  const bool torchscript = !c.feature_network.empty();
  if (c.quality_samples > 0 && (torchscript || file_exists(classifier_path))) {
    // Generated images: binary draws from the decoder at prior samples (the feature network
    // is trained on binary images), scored against the split's images.
    torch::NoGradGuard no_grad;
    auto network = torchscript ? load_torchscript_features(c.feature_network, run.data.image_shape)
                               : load_classifier_features(classifier_path);
    if (ebm) ebm->sampling_options().noise(c.langevin_noise);
    auto qgen = make_generator(mix_seed(c.seed, 0x7175616cULL), run.device);
    std::vector<torch::Tensor> fake, generated;
    for (int64_t done = 0; done < c.quality_samples; done += 1000) {
      const int64_t n = std::min<int64_t>(1000, c.quality_samples - done);
      auto z = run.model->prior->sample(n, qgen);
      auto x = torch::bernoulli(torch::sigmoid(run.model->decoder->logits(z)), qgen).to(torch::kCPU);
      fake.push_back(network.features(x));
      generated.push_back(x);
    }
    auto real = network.features(split.images.to(torch::kCPU));
    auto cpu_gen = make_generator(mix_seed(c.seed, 0x6b6964ULL));
    quality = sample_quality(real, torch::cat(fake), QualityOptions(), cpu_gen);
    quality->feature_network_sha256 = network.sha256;
    Json q = quality->to_json();
    q.set("feature_network", network.path).set("feature_network_kind", network.kind);
    if (network.classifier) {
      // The classifier's own view of the generated images: its score and predicted labels.
      auto probabilities = network.classifier->probabilities(torch::cat(generated));
      auto score = classifier_score(probabilities);
      auto histogram = label_histogram(probabilities.argmax(1), probabilities.size(1));
      Json counts = Json::array();
      for (int64_t i = 0; i < histogram.size(0); ++i) counts.push(Json::integer(histogram[i].item<int64_t>()));
      q.set("classifier_score", score.to_json()).set("predicted_label_histogram", counts);
      classifier_score_value = score.value;
    }
    q.set("generated", "binary draws of the decoder at prior samples (energy prior: Langevin, 200 steps of 0.1)");
    if (ebm) q.set("langevin_noise", c.langevin_noise);
    report.set("sample_quality", q);
  } else if (c.quality_samples > 0) {
    std::printf("no sample-quality scores: no feature network at %s (make one with vae-ebm train-classifier --dataset %s)\n",
                classifier_path.c_str(), dataset_name.c_str());
  }
  auto gen = make_generator(mix_seed(c.seed, 0x626f756eULL), run.device);
  auto bounds = evaluate_bounds(*run.model->encoder, *run.model->decoder, *run.model->prior, images,
                                BoundOptions().samples(c.samples), gen);
  Json estimates = Json::array();
  for (const auto* e : {&bounds.bound, &bounds.iwae, &bounds.reconstruction, &bounds.kl}) estimates.push(e->to_json());
  report.set("estimates", estimates);
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  report.set("seconds", seconds);
  auto h5_path = c.run_dir + "/evaluation-" + c.split + ".h5";
  {
    H5Writer h5(h5_path);
    h5.write(bounds.bound.estimator, bounds.per_image_bound);
    h5.write(bounds.iwae.estimator, bounds.per_image_iwae);
    h5.attribute("/", "checkpoint", run.checkpoint);
    h5.attribute("/", "split", c.split);
    if (ebm) h5.attribute("/", "log_z", log_z.value);
    h5.close();
  }
  report.set("per_image", h5_path);
  atomic_write(c.run_dir + "/evaluation.json", report.dump(2) + "\n");

  std::printf("%s  (%s, %s split, %lld images, K=%lld, checkpoint %s)\n", c.run_dir.c_str(),
              (c.dataset.empty() ? run.config.dataset : c.dataset).c_str(), c.split.c_str(),
              (long long)images.size(0), (long long)c.samples,
              std::filesystem::path(run.checkpoint).filename().c_str());
  std::printf("  %-26s %12s  %-11s\n", "estimator (nats)", "value", "std.error");
  print_row(bounds.bound.estimator, bounds.bound);
  print_row(bounds.iwae.estimator, bounds.iwae);
  print_row(bounds.reconstruction.estimator, bounds.reconstruction);
  print_row(bounds.kl.estimator, bounds.kl);
  if (ebm) {
    print_row("log Z " + log_z.estimator, log_z);
    std::printf("  %-26s %12s\n", "b (learned)", fmt(ebm->b.item<double>()).c_str());
    std::printf("  %-26s %12s\n", "b (used in the bounds)", fmt(ebm->bound_b().item<double>()).c_str());
  }
  if (quality) {
    std::printf("  sample quality (%lld generated vs %lld %s images; feature network %.12s...)\n",
                (long long)c.quality_samples, (long long)split.size(), c.split.c_str(),
                quality->feature_network_sha256.c_str());
    std::printf("  %-26s %12.3f\n", "Frechet distance", quality->frechet.value);
    std::printf("  %-26s %12.4f  +- %.4f (sd over subsets)\n", "KID", quality->kid.mean, quality->kid.std);
    std::printf("  %-26s %12.3f / %.3f\n", "precision / recall", quality->prdc.precision, quality->prdc.recall);
    std::printf("  %-26s %12.3f / %.3f\n", "density / coverage", quality->prdc.density, quality->prdc.coverage);
    if (!std::isnan(classifier_score_value))
      std::printf("  %-26s %12.3f  (of 10 at most)\n", "classifier score", classifier_score_value);
  }
  std::printf("wrote %s/evaluation.json and %s (%.1f s)\n", c.run_dir.c_str(), h5_path.c_str(), seconds);
  return 0;
}

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
  auto means = torch::sigmoid(model.decoder->logits(z));
  write_png_grid(out + "/prior_means.png", as_images(means), nrow);
  write_png_grid(out + "/prior_draws.png", as_images(torch::bernoulli(means, gen)), nrow);
  // Reconstructions: each test image above its reconstruction (decoder mean at the posterior mean).
  const int64_t half = std::max<int64_t>(1, std::min<int64_t>(c.count / 2, run.data.test.size()));
  auto x = run.data.test.images.narrow(0, 0, half).to(run.device);
  auto recon = torch::sigmoid(model.decoder->logits(model.encoder->forward(x).mean()));
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

int run_export(const ExportConfig& c) {
  auto run = load_run(c.run_dir, c.checkpoint, c.common);
  const auto& cfg = run.config;
  H5Writer h5(c.out);
  for (const auto& p : run.model->named_parameters()) {
    auto name = p.key();
    std::replace(name.begin(), name.end(), '.', '/');
    h5.write(name, p.value().detach().to(torch::kCPU));
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
  h5.attribute("/", "likelihood", "bernoulli-logits");
  h5.attribute("/", "prior", cfg.prior);
  h5.attribute("/", "dataset", cfg.dataset);
  if (cfg.prior == "mog") h5.attribute("/", "mog_components", cfg.mog_components);
  if (cfg.prior == "ebm") {
    h5.attribute("/", "energy_hidden", cfg.energy_hidden);
    h5.attribute("/", "energy_activation", "leaky-relu");
    h5.attribute("/", "energy_slope", cfg.energy_slope);
    h5.attribute("/", "energy_last_layer_bias", int64_t{0});
  }
  std::ostringstream layout;
  layout << "encoder: x -> net -> [mu | logvar] (first " << cfg.latent << " outputs are mu); "
         << "decoder: z -> net -> logits; net/N are the layers of a Sequential: "
         << (cfg.architecture == "mlp" ? "Linear layers at even indices with the activation between"
                                       : "the SNL conv networks (README, Models)");
  h5.attribute("/", "layout", layout.str());
  h5.close();
  std::printf("wrote %s (%zu parameter tensors)\n", c.out.c_str(), run.model->named_parameters().size());
  return 0;
}

std::string default_classifier_path(const std::string& data_dir, const std::string& dataset) {
  std::string name = dataset;
  std::replace(name.begin(), name.end(), '/', '_');
  std::replace(name.begin(), name.end(), ':', '_');
  return data_dir + "/classifiers/" + name + ".pt";
}

int run_train_classifier(const ClassifierConfig& c) {
  use_machine(c.common);
  auto data = load_data(c.dataset, c.common, 0);
  if (!data.train.labels.defined()) throw DataError("data set " + c.dataset + " has no labels to train a classifier on");
  if (data.dim() != 784) throw DataError("train-classifier needs 28x28 images; " + c.dataset + " has " +
                                         std::to_string(data.dim()) + " values per example");
  auto out = c.out.empty() ? default_classifier_path(c.common.data_dir, c.dataset) : c.out;
  std::filesystem::create_directories(std::filesystem::path(out).parent_path().empty()
                                          ? std::filesystem::path(".")
                                          : std::filesystem::path(out).parent_path());
  auto t0 = std::chrono::steady_clock::now();
  auto model = train_classifier(
      data.train.images, data.train.labels,
      ClassifierTrainOptions().epochs(c.epochs).seed(c.seed).on_epoch([](const ClassifierEpoch& e) {
        std::fprintf(stderr, "epoch %lld: training loss %.4f\n", (long long)e.epoch, e.loss);
      }));
  auto accuracy = classifier_accuracy(model, data.test.images, data.test.labels);
  save_classifier(model, out);
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("test accuracy %.4f +- %.4f (%lld images); %.0f s\nwrote %s\nweights SHA-256 %s\n", accuracy.value,
              accuracy.std_error, (long long)accuracy.count, seconds, out.c_str(), model->weights_sha256().c_str());
  return 0;
}

namespace {
const char* kUsage =
    "usage: vae-ebm COMMAND [flags]   (vae-ebm COMMAND --help for its flags)\n"
    "       vae-ebm --version [--blas-kernel K]   versions and the BLAS kernel in use\n"
    "\n"
    "commands:\n"
    "  train       train an encoder, decoder and prior (gaussian, mog or ebm) jointly\n"
    "  fit-prior   fit a mixture or energy prior post hoc to a trained VAE\n"
    "  evaluate    likelihood bounds (ELBO, IWAE, SNELBO, SN-IWAE, log Z) of a run\n"
    "  sample      PNG grids of prior samples and reconstructions\n"
    "  export      write a run's parameters to HDF5 for other frameworks\n"
    "  train-classifier  train the feature network that scores sample quality\n";
}

// `vae-ebm --version [--blas-kernel K]`: the versions, and the BLAS kernel the commands
// would compute with.
int print_version(const std::vector<std::string>& args) {
  CommonConfig common;
  if (args.size() == 3 && args[1] == "--blas-kernel") common.blas_kernel = args[2];
  else if (args.size() != 1) throw UsageError("--version takes only --blas-kernel K");
  try {
    blas::choose_kernel(common.blas_kernel);
  } catch (const std::invalid_argument& e) {
    throw UsageError(std::string("--blas-kernel: ") + e.what());
  }
  std::printf("vae-ebm %s\nLibTorch %d.%d.%d, Boost %s\n%s\nCPU: %s\n", VAE_EBM_VERSION, TORCH_VERSION_MAJOR,
              TORCH_VERSION_MINOR, TORCH_VERSION_PATCH, BOOST_LIB_VERSION, blas_kernel_line().c_str(),
              blas::detect_cpu().describe().c_str());
  return 0;
}

int main_entry(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    std::printf("%s", kUsage);
    return args.empty() ? 2 : 0;
  }
  if (args[0] == "--version") {
    try {
      return print_version(args);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "vae-ebm --version: error: %s\n", e.what());
      return 2;
    }
  }
  const std::string command = args[0];
  args.erase(args.begin());
  try {
    if (command == "train") {
      TrainConfig c;
      return parse_train(args, c) ? run_train(c) : 0;
    }
    if (command == "fit-prior") {
      TrainConfig c;
      return parse_fit_prior(args, c) ? run_train(c) : 0;
    }
    if (command == "evaluate") {
      EvaluateConfig c;
      return parse_evaluate(args, c) ? run_evaluate(c) : 0;
    }
    if (command == "sample") {
      SampleConfig c;
      return parse_sample(args, c) ? run_sample(c) : 0;
    }
    if (command == "train-classifier") {
      ClassifierConfig c;
      return parse_train_classifier(args, c) ? run_train_classifier(c) : 0;
    }
    if (command == "export") {
      ExportConfig c;
      return parse_export(args, c) ? run_export(c) : 0;
    }
    std::fprintf(stderr, "vae-ebm: unknown command '%s'\n\n%s", command.c_str(), kUsage);
    return 2;
  } catch (const UsageError& e) {
    std::fprintf(stderr, "vae-ebm %s: error: %s\n(see vae-ebm %s --help)\n", command.c_str(), e.what(), command.c_str());
    return 2;
  } catch (const std::exception& e) {
    std::string what = e.what();
    std::fprintf(stderr, "vae-ebm %s: error: %s\n", command.c_str(), what.substr(0, what.find("\nException raised from")).c_str());
    return 1;
  }
}

}  // namespace vae_ebm::cli
