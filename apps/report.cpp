// vae-ebm report: one self-contained HTML page for one or more runs (report/ draws the charts
// and tables; this file adds what needs the model: sample grids, Langevin chains, the latent
// space), or the comparison table in Markdown or LaTeX for a paper.
#include <torch/torch.h>

#include "apps/report.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <map>
#include <optional>

#include "apps/command.h"
#include "apps/flags.h"
#include "apps/run_support.h"
#include "data/files.h"
#include "data/hdf5_io.h"
#include "data/png.h"
#include "data/seed.h"
#include "report/compare.h"
#include "report/html.h"
#include "report/run_files.h"
#include "report/run_page.h"
#include "report/svg.h"

namespace vae_ebm::cli {

namespace fs = std::filesystem;
using report::figure;
using report::note;

namespace {

using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

// A run as the page shows it.
struct RunView {
  std::string label;
  report::RunFiles files;
};

// ---- Images ---------------------------------------------------------------------------------

// data/png.h (stb) writes a grid to a file; the page wants its bytes, so it goes through a
// temporary file.
std::string png_grid_bytes(const torch::Tensor& images, int64_t nrow) {
  static std::atomic<int> counter{0};
  const auto path = (fs::temp_directory_path() /
                     ("vae-ebm-report-" + std::to_string(::getpid()) + "-" + std::to_string(counter++) + ".png"))
                        .string();
  struct Remove {
    std::string path;
    ~Remove() {
      std::error_code ec;
      fs::remove(path, ec);
    }
  } remove{path};
  write_png_grid(path, images, nrow);
  return read_file(path);
}

// Small images (MNIST grids, 3x4 test data) are shown enlarged, pixels kept sharp (CSS).
int display_width(const std::string& png) {
  if (png.size() < 24) return 0;
  const uint32_t w = (static_cast<uint8_t>(png[16]) << 24) | (static_cast<uint8_t>(png[17]) << 16) |
                     (static_cast<uint8_t>(png[18]) << 8) | static_cast<uint8_t>(png[19]);
  if (w == 0) return 0;
  const int scale = std::clamp(static_cast<int>(400 / w), 1, 8);
  return static_cast<int>(std::min<uint32_t>(w * scale, 1000));
}

std::string image_figure(const std::string& png, const std::string& alt, const std::string& caption) {
  return figure(report::png_img(png, alt, display_width(png)) + "\n", caption, "image");
}

// Flat [N, P] model outputs as images of the data's shape; flat user data as one row each.
torch::Tensor as_images(const torch::Tensor& flat, const std::vector<int64_t>& shape) {
  std::vector<int64_t> s{flat.size(0)};
  s.insert(s.end(), shape.begin(), shape.end());
  if (s.size() == 2) s = {flat.size(0), 1, 1, flat.size(1)};
  return flat.reshape(s).to(torch::kCPU);
}

// ---- The sections that need the model ------------------------------------------------------

struct ModelSections {
  std::string samples, chains, latent;
};

// Prior samples (decoder means) and reconstructions of test images, as `vae-ebm sample` draws them:
// an energy prior gets one grid per sampler (estimators/samplers.h), each with its diagnostic and
// wall time; the flow samplers only where the checkpoint holds the flow training made (fitting
// one for a page would take minutes: `vae-ebm sample RUN --sampler all` does, and the page then
// shows the grids it wrote).
std::string generated_samples(LoadedRun& run, uint64_t seed) {
  auto& model = *run.model;
  const auto& shape = run.data.image_shape;
  const std::string generated = "64 prior samples, decoder means (generated for this page; vae-ebm sample writes them "
                                "into the run)";
  std::string out;
  if (auto* ebm = dynamic_cast<EnergyPrior*>(model.prior.get())) {
    const Flow trained = load_objective_flow_from_checkpoint(run.checkpoint, run.device);
    const FlowSource flow = [trained] { return trained; };
    std::vector<std::string> left_out;
    for (const auto& name : sampler_names()) {
      if (sampler_registry().at(name).needs_flow && !trained) {
        left_out.push_back(name);
        continue;
      }
      // Every sampler from the same seed: the grids differ by the sampler alone.
      auto gen = make_generator(mix_seed(seed, 0x73616d70ULL), run.device);
      const auto drawn = draw_prior(*ebm, name, SamplerOptions(), flow, 64, gen);
      out += image_figure(png_grid_bytes(as_images(model.decode_mean(drawn.z), shape), 8), "prior samples: " + name,
                          generated + ", by " + drawn.description + drawn.diagnostic_text() + ", " +
                              report::number_text(drawn.seconds, 2) + " s.");
    }
    if (!left_out.empty()) {
      std::string names;
      for (const auto& n : left_out) names += (names.empty() ? "" : ", ") + n;
      out += note("Left out: the flow samplers (" + names + "): this run's checkpoint holds no flow. vae-ebm sample "
                  "RUN --sampler all fits one to the energy and writes their grids, which this page then shows.");
    }
  } else {
    auto gen = make_generator(mix_seed(seed, 0x73616d70ULL), run.device);
    const auto drawn = draw_prior(*model.prior, default_sampler(), SamplerOptions(), nullptr, 64, gen);
    out = image_figure(png_grid_bytes(as_images(model.decode_mean(drawn.z), shape), 8), "prior samples",
                       generated + ".");
  }
  const int64_t half = std::min<int64_t>(32, run.data.test.size());
  if (half > 0) {
    auto x = run.data.test.images.narrow(0, 0, half).to(run.device);
    auto recon = model.decode_mean(model.encoder->forward(x).mean());
    std::vector<torch::Tensor> rows;
    for (int64_t start = 0; start < half; start += 8) {
      const auto n = std::min<int64_t>(8, half - start);
      rows.push_back(x.narrow(0, start, n));
      rows.push_back(recon.narrow(0, start, n));
    }
    out += image_figure(png_grid_bytes(as_images(torch::cat(rows), shape), 8), "reconstructions",
                        "Test images, each row followed by its reconstruction (decoder mean at the posterior mean).");
  }
  return out;
}

// Chains from the base N(0, I) to the energy prior's samples: the decoder means along a few
// chains at several step counts, and the mean potential along all of them.
std::string langevin_chains(LoadedRun& run, EnergyPrior& ebm, uint64_t seed) {
  const std::vector<int64_t> at = {0, 5, 10, 25, 50, 100, 200};
  constexpr int64_t kChains = 64, kShown = 8;
  auto options = EnergyPrior::default_sampling();
  options.trace(true);
  auto gen = make_generator(mix_seed(seed, 0x636861696eULL), run.device);
  auto z = torch::randn({kChains, ebm.latent_dim()}, gen, torch::TensorOptions().device(run.device));
  std::vector<torch::Tensor> frames{z.narrow(0, 0, kShown)};
  report::Series energy, grad;
  energy.name = "mean U(z) = f(z) + |z|²/2";
  grad.name = "mean |grad U(z)|";
  for (size_t j = 1; j < at.size(); ++j) {
    auto result = ebm.run_langevin(z, LangevinOptions(options).steps(at[j] - at[j - 1]), gen);
    z = result.z;
    frames.push_back(z.narrow(0, 0, kShown));
    for (size_t k = 0; k < result.trace.energy.size(); ++k) {
      energy.x.push_back(static_cast<double>(at[j - 1] + static_cast<int64_t>(k) + 1));
      energy.y.push_back(result.trace.energy[k]);
    }
    for (size_t k = 0; k < result.trace.grad_norm.size(); ++k) {
      grad.x.push_back(static_cast<double>(at[j - 1] + static_cast<int64_t>(k) + 1));
      grad.y.push_back(result.trace.grad_norm[k]);
    }
  }
  // Row c: chain c at each step count.
  std::vector<torch::Tensor> tiles;
  for (int64_t c = 0; c < kShown; ++c)
    for (const auto& frame : frames) tiles.push_back(frame[c]);
  auto means = run.model->decode_mean(torch::stack(tiles));
  std::string steps_text;
  for (size_t j = 0; j < at.size(); ++j) steps_text += (j ? ", " : "") + std::to_string(at[j]);
  std::string out = "<div class=\"figures\">\n";
  out += image_figure(png_grid_bytes(as_images(means, run.data.image_shape), static_cast<int64_t>(at.size())),
                      "Langevin chains",
                      "Each row one chain from the base N(0, I) (left) towards the prior: decoder means after " +
                          steps_text + " steps (" + EnergyPrior::describe_default_sampling() + ", noise " +
                          report::number_text(options.noise(), 1) + ").");
  report::Chart trace("Langevin trace (" + std::to_string(kChains) + " chains)", "step", "mean over the chains");
  trace.add(energy).add(grad);
  out += report::chart_figure(trace, "The potential and its gradient's norm, averaged over " + std::to_string(kChains) +
                                         " chains drawn for this page.",
                              "The sampler recorded no trace.");
  return out + "</div>\n";
}

// Posterior means of up to 2,000 test images, by label, in 2-D (PCA when the latent is larger).
std::string latent_space(LoadedRun& run) {
  const auto& test = run.data.test;
  const int64_t n = std::min<int64_t>(2000, test.size());
  if (n < 2) return note("Fewer than 2 test images: no latent-space plot.");
  std::vector<torch::Tensor> parts;
  for (int64_t start = 0; start < n; start += 500)  // bounded memory for the conv encoder
    parts.push_back(run.model->encoder->forward(test.images.narrow(0, start, std::min<int64_t>(500, n - start)).to(run.device))
                        .mean()
                        .to(torch::kCPU, torch::kDouble));
  const auto mu = torch::cat(parts);
  const int64_t d = mu.size(1);
  torch::Tensor xy;
  std::string how, x_label = "z1", y_label = "z2";
  if (d == 1) {
    xy = torch::cat({mu, torch::zeros_like(mu)}, 1);
    how = "the latent is one-dimensional: the means lie on the x axis";
    y_label = "(none)";
  } else if (d == 2) {
    xy = mu;
    how = "the latent's own two coordinates";
  } else {
    // PCA: the two directions of largest variance of the means.
    const auto centred = mu - mu.mean(0, true);
    const auto covariance = centred.t().mm(centred) / static_cast<double>(n - 1);
    const auto [values, vectors] = torch::linalg_eigh(covariance, "L");  // ascending
    xy = centred.mm(vectors.narrow(1, d - 2, 2).flip({1}));
    const double total = values.sum().item<double>();
    const double explained = (values[d - 1].item<double>() + values[d - 2].item<double>()) / std::max(total, 1e-300);
    how = "projected on the first two principal components of the " + std::to_string(d) +
          "-dimensional means, which hold " + report::number_text(100 * explained, 1) + "% of their variance";
    x_label = "PC 1";
    y_label = "PC 2";
  }
  const auto xs = xy.select(1, 0).contiguous(), ys = xy.select(1, 1).contiguous();
  const double* px = xs.data_ptr<double>();
  const double* py = ys.data_ptr<double>();
  std::map<int64_t, report::Series> by_label;
  const bool labelled = test.labels.defined();
  const auto labels = labelled ? test.labels.narrow(0, 0, n).to(torch::kCPU, torch::kLong).contiguous() : torch::Tensor();
  for (int64_t i = 0; i < n; ++i) {
    const int64_t label = labelled ? labels.data_ptr<int64_t>()[i] : 0;
    auto& s = by_label[label];
    s.x.push_back(px[i]);
    s.y.push_back(py[i]);
  }
  report::Chart chart("Latent space: posterior means of " + std::to_string(n) + " test images", x_label, y_label);
  chart.size(560, 440);
  for (auto& [label, s] : by_label) {
    s.name = labelled ? "label " + std::to_string(label) : "test images (no labels)";
    s.line = false;
    s.markers = true;
    s.marker_radius = 1.8;
    s.colour = report::palette_colour(static_cast<size_t>(std::max<int64_t>(label, 0)));
    chart.add(s);
  }
  return report::chart_figure(chart, "Encoder means (mu) of the first " + std::to_string(n) + " test images, " + how +
                                         (labelled ? ", coloured by label." : "."),
                              "No finite posterior means.");
}

// The model's sections of one run, from one load of the model, each started only while the
// run's time (--model-seconds, the load included) lasts.
ModelSections model_sections(const report::RunFiles& files, LoadedRun* loaded, const std::string& checkpoint,
                             const CommonConfig& common, double budget, uint64_t seed) {
  const auto t0 = clock_type::now();
  ModelSections out;
  // The run's own sample grids, when `vae-ebm sample` wrote them.
  for (const auto& name : files.sample_pngs)
    out.samples += image_figure(report::read_run_file(files.dir + "/samples/" + name, report::kMaxPngBytes), name,
                                "samples/" + name + " (written by vae-ebm sample).");
  std::optional<LoadedRun> own;
  LoadedRun* run = loaded;
  if (!run) {
    try {
      own = load_run(files.dir, checkpoint, common);
      run = &*own;
    } catch (const std::exception& e) {
      std::string what = e.what();
      what = without_backtrace(what);
      std::fprintf(stderr, "report: %s: the model could not be loaded (%s); its sections are left out\n",
                   files.dir.c_str(), what.c_str());
      const auto missing = note("Left out: the model (checkpoint " + checkpoint + ") could not be loaded: " + what);
      if (out.samples.empty()) out.samples = missing;
      out.chains = out.latent = missing;
      return out;
    }
  }
  torch::NoGradGuard no_grad;
  auto* ebm = dynamic_cast<EnergyPrior*>(run->model->prior.get());
  // The default sampling, whatever the loading command set (evaluate's --langevin-noise).
  if (ebm) ebm->sampling_options() = EnergyPrior::default_sampling();
  auto within_budget = [&](std::string& section, const std::function<std::string()>& make) {
    if (seconds_since(t0) > budget) {
      section = note("Left out: this run's model sections had used " + report::number_text(seconds_since(t0), 1) +
                     " s of the " + report::number_text(budget, 0) + " s they may take (--model-seconds).");
      return;
    }
    section = make();
  };
  if (out.samples.empty()) within_budget(out.samples, [&] { return generated_samples(*run, seed); });
  if (ebm) within_budget(out.chains, [&] { return langevin_chains(*run, *ebm, seed); });
  within_budget(out.latent, [&] { return latent_space(*run); });
  std::fprintf(stderr, "report: %s: the model's sections (images, chains, latent space) in %.1f s\n", files.dir.c_str(), seconds_since(t0));
  return out;
}

// ---- The page ------------------------------------------------------------------------------

std::string run_section(const RunView& view, size_t index, const ModelSections& model) {
  const auto& run = view.files;
  std::string s = "<section class=\"run\" id=\"run-" + std::to_string(index) + "\">\n<h2>Run " +
                  report::html_escape(view.label) + "</h2>\n" + report::note(run.dir) + report::summary_html(run);
  s += "<h3>Events</h3>\n" + report::events_html(run);
  s += "<h3>Evaluation</h3>\n" + report::evaluations_html(run);
  s += "<h3>Training</h3>\n" + report::training_html(run);
  if (report::is_energy_prior(run)) s += "<h3>Langevin traces in training</h3>\n" + report::langevin_metrics_html(run);
  s += "<h3>Samples and reconstructions</h3>\n<div class=\"figures\">\n" + model.samples + "</div>\n";
  if (report::is_energy_prior(run)) s += "<h3>Langevin chains</h3>\n" + model.chains;
  s += "<h3>Latent space</h3>\n" + model.latent;
  s += "<h3>Configuration</h3>\n" + report::config_html(run);
  return s + "</section>\n";
}

std::string utc_now() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buffer[32];
  std::strftime(buffer, sizeof buffer, "%Y-%m-%d %H:%M UTC", &tm);
  return buffer;
}

// A run's evaluation.json and per-image bounds, as the comparison reads them.
report::EvaluatedRun evaluated_run(const RunView& view) {
  const auto& files = view.files;
  if (!files.evaluation_json)
    throw DataError(files.dir + " has no evaluation.json to compare: evaluate it first (vae-ebm evaluate " + files.dir + ")");
  report::EvaluatedRun e;
  e.label = view.label;
  e.record = *files.evaluation_json;
  e.binarisation_seed = files.config_value("binarisation-seed");
  const auto h5 = files.records_dir + "/evaluation-" + e.record.text("split") + ".h5";
  if (!file_exists(h5))
    throw DataError(h5 + " (the per-image bounds beside evaluation.json) is missing: evaluate " + files.dir + " again");
  if (const auto* estimates = e.record.find("estimates"); estimates && estimates->is_array())
    for (const auto& estimate : estimates->as_array()) {
      const auto name = estimate.text("estimator");
      if (report::bound_kind(name).empty() || !h5_has(h5, name)) continue;
      const auto values = h5_read(h5, name).to(torch::kCPU, torch::kDouble).reshape({-1}).contiguous();
      e.per_image[name].assign(values.data_ptr<double>(), values.data_ptr<double>() + values.numel());
    }
  if (e.per_image.empty())
    throw DataError(h5 + " holds none of the per-image bounds evaluation.json names: evaluate " + files.dir + " again");
  return e;
}

// The labels the tables use: each run directory's name or, where names agree, the fewest last
// components of its path that tell it apart (a/ais and b/ais, not a path and "ais").
std::vector<std::string> labels_of(const std::vector<std::string>& dirs) {
  std::vector<std::vector<std::string>> parts;  // each path's components, last first
  for (const auto& d : dirs) {
    auto p = fs::path(d).lexically_normal();
    if (p.filename().empty()) p = p.parent_path();
    std::vector<std::string> reversed;
    for (const auto& c : p) reversed.insert(reversed.begin(), c.string());
    parts.push_back(std::move(reversed));
  }
  auto suffix = [&](size_t i, size_t k) {  // the last k components of path i, as a path
    std::string out;
    for (size_t c = std::min(k, parts[i].size()); c-- > 0;) out += (out.empty() || out == "/" ? "" : "/") + parts[i][c];
    return out;
  };
  std::vector<std::string> names;
  for (size_t i = 0; i < dirs.size(); ++i) {
    size_t k = 1;
    for (;; ++k) {
      bool unique = true;
      for (size_t j = 0; j < dirs.size() && unique; ++j) unique = j == i || suffix(j, k) != suffix(i, k);
      if (unique || k >= parts[i].size()) break;
    }
    names.push_back(suffix(i, k));
  }
  return names;
}

struct PageOptions {
  std::string checkpoint = "best";
  double model_seconds = 60;
  uint64_t seed = 1;
  bool require_evaluation = true;
  LoadedRun* loaded = nullptr;  // the one run's model, already loaded
};

std::string build_page(const std::vector<RunView>& views, size_t baseline, const CommonConfig& common,
                       const PageOptions& options) {
  if (options.require_evaluation)
    for (const auto& v : views)
      if (v.files.evaluations.empty())
        throw DataError(v.files.dir + " has no evaluation record (evaluation.json or evaluations/*.json): evaluate it "
                        "first (vae-ebm evaluate " + v.files.dir + ")");
  std::string labels_text, nav;
  for (size_t i = 0; i < views.size(); ++i) {
    labels_text += (i ? ", " : "") + views[i].label;
    nav += "<a href=\"#run-" + std::to_string(i) + "\">" + report::html_escape(views[i].label) + "</a>";
  }
  std::string body = "<h1>vae-ebm report: " + report::html_escape(labels_text) + "</h1>\n";
  body += report::note("Made by vae-ebm " VAE_EBM_VERSION " on " + utc_now() +
                       ". Every number is the run's own record (metrics.jsonl, the evaluation records) with its "
                       "standard error; the images, chains and latent space are drawn for this page from checkpoint '" +
                       options.checkpoint + "' with seed " + std::to_string(options.seed) + ".");
  if (views.size() > 1) {
    body += "<nav>" + nav + "</nav>\n";
    std::vector<report::EvaluatedRun> evaluated;
    for (const auto& v : views) evaluated.push_back(evaluated_run(v));
    std::vector<const report::RunFiles*> files;
    std::vector<std::string> labels;
    for (const auto& v : views) files.push_back(&v.files), labels.push_back(v.label);
    body += "<section id=\"comparison-section\">\n<h2>Comparison</h2>\n" +
            report::comparison_table(evaluated, baseline).html() + report::validation_overlay_html(files, labels);
    const auto flags = report::differing_flags(files, labels);
    body += flags.rows.empty() ? report::note("The runs' config.ini agree on every flag but run-dir.") : flags.html();
    body += "</section>\n";
  }
  for (size_t i = 0; i < views.size(); ++i) {
    const auto model = model_sections(views[i].files, options.loaded, options.checkpoint, common,
                                      options.model_seconds, options.seed);
    body += run_section(views[i], i, model);
  }
  return report::html_page("vae-ebm report: " + labels_text, body);
}

// A bad output path fails before anything is computed (check_writable names the cause).
void check_output(const std::string& path) {
  const auto parent = fs::path(path).parent_path();
  check_writable(parent.empty() ? "." : parent.string());
}

}  // namespace

