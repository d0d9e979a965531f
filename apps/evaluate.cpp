// vae-ebm evaluate: the likelihood bounds of a run, with log Z for an energy prior and
// sample-quality scores when a feature network exists; written to evaluation.json and .h5.
#include <torch/torch.h>

#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <optional>
#include <sstream>

#include "apps/command.h"
#include "apps/flags.h"
#include "apps/report.h"
#include "apps/run_support.h"
#include "common/blas_kernel.h"
#include "common/distributed.h"
#include "data/error.h"
#include "data/files.h"
#include "data/hdf5_io.h"
#include "data/json.h"
#include "data/seed.h"
#include "estimators/bounds.h"
#include "estimators/classifier.h"
#include "estimators/colour.h"
#include "estimators/feature_network.h"
#include "estimators/quality.h"

namespace vae_ebm::cli {

namespace {

struct Quality {
  QualityReport report;
  double classifier_score = std::numeric_limits<double>::quiet_NaN();
  PriorDraws sampler;  // how the latents were drawn; its seconds, all of them
};

std::string out_dir(const EvaluateConfig& c) { return c.out.empty() ? c.run_dir : c.out; }

std::string dataset_of(const EvaluateConfig& c, const LoadedRun& run) {
  return c.dataset.empty() ? run.config.dataset : c.dataset;
}

torch::Tensor images_to_evaluate(const EvaluateConfig& c, const LoadedRun& run) {
  auto images = run.data.split(c.split).images;
  if (c.limit > 0 && c.limit < images.size(0)) images = images.narrow(0, 0, c.limit);
  return images.to(run.device);
}

// The bounds in bits per dimension, -nats / (P ln 2), where they bound the log of a probability
// (docs/MATH.md section 9): for the discretised logistic on 8-bit data and the Bernoulli on
// binary data; none for a density (the Gaussian) or the Bernoulli on grey values.
std::vector<Estimate> bits_per_dim_estimates(const LoadedRun& run, const BoundReport& bounds) {
  const bool mass = run.model->likelihood->probability_mass() &&
                    (run.config.likelihood.kind() != "bernoulli" || run.data.binary);
  if (!mass) return {};
  const auto values = run.data.dim();
  std::vector<Estimate> out;
  for (const auto* e : {&bounds.bound, &bounds.iwae}) {
    Estimate bits = *e;
    bits.value = bits_per_dim(e->value, values);
    bits.std_error = e->std_error / (static_cast<double>(values) * std::log(2.0));
    bits.units = "bits/dim";
    out.push_back(bits);
  }
  return out;
}

// What the bounds are bounds on, for the record and the table.
std::string bound_meaning(const LoadedRun& run) {
  const auto& kind = run.config.likelihood.kind();
  if (kind == "gaussian")
    return "log density of the data as the Gaussian sees them (per image, in nats): not comparable with the log "
           "probability of a discrete likelihood";
  if (kind == "bernoulli" && !run.data.binary)
    return "Bernoulli cross-entropy on grey values: not the likelihood of these images";
  return "log probability of the image's values (a probability mass)";
}

Json describe(const EvaluateConfig& c, const LoadedRun& run, const torch::Tensor& images) {
  Json report = Json::object();
  report.set("run", c.run_dir).set("checkpoint", run.checkpoint).set("dataset", dataset_of(c, run))
      .set("split", c.split).set("images", images.size(0)).set("samples_K", c.samples)
      .set("prior", run.config.prior).set("objective", run.config.objective_name())
      .set("likelihood", run.model->likelihood->describe()).set("bounds_on", bound_meaning(run))
      .set("blas_kernel", blas::kernel_state().kernel).set("data", data_record(run.data));
  return report;
}

// An energy prior's log Z, by the method asked for, held fixed in the bounds (set_normaliser).
Estimate estimate_normaliser(const EvaluateConfig& c, const LoadedRun& run, EnergyPrior& ebm,
                             const std::shared_ptr<Distributed>& dist, Json& report) {
  const bool learned = c.normaliser == "learned" ||
                       (c.normaliser == "auto" &&
                        make_objective(run.config.objective_name())->trains_b_in_its_bound());
  LogZSettings settings = c.log_z;
  settings.samples = c.log_z_samples;
  settings.blocks_over = dist;  // the same estimate from one process or several
  // auto tries the flow the objective trained before fitting one (read once, if asked for).
  auto trained = std::make_shared<std::optional<Flow>>();
  settings.trained_flow = [trained, checkpoint = run.checkpoint, device = run.device]() {
    if (!*trained) *trained = load_objective_flow_from_checkpoint(checkpoint, device);
    return **trained;
  };
  const auto method = log_z_method_from_flag(c.log_z_method, settings);
  return set_normaliser(ebm, learned, method, mix_seed(c.seed, 0x6c6f677aULL), report);
}

// The images' random numbers come in blocks of kImageBlock images, each block's from a
// generator of its own (in_blocks), so that one process and many draw the same numbers; a block
// is a few of evaluate_bounds' chunks, and a generator per block costs nothing measurable.
constexpr int64_t kImageBlock = 100;

// The bounds of the images, each process computing its blocks; every process gets them all.
BoundReport bounds_in_blocks(const EvaluateConfig& c, const LoadedRun& run, const torch::Tensor& images,
                             Distributed& dist) {
  auto& m = *run.model;
  const auto options = BoundOptions().samples(c.samples);
  auto terms = in_blocks(
      dist, images.size(0), kImageBlock, 4, mix_seed(c.seed, 0x626f756eULL), run.device,
      [&](int64_t first, int64_t n, at::Generator& gen) {
        auto r = evaluate_bounds(*m.encoder, *m.decoder, *m.likelihood, *m.prior, images.narrow(0, first, n), options, gen);
        return torch::stack({r.per_image_bound, r.per_image_iwae, r.per_image_reconstruction, r.per_image_kl}, 1);
      },
      "the gather of the per-image bounds");
  auto column = [&terms](int64_t i) { return terms.select(1, i).contiguous(); };
  return bound_report(column(0), column(1), column(2), column(3), c.samples, !m.prior->exact());
}

// Ranks that would compute different things (other flags, another checkpoint or data) stop
// here, named, instead of gathering numbers that do not belong together.
void check_same_on_all_ranks(Distributed& dist, const EvaluateConfig& c, const LoadedRun& run,
                             const torch::Tensor& images) {
  if (!dist.parallel()) return;
  std::ostringstream flags;
  flags.precision(17);
  flags << c.checkpoint << '\n' << c.dataset << '\n' << c.split << '\n' << c.samples << '\n' << c.log_z_samples << '\n'
        << c.limit << '\n' << c.normaliser << '\n' << c.log_z_method << '\n' << c.seed << '\n';
  for (const auto& [name, text] : log_z_option_set().texts(c.log_z)) flags << name << '=' << text << '\n';
  const auto text = flags.str();
  auto bytes = torch::tensor(std::vector<int64_t>(text.begin(), text.end()), torch::kLong);
  dist.check_identical({bytes}, "evaluate flags (--checkpoint, --dataset, --split, --samples, --limit, --seed, the log-Z "
                                "flags)");
  std::vector<torch::Tensor> state = {images};
  for (const auto& p : run.model->named_parameters()) state.push_back(p.value());
  for (const auto& b : run.model->named_buffers()) state.push_back(b.value());
  dist.check_identical(state, "model (the checkpoint read) and images");
}

// Generated images (binary draws from the decoder at prior samples: the feature network is
// trained on binary images) scored against the split's, when a feature network exists.
std::optional<Quality> score_samples(const EvaluateConfig& c, const LoadedRun& run, Json& report) {
  if (c.quality_samples == 0) return std::nullopt;
  const auto dataset = dataset_of(c, run);
  const auto classifier_path = c.classifier.empty() ? default_classifier_path(c.common.data_dir, dataset) : c.classifier;
  const bool torchscript = !c.feature_network.empty();
  if (!torchscript && !file_exists(classifier_path)) {
    std::printf("no sample-quality scores: no feature network at %s (make one with vae-ebm train-classifier --dataset %s)\n",
                classifier_path.c_str(), dataset.c_str());
    return std::nullopt;
  }
  torch::NoGradGuard no_grad;
  auto network = torchscript ? load_torchscript_features(c.feature_network, run.data.image_shape)
                             : load_classifier_features(classifier_path);
  if (network.image_shape != run.data.image_shape) {
    auto text = [](const std::vector<int64_t>& shape) {
      std::string out;
      for (auto s : shape) out += (out.empty() ? "" : "x") + std::to_string(s);
      return out;
    };
    throw DataError("feature classifier " + network.path + " was trained on images of shape " +
                    text(network.image_shape) + "; " + dataset + " has images of shape " + text(run.data.image_shape) +
                    " (train one with vae-ebm train-classifier --dataset " + dataset + ")");
  }
  auto* ebm = dynamic_cast<EnergyPrior*>(run.model->prior.get());
  auto flow_how = std::make_shared<std::string>();
  FlowSource flow;
  std::vector<std::string> samplers = {c.sampler == "all" ? default_sampler() : c.sampler};
  if (ebm) {
    flow = sampling_flow(run, *ebm, c.log_z.flow, c.log_z.flow_base_fraction, c.seed, flow_how);
    if (c.sampler == "all") {  // the default first: its scores are the record's sample_quality
      for (const auto& name : sampler_names())
        if (name != default_sampler()) samplers.push_back(name);
    }
    // A fitted flow's cost is the flow's, not the sampler's: made before any clock starts.
    for (const auto& name : samplers)
      if (sampler_registry().at(name).needs_flow) flow();
  }
  auto real = network.features(run.data.split(c.split).images.to(torch::kCPU));
  // Where the draws land, beside where the split's posterior means are: |z|, the energy f(z)
  // (energy priors) and the decoder's entropy H[p(x|z)] (one draw's -log p(x|z)). Draws with a
  // lower energy but a higher entropy than the posterior means sit in prior mass that the
  // decoder never learnt to use: holes.
  auto where = [ebm](const torch::Tensor& z, const torch::Tensor& entropy) {
    Json j = Json::object();
    j.set("mean_norm", z.norm(2, -1).mean().item<double>());
    if (ebm) j.set("mean_energy", ebm->energy(z).mean().item<double>());
    j.set("mean_decoder_entropy", entropy.mean().item<double>());
    return j;
  };
  {
    auto images = run.data.split(c.split).images;
    auto x = images.narrow(0, 0, std::min<int64_t>(images.size(0), 10000)).to(run.device);
    auto z = run.model->encoder->forward(x).mean();
    auto params = run.model->decoder->params(z);
    auto gen = make_generator(mix_seed(c.seed, 0x706d65616eULL), run.device);
    report.set("posterior_means", where(z, -run.model->likelihood->log_prob(params, run.model->likelihood->sample(params, gen))));
  }
  // Colour images: which colour families the draws reach, against the split's (estimators/colour.h).
  const auto& shape = run.data.image_shape;
  const bool colour = shape.size() == 3 && shape[0] == 3;
  std::optional<ColourHistograms> real_colours;
  if (colour) real_colours = colour_histograms(run.data.split(c.split).images.reshape({-1, 3, shape[1], shape[2]}));
  std::optional<Quality> first;
  Json by_sampler = Json::object();
  for (const auto& sampler : samplers) {
    // Each sampler from the same seed: its scores do not depend on which others ran.
    auto gen = make_generator(mix_seed(c.seed, 0x7175616cULL), run.device);
    std::vector<torch::Tensor> fake, generated;
    PriorDraws drawn;
    std::vector<torch::Tensor> zs, entropies, means;
    double sampler_seconds = 0, acceptance = 0, ess = 0;
    for (int64_t done = 0; done < c.quality_samples; done += 1000) {
      const int64_t n = std::min<int64_t>(1000, c.quality_samples - done);
      drawn = draw_prior(*run.model->prior, sampler, c.sampler_options, flow, n, gen);
      sampler_seconds += drawn.seconds;
      acceptance += drawn.acceptance * static_cast<double>(n);
      ess += drawn.resampling_ess * static_cast<double>(n);
      auto params = run.model->decoder->params(drawn.z);
      auto x = run.model->likelihood->sample(params, gen);
      zs.push_back(drawn.z);
      entropies.push_back(-run.model->likelihood->log_prob(params, x));
      const bool score_means = c.quality_images == "means";
      torch::Tensor mean;
      if (colour || score_means) mean = run.model->likelihood->mean(params).to(torch::kCPU);
      if (colour) means.push_back(mean);
      x = score_means ? mean : x.to(torch::kCPU);
      fake.push_back(network.features(x));
      generated.push_back(x);
    }
    drawn.acceptance = acceptance / static_cast<double>(c.quality_samples);
    drawn.resampling_ess = ess / static_cast<double>(c.quality_samples);
    drawn.seconds = sampler_seconds;
    auto cpu_gen = make_generator(mix_seed(c.seed, 0x6b6964ULL));
    Quality quality;
    quality.report = sample_quality(real, torch::cat(fake), QualityOptions(), cpu_gen);
    quality.report.feature_network_sha256 = network.sha256;
    Json q = quality.report.to_json();
    q.set("feature_network", network.path).set("feature_network_kind", network.kind);
    if (network.classifier) {
      // The classifier's own view of the generated images: its score and predicted labels.
      auto probabilities = network.classifier->probabilities(torch::cat(generated));
      auto score = classifier_score(probabilities);
      auto histogram = label_histogram(probabilities.argmax(1), probabilities.size(1));
      Json counts = Json::array();
      for (int64_t i = 0; i < histogram.size(0); ++i) counts.push(Json::integer(histogram[i].item<int64_t>()));
      q.set("classifier_score", score.to_json()).set("predicted_label_histogram", counts);
      quality.classifier_score = score.value;
    }
    q.set("generated", std::string(c.quality_images == "means" ? "the decoder's means" : "draws of p(x|z)") +
                           " at prior samples (" + drawn.description + ")");
    q.set("sampler", drawn.record());
    q.set("draws", where(torch::cat(zs), torch::cat(entropies)));
    if (colour) {
      const auto coverage =
          colour_coverage(*real_colours, colour_histograms(torch::cat(means).reshape({-1, 3, shape[1], shape[2]})));
      q.set("colour", coverage.to_json().set("of", "the decoder's means at the prior samples, against the split's images"));
      std::printf("  %s colours (4 levels per channel): background TV %.3f, coverage %.3f (draws in %lld bins, the data in %lld); "
                  "digit TV %.3f, coverage %.3f (draws in %lld bins, the data in %lld)\n",
                  sampler.c_str(), coverage.background_tv, coverage.background_coverage,
                  (long long)coverage.fake_background_bins, (long long)coverage.real_background_bins,
                  coverage.foreground_tv, coverage.foreground_coverage, (long long)coverage.fake_foreground_bins,
                  (long long)coverage.real_foreground_bins);
    }
    q.set("sampler_seconds_per_10000", sampler_seconds * 10000.0 / static_cast<double>(c.quality_samples));
    if (ebm && !flow_how->empty() && sampler_registry().at(sampler).needs_flow) q.set("sampler_flow", *flow_how);
    quality.sampler = drawn;
    if (!first) {
      report.set("sample_quality", q);
      first = quality;
    }
    if (samplers.size() > 1) {
      by_sampler.set(sampler, q);
      std::printf("  %-14s FD %8.3f  KID %.4f  precision %.3f  recall %.3f  coverage %.3f  %6.1f s%s\n",
                  sampler.c_str(), quality.report.frechet.value, quality.report.kid.mean, quality.report.prdc.precision,
                  quality.report.prdc.recall, quality.report.prdc.coverage, drawn.seconds,
                  drawn.diagnostic_text().c_str());
      std::fflush(stdout);
    }
  }
  if (samplers.size() > 1) report.set("sample_quality_by_sampler", by_sampler);
  return first;
}

// Below 1% of its samples, an importance-sampling estimate of log Z is not to be trusted, and
// neither are the bounds that hold it fixed: the table and the record say so.
std::string low_ess_warning(const Estimate& log_z) {
  if (std::isnan(log_z.ess) || log_z.ess >= 0.01 * static_cast<double>(log_z.count)) return "";
  std::ostringstream text;
  text.precision(3);
  text << "WARNING: the log Z estimate has ESS " << log_z.ess << " of " << log_z.count
       << " samples (below 1%); it and the bounds that use it may be far off ("
       << (log_z.estimator.find("AIS(forward from") != std::string::npos
               ? "try more --ais-temperatures or --ais-chains, or more --flow-refine-steps"
           : log_z.estimator.find("AIS") != std::string::npos
               ? "try --log-z-method flow-ais, or more --ais-temperatures or --ais-chains"
           : log_z.estimator.find("flow") != std::string::npos
               ? "try --log-z-method flow-ais, or more --flow-steps or --flow-refine-steps"
               : "try --log-z-method flow or flow-ais")
       << ")";
  return text.str();
}

// The name of an evaluation's records: DATASET.SPLIT.CHECKPOINT, e.g. binary-mnist.test.best,
// hdf5-mine.h5-3f2a1b9c.test.step-000000390 (a user's file: its name and fingerprint).
std::string record_name(const EvaluateConfig& c, const LoadedRun& run) {
  auto dataset = dataset_of(c, run);
  if (dataset.rfind("hdf5:", 0) == 0)
    dataset = "hdf5-" + std::filesystem::path(dataset.substr(5)).filename().string() + "-" +
              run.data.fingerprint().substr(0, 8);
  for (auto& ch : dataset)
    if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '.' && ch != '-' && ch != '_') ch = '_';
  return dataset + "." + c.split + "." + std::filesystem::path(run.checkpoint).stem().string();
}

// Every evaluation keeps its own record, evaluations/NAME.json with the per-image bounds in
// evaluations/NAME.h5 (record_name), so that no data set, split or checkpoint overwrites
// another's. An evaluation of the run's own data set is also evaluation.json with
// evaluation-SPLIT.h5: the newest one, which the bench scripts read.
void write_record(const EvaluateConfig& c, const LoadedRun& run, const BoundReport& bounds,
                  const std::optional<Estimate>& log_z, Json& report, double seconds) {
  Json estimates = Json::array();
  for (const auto* e : {&bounds.bound, &bounds.iwae, &bounds.reconstruction, &bounds.kl}) estimates.push(e->to_json());
  for (const auto& e : bits_per_dim_estimates(run, bounds)) estimates.push(e.to_json());
  report.set("estimates", estimates).set("seconds", seconds);
  if (log_z && !low_ess_warning(*log_z).empty()) report.set("warning", low_ess_warning(*log_z));
  auto write = [&](const std::string& json_path, const std::string& h5_path) {
    H5Writer h5(h5_path);
    h5.write(bounds.bound.estimator, bounds.per_image_bound);
    h5.write(bounds.iwae.estimator, bounds.per_image_iwae);
    h5.attribute("/", "checkpoint", run.checkpoint);
    h5.attribute("/", "split", c.split);
    if (log_z) h5.attribute("/", "log_z", log_z->value);
    h5.close();
    Json record = report;
    record.set("per_image", h5_path);
    atomic_write(json_path, record.dump(2) + "\n");
  };
  const auto dir = out_dir(c) + "/evaluations";
  check_writable(dir);
  const auto name = record_name(c, run);
  write(dir + "/" + name + ".json", dir + "/" + name + ".h5");
  if (dataset_of(c, run) == run.config.dataset)
    write(out_dir(c) + "/evaluation.json", out_dir(c) + "/evaluation-" + c.split + ".h5");
}

void print_table(const EvaluateConfig& c, const LoadedRun& run, int64_t images, const BoundReport& bounds,
                 const std::optional<Estimate>& log_z, const std::optional<Quality>& quality) {
  std::printf("%s  (%s, %s split, %lld images, K=%lld, checkpoint %s)\n", c.run_dir.c_str(), dataset_of(c, run).c_str(),
              c.split.c_str(), (long long)images, (long long)c.samples,
              std::filesystem::path(run.checkpoint).filename().c_str());
  std::printf("  %-26s %12s  %-11s\n", "estimator (nats)", "value", "std.error");
  for (const auto* e : {&bounds.bound, &bounds.iwae, &bounds.reconstruction, &bounds.kl}) print_row(e->estimator, *e);
  for (const auto& e : bits_per_dim_estimates(run, bounds)) print_row(e.estimator + " (bits/dim)", e);
  if (run.config.likelihood.kind() != "bernoulli" || !run.data.binary)
    std::printf("  bounds on: %s\n", bound_meaning(run).c_str());
  if (auto* ebm = dynamic_cast<EnergyPrior*>(run.model->prior.get()); ebm && log_z) {
    print_row("log Z " + log_z->estimator, *log_z);
    if (const auto warning = low_ess_warning(*log_z); !warning.empty()) std::printf("  %s\n", warning.c_str());
    std::printf("  %-26s %12s\n", "b (learned)", fmt(ebm->b.item<double>()).c_str());
    std::printf("  %-26s %12s\n", "b (used in the bounds)", fmt(ebm->bound_b().item<double>()).c_str());
  }
  if (quality) {
    const auto& q = quality->report;
    std::printf("  sample quality (%lld generated vs %lld %s images; feature network %.12s...)\n",
                (long long)c.quality_samples, (long long)run.data.split(c.split).size(), c.split.c_str(),
                q.feature_network_sha256.c_str());
    std::printf("  %-26s %s: %.1f s%s\n", "sampler", quality->sampler.description.c_str(), quality->sampler.seconds,
                quality->sampler.diagnostic_text().c_str());
    std::printf("  %-26s %12.3f\n", "Frechet distance", q.frechet.value);
    std::printf("  %-26s %12.4f  +- %.4f (sd over subsets)\n", "KID", q.kid.mean, q.kid.std);
    std::printf("  %-26s %12.3f / %.3f\n", "precision / recall", q.prdc.precision, q.prdc.recall);
    std::printf("  %-26s %12.3f / %.3f\n", "density / coverage", q.prdc.density, q.prdc.coverage);
    if (!std::isnan(quality->classifier_score))
      std::printf("  %-26s %12.3f  (of 10 at most)\n", "classifier score", quality->classifier_score);
  }
}

// A bound that is not a number, or that a probability mass cannot have (above 0 nats), comes
// from broken numbers (a checkpoint with finite but extreme weights): an error, nothing written.
void check_bounds(const LoadedRun& run, const BoundReport& b) {
  const bool mass = run.model->likelihood->probability_mass();
  for (const auto& [name, e] : {std::pair<std::string, const Estimate*>{"bound", &b.bound}, {"importance-weighted bound", &b.iwae}}) {
    if (name != "bound" && !b.per_image_iwae.defined()) continue;
    if (!std::isfinite(e->value))
      throw DataError("the " + name + " of checkpoint " + run.checkpoint + " is " + shortest(e->value) +
                      ": its weights give numbers that are not finite; nothing was written");
    if (mass && e->value > 0)
      throw DataError("the " + name + " of checkpoint " + run.checkpoint + " is " + shortest(e->value) +
                      " nats, above 0, which no probability mass (" + run.model->likelihood->describe() +
                      ") can have: its weights give broken numbers; nothing was written");
  }
}

}  // namespace

int run_evaluate(const EvaluateConfig& config) {
  if (config.common.nproc > 1) return run_local_world(config.common.nproc, "evaluate");
  const auto t0 = std::chrono::steady_clock::now();
  auto c = config;
  // Many processes when torchrun (or --nproc) started them: each evaluates its blocks of the
  // images and of log Z's samples; rank 0 alone scores samples and writes.
  auto device = parse_device(c.common.device);
  const auto launch = Distributed::launch_from_environment();
  if (launch.world_size > 1 && device.is_cuda() && !device.has_index()) {
    device = torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(launch.local_rank));  // untested: no CUDA here
    c.common.device = device.str();
  }
  const auto dist = connect_processes(c.dist_timeout, device);
  const bool writes = dist->is_root();
  // A read-only run directory, or a bad --out, fails now rather than after the computing.
  if (writes) {
    try {
      check_writable(out_dir(c));
    } catch (const DataError& e) {
      throw DataError(std::string(e.what()) + (c.out.empty() ? " (evaluate writes its records into the run directory; "
                                                               "give --out DIR to write them elsewhere)"
                                                             : ""));
    }
  }
  auto run = load_run(c.run_dir, c.checkpoint, c.common, c.dataset);
  const auto images = images_to_evaluate(c, run);
  if (images.size(0) == 0) throw DataError("the " + c.split + " split of " + dataset_of(c, run) + " has no images");
  check_same_on_all_ranks(*dist, c, run, images);
  Json report = describe(c, run, images);
  if (dist->parallel()) report.set("processes", dist->describe());
  std::optional<Estimate> log_z;
  if (auto* ebm = dynamic_cast<EnergyPrior*>(run.model->prior.get()))
    log_z = estimate_normaliser(c, run, *ebm, dist, report);
  const auto bounds = bounds_in_blocks(c, run, images, *dist);
  check_bounds(run, bounds);
  if (!writes) return 0;
  const auto quality = score_samples(c, run, report);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  write_record(c, run, bounds, log_z, report, seconds);
  print_table(c, run, images.size(0), bounds, log_z, quality);
  if (dataset_of(c, run) == run.config.dataset)
    std::printf("wrote %s/evaluation.json and %s/evaluation-%s.h5, and evaluations/%s.{json,h5} (%.1f s)\n",
                out_dir(c).c_str(), out_dir(c).c_str(), c.split.c_str(), record_name(c, run).c_str(), seconds);
  else
    std::printf("wrote %s/evaluations/%s.{json,h5} (%.1f s)\n", out_dir(c).c_str(), record_name(c, run).c_str(), seconds);
  if (c.report) {
    RunReportOptions options;
    options.checkpoint = c.checkpoint;
    options.records_dir = out_dir(c);
    // The model loaded here serves the page's images unless it was loaded with another data set.
    options.loaded = dataset_of(c, run) == run.config.dataset ? &run : nullptr;
    const auto t_report = std::chrono::steady_clock::now();
    const auto path = write_run_report(c.run_dir, c.common, options);
    std::printf("wrote %s (%.1f s)\n", path.c_str(),
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t_report).count());
  }
  return 0;
}