bool parse_report(const std::vector<std::string>& args, ReportConfig& c) {
  po::options_description d("report flags");
  d.add_options()
      ("help,h", "show this help")
      ("run", po::value(&c.runs), "run directories (positional)")
      ("out", po::value(&c.out)->default_value(c.out),
       "file to write (html: default RUN/report.html for one run; markdown, latex: default stdout)")
      ("baseline", po::value(&c.baseline)->default_value(c.baseline),
       "run the paired gains are measured against (default: the first run)")
      ("format", po::value(&c.format)->default_value(c.format),
       "html (the whole page), markdown or latex (the comparison table, for a paper)")
      ("checkpoint", po::value(&c.checkpoint)->default_value(c.checkpoint),
       "best, latest or a path: the model behind the images, chains and latent space")
      ("model-seconds", real(&c.model_seconds, c.model_seconds),
       "seconds each run's model sections (images, chains, latent space) may take, loading included; those not "
       "started by then are left out with a note")
      ("seed", po::value(&c.seed)->default_value(c.seed), "seed of the prior samples and chains drawn for the page");
  add_common(d, c.common);
  po::positional_options_description positional;
  positional.add("run", -1);
  po::variables_map vm;
  if (!parse(args, d, positional, vm,
             "usage: vae-ebm report RUN [RUN...] [--out report.html] [--baseline RUN] [--format html|markdown|latex]\n"
             "One self-contained HTML page: training curves, evaluation tables, samples, Langevin chains, the latent\n"
             "space and, for several runs, the paired comparison of their test bounds."))
    return false;
  notify_all(vm);
  if (c.runs.empty()) throw UsageError("report needs at least one run directory: vae-ebm report RUN [RUN...]");
  check_choice("--format", c.format, {"html", "markdown", "latex"});
  if (!(c.model_seconds >= 0)) throw UsageError("--model-seconds must be >= 0, got " + shortest(c.model_seconds));
  if (c.format == "html" && c.out.empty() && c.runs.size() > 1)
    throw UsageError("a report of several runs needs --out FILE.html (one run's goes to RUN/report.html)");
  return true;
}