// The command line: flags, their defaults and their checks.
bool parse_evaluate(const std::vector<std::string>& args, EvaluateConfig& c) {
  po::options_description d("evaluate flags");
  add_run_and_checkpoint(d, c.run_dir, c.checkpoint);
  d.add_options()
      ("dataset", po::value(&c.dataset)->default_value(c.dataset), "data set to evaluate on (default: the run's); same shape")
      ("split", po::value(&c.split)->default_value(c.split), "train, validation or test")
      ("samples", po::value(&c.samples)->default_value(c.samples), "posterior samples K per image (ELBO_K and IWAE_K)")
      ("log-z-samples", po::value(&c.log_z_samples)->default_value(c.log_z_samples), "base samples for log Z (ebm)")
      ("limit", po::value(&c.limit)->default_value(c.limit), "evaluate the first N images only (0: all)")
      ("classifier", po::value(&c.classifier)->default_value(c.classifier),
       "feature network for sample quality (default DATA_DIR/classifiers/DATASET.pt, made by train-classifier)")
      ("log-z-method", po::value(&c.log_z_method)->default_value(c.log_z_method),
       "ebm: log Z by auto (is when its ESS is at least 10% of the samples, else flow), is (importance "
       "sampling from the base), flow (from a flow fitted to the energy), flow-ais (annealed importance sampling "
       "from that flow) or ais (annealed importance sampling from the base)");
  add_option_flags(
      d, log_z_option_set().specs(), [](const OptionSpec& spec) { return spec.help; },
      [&c](const std::string& name, const std::string& text) { log_z_option_set().set(c.log_z, name, text); });
  d.add_options()
      ("feature-network", po::value(&c.feature_network)->default_value(c.feature_network),
       "a TorchScript network mapping images [B, C, H, W] to features [B, d], used instead of the classifier "
       "(an Inception network gives a conventional FID); its file's SHA-256 is recorded")
      ("quality-samples", po::value(&c.quality_samples)->default_value(c.quality_samples),
       "generated images scored against the split (0: no sample-quality scores)")
      ("quality-images", po::value(&c.quality_images)->default_value(c.quality_images),
       "what is scored: draws (of p(x|z) at the prior samples, as the data are drawn) or means (the decoder's "
       "mean images: for 8-bit or continuous data, whose draws carry per-pixel noise that the features see)");
  add_sampler_flags(d, c.sampler, c.sampler_options);
  d.add_options()
      ("normaliser", po::value(&c.normaliser)->default_value(c.normaliser),
       "ebm: b in the bounds: learned, estimated (independent IS estimate of log Z), or auto (learned for snelbo only)")
      ("seed", po::value(&c.seed)->default_value(c.seed), "seed of the estimators' samples")
      ("out", po::value(&c.out)->default_value(c.out),
       "directory for evaluation.json and evaluation-SPLIT.h5 (default: the run directory); checked for writing "
       "before anything is computed")
      ("report", po::value<bool>(&c.report)->default_value(c.report)->implicit_value(true),
       "then (re)write report.html beside the records: the run's page, as vae-ebm report writes it")
      ("dist-timeout", real(&c.dist_timeout, c.dist_timeout),
       "data-parallel evaluation (torchrun or --nproc): seconds that meeting the other processes, or any one "
       "exchange with them, may take before evaluate stops with an error");
  add_nproc(d, c.common);
  if (!parse_run_command(args, d, c.common, "evaluate",
                         "usage: vae-ebm evaluate RUN_DIR [flags]\nReports likelihood bounds; writes RUN_DIR/evaluation.json and evaluation.h5."))
    return false;
  if (c.samples < 1) throw UsageError("--samples must be >= 1, got " + std::to_string(c.samples));
  if (c.log_z_samples < 1) throw UsageError("--log-z-samples must be >= 1, got " + std::to_string(c.log_z_samples));
  if (c.limit < 0) throw UsageError("--limit must be >= 0, got " + std::to_string(c.limit));
  check_sampler(c.sampler, c.sampler_options);
  check_choice("--log-z-method", c.log_z_method, log_z_method_names());
  as_usage([&] { check_log_z_settings(c.log_z); });
  if (c.quality_samples < 0) throw UsageError("--quality-samples must be >= 0, got " + std::to_string(c.quality_samples));
  check_choice("--normaliser", c.normaliser, {"auto", "learned", "estimated"});
  check_choice("--quality-images", c.quality_images, {"draws", "means"});
  return true;
}

Command evaluate_command() {
  return command_of("evaluate", "likelihood bounds (ELBO, IWAE, SNELBO, SN-IWAE, log Z) of a run",
                    parse_evaluate, run_evaluate);
}

}  // namespace vae_ebm::cli