int run_report(const ReportConfig& c) {
  const auto t0 = clock_type::now();
  // The runs, each once (a run given twice, or as --baseline too, is read once), the baseline first
  // when it is not among them.
  std::vector<std::string> dirs;
  auto key = [](const std::string& d) { return fs::weakly_canonical(fs::path(d)).string(); };
  auto add = [&](const std::string& d) {
    if (std::none_of(dirs.begin(), dirs.end(), [&](const std::string& x) { return key(x) == key(d); })) dirs.push_back(d);
  };
  if (!c.baseline.empty()) {
    const bool listed = std::any_of(c.runs.begin(), c.runs.end(), [&](const std::string& r) { return key(r) == key(c.baseline); });
    if (!listed) add(c.baseline);
  }
  for (const auto& r : c.runs) add(r);
  const auto labels = labels_of(dirs);
  std::vector<RunView> views;
  for (size_t i = 0; i < dirs.size(); ++i) views.push_back({labels[i], report::read_run_files(dirs[i])});
  size_t baseline = 0;
  if (!c.baseline.empty())
    for (size_t i = 0; i < dirs.size(); ++i)
      if (key(dirs[i]) == key(c.baseline)) baseline = i;

  if (c.format != "html") {
    std::vector<report::EvaluatedRun> evaluated;
    for (const auto& v : views) evaluated.push_back(evaluated_run(v));
    const auto text = report::comparison_table(evaluated, baseline).render(report::table_format(c.format));
    if (c.out.empty()) {
      std::printf("%s", report::printable(text).c_str());
    } else {
      check_output(c.out);
      atomic_write(c.out, text);
      std::fprintf(stderr, "wrote %s\n", c.out.c_str());
    }
    return 0;
  }
  if (c.out.empty() && dirs.size() > 1)  // one run and another as --baseline
    throw UsageError("a report of several runs needs --out FILE.html (one run's goes to RUN/report.html)");
  const auto out = c.out.empty() ? dirs[0] + "/report.html" : c.out;
  check_output(out);
  PageOptions options;
  options.checkpoint = c.checkpoint;
  options.model_seconds = c.model_seconds;
  options.seed = c.seed;
  const auto page = build_page(views, baseline, c.common, options);
  atomic_write(out, page);
  std::printf("wrote %s (%.0f KB, %.1f s)\n", out.c_str(), page.size() / 1024.0, seconds_since(t0));
  return 0;
}

std::string write_run_report(const std::string& run_dir, const CommonConfig& common, const RunReportOptions& options) {
  const auto records = options.records_dir.empty() ? run_dir : options.records_dir;
  std::vector<RunView> views{{labels_of({run_dir})[0], report::read_run_files(run_dir, records)}};
  PageOptions page;
  page.checkpoint = options.checkpoint;
  page.require_evaluation = options.require_evaluation;
  page.loaded = options.loaded;
  const auto path = records + "/report.html";
  check_output(path);
  atomic_write(path, build_page(views, 0, common, page));
  return path;
}

Command report_command() {
  return command_of("report", "one self-contained HTML page of runs (curves, tables, images), or their comparison table",
                    parse_report, run_report);
}

}  // namespace vae_ebm::cli
