#include <torch/torch.h>

#include "apps/cli.h"

#include <torch/version.h>

#include <boost/any.hpp>
#include <boost/program_options.hpp>
#include <boost/version.hpp>
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>

#include "apps/flags.h"
#include "apps/run_support.h"
#include "common/registry.h"
#include "data/dataset.h"
#include "data/run_config.h"
#include "data/run_dir.h"

namespace vae_ebm::cli {

namespace po = boost::program_options;

namespace {

std::string join(const std::vector<std::string>& items, const std::string& sep = ", ") { return join_names(items, sep); }

// Renders a parsed value in config-file syntax.
std::string value_text(const boost::any& v) {
  if (auto p = boost::any_cast<std::string>(&v)) return *p;
  if (auto p = boost::any_cast<int64_t>(&v)) return std::to_string(*p);
  if (auto p = boost::any_cast<uint64_t>(&v)) return std::to_string(*p);
  if (auto p = boost::any_cast<int>(&v)) return std::to_string(*p);
  if (auto p = boost::any_cast<bool>(&v)) return *p ? "true" : "false";
  if (auto p = boost::any_cast<double>(&v)) return shortest(*p);
  return "?";
}

using Resolved = std::vector<std::pair<std::string, std::string>>;

Resolved resolve(const po::options_description& desc, const po::variables_map& vm,
                 const std::vector<std::string>& skip) {
  Resolved out;
  for (const auto& opt : desc.options()) {
    const auto& name = opt->long_name();
    if (std::find(skip.begin(), skip.end(), name) != skip.end()) continue;
    if (vm.count(name)) out.emplace_back(name, value_text(vm[name].value()));
  }
  return out;
}

void set_resolved(Resolved& r, const std::string& key, const std::string& value) {
  for (auto& kv : r)
    if (kv.first == key) {
      kv.second = value;
      return;
    }
  r.emplace_back(key, value);
}

std::string render(const Resolved& r, const std::string& command) {
  RunConfig config;
  config.add_comments({std::string("vae-ebm ") + VAE_EBM_VERSION + " resolved configuration (" + command + ")",
                       "LibTorch " + std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) +
                           "." + std::to_string(TORCH_VERSION_PATCH) + ", Boost " + BOOST_LIB_VERSION,
                       "Repeat this run with: vae-ebm train --config THIS_FILE --run-dir NEW_DIR"});
  for (const auto& [k, v] : r) config.set(k, v);
  return config.text();
}



// Keys that only the command line may give: a config file naming the run to resume (or another
// config file) would bypass the checks that --resume makes, build the model from the file's flags
// and meet the run's checkpoints with it.
const std::vector<std::string> kCommandLineOnly = {"resume", "config"};

void store_config_file(const std::string& path, const po::options_description& desc, po::variables_map& vm,
                       const std::vector<std::string>& keep_only = {}) {
  if (!std::filesystem::is_regular_file(path)) throw UsageError("config file '" + path + "' is not a file");
  std::ifstream in(path);
  if (!in) throw UsageError("cannot read config file '" + path + "'");
  try {
    // With keep_only (a parent's config read by fit-prior) the keys this command does not
    // know are dropped rather than refused.
    auto parsed = po::parse_config_file(in, desc, /*allow_unregistered=*/!keep_only.empty());
    if (keep_only.empty())
      for (const auto& o : parsed.options)
        if (std::find(kCommandLineOnly.begin(), kCommandLineOnly.end(), o.string_key) != kCommandLineOnly.end())
          throw UsageError("config file '" + path + "' sets '" + o.string_key + "', which only the command line may give" +
                           (o.string_key == "resume" ? ": vae-ebm train --resume RUN_DIR (the run's own config.ini says the rest)"
                                                     : ""));
    if (!keep_only.empty()) {
      std::vector<po::option> kept;
      for (auto& o : parsed.options)
        if (std::find(keep_only.begin(), keep_only.end(), o.string_key) != keep_only.end()) kept.push_back(o);
      parsed.options = kept;
    }
    po::store(parsed, vm);
  } catch (po::error& e) {
    throw UsageError("config file '" + path + "': " + po_error_text(e));
  }
}


// Every objective's options, as the objectives declare them (prior/objective.h): one flag each,
// its help led by the objectives that read it, its value kept as text in `values` (numbers in
// their shortest form, so that config.ini and a resumed run compare them as they read).
void add_objective_flags(po::options_description& d, OptionValues& values) {
  for (const auto& option : all_objective_options()) {
    const auto& spec = option.spec;
    const std::string help = join(option.objectives) + ": " + spec.help;
    const auto name = spec.name;
    auto keep = [&values, name](const std::string& text) { values.set(name, text); };
    switch (spec.type) {
      case OptionType::integer:
        d.add_options()(name.c_str(),
                        po::value<int64_t>()
                            ->default_value(option_integer(name, spec.default_text))
                            ->notifier([keep](int64_t v) { keep(option_text(v)); }),
                        help.c_str());
        break;
      case OptionType::real: {
        const double fallback = option_real(name, spec.default_text);
        d.add_options()(name.c_str(),
                        po::value<double>()
                            ->default_value(fallback, spec.default_text)
                            ->notifier([keep](double v) { keep(option_text(v)); }),
                        help.c_str());
        break;
      }
      case OptionType::flag:
        d.add_options()(name.c_str(),
                        po::value<bool>()
                            ->default_value(option_flag(name, spec.default_text))
                            ->implicit_value(true)
                            ->notifier([keep](bool v) { keep(option_text(v)); }),
                        help.c_str());
        break;
      case OptionType::text:
        d.add_options()(name.c_str(),
                        po::value<std::string>()->default_value(spec.default_text)->notifier(keep),
                        help.c_str());
        break;
    }
  }
}

po::options_description train_description(TrainConfig& c, bool fit_prior) {
  po::options_description d(fit_prior ? "fit-prior flags" : "train flags");
  auto& t = c.train;
  d.add_options()("help,h", "show this help");
  if (!fit_prior) {
    d.add_options()
        ("config", po::value<std::string>(), "read flags from a config file (key=value lines); the command line wins")
        ("resume", po::value(&c.resume), "continue the run in this directory exactly where it stopped");
  }
  d.add_options()
      ("run-dir", po::value(&c.run_dir)->default_value(c.run_dir), "run directory to create (default runs/DATASET-PRIOR-TIME)")
      ("dataset", po::value(&c.dataset)->default_value(c.dataset),
       ("data set: " + join(dataset_names())).c_str())
      ("binarisation-seed", po::value(&c.binarisation_seed)->default_value(c.binarisation_seed), "key of the static binarisation")
      ("architecture", po::value(&c.architecture)->default_value(c.architecture),
       ("encoder/decoder: " + join(architectures()) +
        " (conv: the SNL reference networks for 1x28x28 images, the conv family for other C x H x W)").c_str())
      ("hidden", po::value(&c.hidden)->default_value(c.hidden), "MLP hidden widths, comma-separated")
      ("activation", po::value(&c.activation)->default_value(c.activation), ("MLP activation: " + join(activations())).c_str())
      ("conv-width", po::value(&c.conv_width)->default_value(c.conv_width),
       "conv family (images other than 1x28x28): base channels w; the decoder starts at 8w, the encoder at w")
      ("latent", po::value(&c.latent)->default_value(c.latent), "latent dimension D")
      ("likelihood", po::value(&c.likelihood.kind())->default_value(c.likelihood.kind()),
       ("p(x|z): " + join(likelihood_kinds()) + " (bernoulli for binary data, logistic for 8-bit levels, gaussian for continuous values)").c_str())
      ("likelihood-variance", po::value(&c.likelihood.variance())->default_value(c.likelihood.variance()),
       "gaussian: fixed (--likelihood-sigma) or learned (one sigma per value)")
      ("likelihood-sigma", real(&c.likelihood.sigma(), c.likelihood.sigma()), "gaussian, fixed variance: the standard deviation")
      ("likelihood-min-sigma", real(&c.likelihood.min_sigma(), c.likelihood.min_sigma()), "gaussian, learned variance: the floor of each sigma")
      ("likelihood-range", po::value(&c.likelihood.range())->default_value(c.likelihood.range()),
       "gaussian: the data as the density sees them: 0,1 or -1,1 (2x - 1, as in Pang et al.)")
      ("likelihood-mixture", po::value(&c.likelihood.mixture())->default_value(c.likelihood.mixture()),
       "logistic: discretised logistics per value (1: one)")
      ("prior", po::value(&c.prior)->default_value(c.prior), ("prior: " + join(prior_kinds())).c_str())
      ("mog-components", po::value(&c.mog_components)->default_value(c.mog_components), "mixture prior: components")
      ("flow-layers", po::value(&c.flow_layers)->default_value(c.flow_layers), "flow prior: affine coupling layers")
      ("flow-hidden", po::value(&c.flow_hidden)->default_value(c.flow_hidden), "flow prior: width of each coupling's conditioner")
      ("energy-hidden", po::value(&c.energy_hidden)->default_value(c.energy_hidden), "energy MLP hidden widths")
      ("energy-slope", real(&c.energy_slope, c.energy_slope), "energy MLP LeakyReLU slope")
      ("objective", po::value(&c.objective)->default_value(c.objective),
       ("prior objective: " + join(objective_names()) + " (default: exact for gaussian/mog, snelbo for ebm)").c_str())
      ("refine-steps", po::value(&t.refine_steps())->default_value(t.refine_steps()), "ebm: posterior refinement, Langevin steps on -log p(x|z) + U(z) (0: off)")
      ("refine-step-size", real(&t.refine_step_size(), t.refine_step_size()), "ebm: posterior refinement step size")
      ("epochs", po::value(&t.epochs())->default_value(t.epochs()), "training epochs")
      ("max-steps", po::value(&t.max_steps())->default_value(t.max_steps()), "stop after this many steps (0: no limit)")
      ("time-budget", real(&t.time_budget(), t.time_budget()), "stop after this many seconds of training steps, validation excluded (0: none)")
      ("batch-size", po::value(&t.batch_size())->default_value(t.batch_size()), "images per step")
      ("lr", real(&t.lr(), t.lr()), "Adam learning rate of encoder and decoder")
      ("prior-lr", real(&t.prior_lr(), t.prior_lr()), "Adam learning rate of the prior")
      ("beta1", real(&t.beta1(), t.beta1()), "Adam beta1")
      ("beta2", real(&t.beta2(), t.beta2()), "Adam beta2")
      ("lr-decay", real(&t.lr_decay(), t.lr_decay()), "learning rates times this each epoch")
      ("samples", po::value(&t.samples())->default_value(t.samples()), "posterior samples K per image")
      ("seed", po::value(&t.seed())->default_value(t.seed()), "seed of initialisation, shuffling and sampling")
      ("eval-every", po::value(&t.eval_every())->default_value(t.eval_every()), "epochs between validations")
      ("eval-samples", po::value(&c.eval_samples)->default_value(c.eval_samples), "posterior samples K of the validation bound")
      ("log-z-samples", po::value(&c.log_z_samples)->default_value(c.log_z_samples), "base samples for log Z at validation (ebm)")
      ("validation-log-z", po::value(&c.validation_log_z)->default_value(c.validation_log_z),
       "log Z of an energy prior at validation: is (importance sampling from the base, --log-z-samples) or ais "
       "(forward AIS, which finds mass that base samples miss)")
      ("validation-ais-chains", po::value(&c.validation_ais_chains)->default_value(c.validation_ais_chains), "validation ais: chains")
      ("validation-ais-temperatures", po::value(&c.validation_ais_temperatures)->default_value(c.validation_ais_temperatures),
       "validation ais: temperatures")
      ("keep-checkpoints", po::value(&t.keep_checkpoints())->default_value(t.keep_checkpoints()), "step checkpoints kept besides best.pt")
      ("log-every", real(&t.log_every_seconds(), t.log_every_seconds()), "seconds between progress lines off a terminal")
      ("on-divergence", po::value(&c.on_divergence)->default_value(c.on_divergence),
       "when a loss, bound or log Z is not finite or explodes: stop (naming the likely cause), rollback to the "
       "newest checkpoint with a lowered rate, or warn (a finite training-loss spike is logged and the step taken)")
      ("max-rollbacks", po::value(&t.max_rollbacks())->default_value(t.max_rollbacks()), "rollback: at most this many, then stop")
      ("rollback-factor", real(&t.rollback_factor(), t.rollback_factor()), "rollback: the lowered rate is the old one times this")
      ("rollback-lower", po::value(&t.rollback_lower())->default_value(t.rollback_lower()),
       "rollback: the rate to lower: auto (the likely cause: mcmc-step-size for MCMC objectives, prior-lr for other "
       "energy priors, else lr), lr, prior-lr or mcmc-step-size")
      ("report", po::value<bool>(&c.report)->default_value(c.report)->implicit_value(true),
       "at the end, (re)write RUN/report.html: the run's page (vae-ebm report)");
  add_objective_flags(d, c.objective_values);
  if (!fit_prior) {
    d.add_options()
        ("detach-posterior", po::value<bool>()->default_value(false)->implicit_value(true),
         "train the VAE on the Gaussian ELBO and fit the prior to detached posterior samples")
        ("mode", po::value(&c.mode)->default_value(c.mode), "joint, detach-posterior or post-hoc (set by fit-prior)")
        ("init-from", po::value(&c.init_from)->default_value(c.init_from), "checkpoint whose encoder and decoder start the model")
        ("init-prior", po::value<bool>(&c.init_prior)->default_value(c.init_prior)->implicit_value(true),
         "with --init-from, start the prior (and b) from the checkpoint too: it must be the same kind and shape")
        ("parent", po::value(&c.parent)->default_value(c.parent), "the run a post-hoc prior was fitted to (set by fit-prior)");
  }
  d.add_options()
      ("dist-timeout", real(&c.dist_timeout, c.dist_timeout),
       "data-parallel training (torchrun): seconds that meeting the other processes, or any one exchange with them "
       "(rank 0's validation among them), may take before the run stops with an error");
  add_common(d, c.common);
  add_nproc(d, c.common);
  return d;
}

std::string default_run_dir(const TrainConfig& c) {
  auto now = std::time(nullptr);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", std::localtime(&now));
  std::string data = c.dataset.rfind("hdf5:", 0) == 0 ? "hdf5" : c.dataset;
  return "runs/" + data + "-" + c.prior + "-" + stamp;
}

}  // namespace

std::string widths_text(const std::vector<int64_t>& widths) {
  std::string out;
  for (auto w : widths) out += (out.empty() ? "" : ",") + std::to_string(w);
  return out;
}

std::vector<int64_t> parse_widths(const std::string& text, const std::string& flag) {
  std::vector<int64_t> out;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    try {
      size_t used = 0;
      auto v = std::stoll(item, &used);
      if (used != item.size() || v < 1) throw std::invalid_argument(item);
      out.push_back(v);
    } catch (const std::exception&) {
      throw UsageError("--" + flag + " expects comma-separated positive integers, got '" + text + "'");
    }
  }
  if (out.empty())
    throw UsageError("--" + flag + " expects comma-separated positive integers (at least one), got '" + text + "'");
  return out;
}

NetworkOptions TrainConfig::network_options(const std::vector<int64_t>& image_shape) const {
  return NetworkOptions()
      .architecture(architecture)
      .hidden(parse_widths(hidden, "hidden"))
      .activation(activation)
      .conv_width(conv_width)
      .latent_dim(latent)
      .image_shape(image_shape);
}

PriorOptions TrainConfig::prior_options() const {
  return PriorOptions(prior, latent)
      .mog_components(mog_components)
      .energy_hidden(parse_widths(energy_hidden, "energy-hidden"))
      .energy_slope(energy_slope)
      .flow_layers(flow_layers)
      .flow_hidden(flow_hidden);
}

std::string TrainConfig::objective_name() const { return objective.empty() ? default_objective(prior) : objective; }

namespace {

// The flags a resumed run may be given: how long it goes on, where it runs, and the rates that
// may need lowering after a divergence (recorded in the "resumed" event). Every other
// flag is the run's config.ini, so that a checkpoint never meets a model, objective or
// schedule it was not made with.
const std::vector<std::string> kResumable = {
    "epochs",   "max-steps", "time-budget", "log-every",     "keep-checkpoints", "threads",
    "device",   "data-dir",  "blas-kernel", "lr",            "prior-lr",         "mcmc-step-size",
    "on-divergence", "max-rollbacks", "rollback-factor", "rollback-lower", "report", "dist-timeout", "nproc",
    "allow-large-work"};

void check_resume_flags(const po::variables_map& vm, const std::string& dir) {
  for (const auto& [name, value] : vm) {
    if (value.defaulted() || name == "resume") continue;
    if (name == "config")
      throw UsageError("--resume takes the run's flags from " + dir + "/config.ini; it cannot be combined with --config");
    if (std::find(kResumable.begin(), kResumable.end(), name) == kResumable.end())
      throw UsageError("--" + name + " cannot change when resuming: the run continues as " + dir +
                       "/config.ini says (with --resume only --" + join(kResumable, ", --") + " may be given)");
  }
}

// The validation flags of train and fit-prior, and the objective's options (its factory
// validates them: a bad value is refused here, before a run directory is made).
void check_validation_flags(const TrainConfig& c) {
  as_usage([&] { c.likelihood.validate(); });
  as_usage([&] { make_objective(c.objective_name(), c.objective_values); });
  if (c.eval_samples < 1) throw UsageError("--eval-samples must be >= 1, got " + std::to_string(c.eval_samples));
  if (c.log_z_samples < 1) throw UsageError("--log-z-samples must be >= 1, got " + std::to_string(c.log_z_samples));
  check_choice("--validation-log-z", c.validation_log_z, log_z_method_names());
  if (c.validation_ais_chains < 1)
    throw UsageError("--validation-ais-chains must be >= 1, got " + std::to_string(c.validation_ais_chains));
  if (c.validation_ais_temperatures < 1)
    throw UsageError("--validation-ais-temperatures must be >= 1, got " + std::to_string(c.validation_ais_temperatures));
}

}  // namespace

bool parse_train(const std::vector<std::string>& args, TrainConfig& c) {
  auto desc = train_description(c, false);
  po::positional_options_description none;
  po::variables_map vm;
  if (!parse(args, desc, none, vm,
             "usage: vae-ebm train [flags]\n"
             "Trains an encoder, a decoder and a prior jointly; writes a run directory."))
    return false;
  if (vm.count("resume")) {
    auto dir = vm["resume"].as<std::string>();
    if (!std::filesystem::exists(dir + "/config.ini"))
      throw UsageError("--resume " + dir + ": not a run directory (no config.ini)" +
                       (std::filesystem::is_directory(dir) && unstarted_run(dir)
                            ? std::string("; its run was stopped before its config.ini was written, so it has nothing "
                                          "to resume: start it again with the command that made it (vae-ebm train "
                                          "--run-dir ") + dir + " ...), which reuses the directory"
                            : std::string()));
    check_resume_flags(vm, dir);
    po::variables_map saved;
    store_config_file(dir + "/config.ini", desc, saved);
    for (const auto& name : kResumable)
      if (vm.count(name) && !vm[name].defaulted()) {
        auto was = saved.count(name) ? value_text(saved[name].value()) : std::string("(unset)");
        auto now = value_text(vm[name].value());
        if (was != now) c.resume_changes.push_back({name, {was, now}});
      }
    store_config_file(dir + "/config.ini", desc, vm);
  } else if (vm.count("config")) {
    store_config_file(vm["config"].as<std::string>(), desc, vm);
  }
  notify_all(vm);
  if (vm["detach-posterior"].as<bool>()) {
    if (!vm["mode"].defaulted() && c.mode != "detach-posterior")
      throw UsageError("--detach-posterior contradicts --mode " + c.mode);
    c.mode = "detach-posterior";
  }
  c.train.mode(as_usage([&] { return train_mode_from(c.mode); }));
  c.train.on_divergence(as_usage([&] { return divergence_policy_from(c.on_divergence); }));
  check_validation_flags(c);
  if (c.init_prior && c.init_from.empty()) throw UsageError("--init-prior needs --init-from CHECKPOINT");
  if (!c.resume.empty()) c.run_dir = c.resume;
  if (c.run_dir.empty()) c.run_dir = default_run_dir(c);
  // --nproc is how the run was started, not what it is: config.ini leaves it out.
  auto resolved = resolve(desc, vm, {"help", "config", "resume", "detach-posterior", "nproc"});
  set_resolved(resolved, "run-dir", c.run_dir);
  set_resolved(resolved, "mode", c.mode);
  c.config_text = render(resolved, "train");
  return true;
}

bool parse_fit_prior(const std::vector<std::string>& args, TrainConfig& c) {
  auto desc = train_description(c, true);
  desc.add_options()("parent-run", po::value<std::string>(), "the trained VAE's run directory");
  po::positional_options_description pos;
  pos.add("parent-run", 1);
  po::variables_map vm;
  if (!parse(args, desc, pos, vm,
             "usage: vae-ebm fit-prior PARENT_RUN --prior ebm|mog [--run-dir DIR] [flags]\n"
             "Freezes the parent's encoder and decoder and fits a new prior to its aggregate posterior.\n"
             "Network and data flags come from the parent's config.ini."))
    return false;
  if (!vm.count("parent-run")) throw UsageError("fit-prior needs the parent run directory: vae-ebm fit-prior RUN_DIR --prior ebm");
  if (vm["prior"].defaulted()) throw UsageError("fit-prior needs --prior ebm or --prior mog");
  auto parent = vm["parent-run"].as<std::string>();
  if (!std::filesystem::exists(parent + "/config.ini"))
    throw UsageError("fit-prior: '" + parent + "' is not a run directory (no config.ini)");
  // Only what defines the networks and the data comes from the parent.
  store_config_file(parent + "/config.ini", desc, vm,
                    {"dataset", "binarisation-seed", "architecture", "hidden", "activation", "conv-width", "latent",
                     "likelihood", "likelihood-variance", "likelihood-sigma", "likelihood-min-sigma", "likelihood-range",
                     "likelihood-mixture", "data-dir"});
  notify_all(vm);
  if (c.prior == "gaussian") throw UsageError("fit-prior: --prior must be ebm or mog (the parent already has the Gaussian)");
  check_validation_flags(c);
  c.parent = parent;
  c.init_from = parent + "/checkpoints/best.pt";
  c.mode = "post-hoc";
  c.train.mode(TrainMode::post_hoc);
  c.train.on_divergence(as_usage([&] { return divergence_policy_from(c.on_divergence); }));
  if (c.run_dir.empty()) c.run_dir = parent + "-posthoc-" + c.prior;
  auto resolved = resolve(desc, vm, {"help", "parent-run", "nproc"});
  set_resolved(resolved, "run-dir", c.run_dir);
  set_resolved(resolved, "mode", "post-hoc");
  set_resolved(resolved, "init-from", c.init_from);
  set_resolved(resolved, "parent", c.parent);
  c.config_text = render(resolved, "fit-prior");
  return true;
}

namespace {
void add_run_and_checkpoint(po::options_description& d, std::string& run_dir, std::string& checkpoint) {
  d.add_options()
      ("help,h", "show this help")
      ("run-dir", po::value(&run_dir), "the run directory (positional)")
      ("checkpoint", po::value(&checkpoint)->default_value(checkpoint), "best, latest, or a checkpoint path");
}
void require_run_dir(const po::variables_map& vm, const std::string& command) {
  if (!vm.count("run-dir")) throw UsageError(command + " needs a run directory: vae-ebm " + command + " RUN_DIR");
}
// The commands that read a run (evaluate, sample, export): RUN_DIR as the positional argument,
// the common flags, then a check that RUN_DIR was given. False when --help was shown.
bool parse_run_command(const std::vector<std::string>& args, po::options_description& d, CommonConfig& common,
                       const std::string& command, const std::string& usage) {
  add_common(d, common);
  po::positional_options_description pos;
  pos.add("run-dir", 1);
  po::variables_map vm;
  if (!parse(args, d, pos, vm, usage)) return false;
  notify_all(vm);
  require_run_dir(vm, command);
  return true;
}
}  // namespace

namespace {
// --sampler and its options (sample and evaluate): estimators/samplers.h.
void add_sampler_flags(po::options_description& d, std::string& sampler, SamplerOptions& o) {
  std::string names;
  for (const auto& name : sampler_names())
    names += "\n  " + name + (name == default_sampler() ? " (default)" : "") + ": " + sampler_registry().at(name).help;
  d.add_options()
      ("sampler", po::value(&sampler)->default_value(sampler),
       ("ebm: how prior samples are drawn (all: each sampler in turn):" + names +
        "\nexact priors (gaussian, mog, flow) are sampled exactly").c_str())
      ("sampler-steps", po::value(&o.steps())->default_value(o.steps()), "langevin, mala: steps")
      ("sampler-step-size", real(&o.step_size(), o.step_size()), "langevin, mala: step size s; hmc: leapfrog step")
      ("sampler-flow-steps", po::value(&o.flow_steps())->default_value(o.flow_steps()),
       "flow-langevin, flow-mala, transport: steps")
      ("sampler-flow-step-size", real(&o.flow_step_size(), o.flow_step_size()),
       "flow-langevin, flow-mala: step size s; transport: s in the flow's base space")
      ("hmc-trajectories", po::value(&o.trajectories())->default_value(o.trajectories()), "hmc: trajectories")
      ("hmc-leapfrog", po::value(&o.leapfrog())->default_value(o.leapfrog()), "hmc: leapfrog steps per trajectory")
      ("sir-candidates", po::value(&o.candidates())->default_value(o.candidates()), "flow-sir: candidates per draw")
      ("sir-base-fraction", real(&o.base_fraction(), o.base_fraction()),
       "flow-sir: share of the candidates drawn from the base N(0, I) (bounds the weights)")
      ("langevin-noise", real(&o.noise(), o.noise()), "langevin, flow-langevin: noise scale eta (0: gradient flow)");
}
void check_sampler(const std::string& sampler, const SamplerOptions& o) {
  auto names = sampler_names();
  names.push_back("all");
  check_choice("--sampler", sampler, names);
  as_usage([&] { o.validate(); }, "");
}
}  // namespace

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
       "from that flow) or ais (annealed importance sampling from the base)")
      ("flow-steps", po::value(&c.flow_steps)->default_value(c.flow_steps),
       "flow, flow-ais: reverse-KL steps fitting the proposal flow to the energy")
      ("flow-refine-steps", po::value(&c.flow_refine_steps)->default_value(c.flow_refine_steps),
       "flow, flow-ais: then steps of a mass-covering refinement (importance-weighted forward KL)")
      ("flow-layers", po::value(&c.flow_layers)->default_value(c.flow_layers), "flow, flow-ais: the flow's coupling layers")
      ("flow-hidden", po::value(&c.flow_hidden)->default_value(c.flow_hidden), "flow, flow-ais: width of its conditioners")
      ("flow-base-fraction", real(&c.flow_base_fraction, c.flow_base_fraction),
       "flow: share of the importance samples drawn from the base N(0, I) (bounds the weights)")
      ("ais-temperatures", po::value(&c.ais_temperatures)->default_value(c.ais_temperatures), "ais: temperatures (sigmoidal schedule)")
      ("ais-chains", po::value(&c.ais_chains)->default_value(c.ais_chains), "ais: chains")
      ("ais-step-size", real(&c.ais_step_size, c.ais_step_size), "ais, flow-ais: MALA step size (the first, when adapted)")
      ("ais-target-acceptance", real(&c.ais_target_acceptance, c.ais_target_acceptance),
       "ais, flow-ais: the MALA acceptance rate the step size is adapted towards, temperature by temperature (0: a "
       "fixed step)")
      ("feature-network", po::value(&c.feature_network)->default_value(c.feature_network),
       "a TorchScript network mapping images [B, C, H, W] to features [B, d], used instead of the classifier "
       "(an Inception network gives a conventional FID); its file's SHA-256 is recorded")
      ("quality-samples", po::value(&c.quality_samples)->default_value(c.quality_samples),
       "generated images scored against the split (0: no sample-quality scores)");
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
  if (!(c.flow_base_fraction >= 0 && c.flow_base_fraction < 1))
    throw UsageError("--flow-base-fraction must be in [0, 1), got " + shortest(c.flow_base_fraction));
  if (c.flow_steps < 0) throw UsageError("--flow-steps must be >= 0, got " + std::to_string(c.flow_steps));
  if (c.flow_refine_steps < 0)
    throw UsageError("--flow-refine-steps must be >= 0, got " + std::to_string(c.flow_refine_steps));
  if (c.flow_layers < 1) throw UsageError("--flow-layers must be >= 1, got " + std::to_string(c.flow_layers));
  if (c.flow_hidden < 1) throw UsageError("--flow-hidden must be >= 1, got " + std::to_string(c.flow_hidden));
  if (c.quality_samples < 0) throw UsageError("--quality-samples must be >= 0, got " + std::to_string(c.quality_samples));
  check_choice("--normaliser", c.normaliser, {"auto", "learned", "estimated"});
  return true;
}

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

bool parse_train_classifier(const std::vector<std::string>& args, ClassifierConfig& c) {
  po::options_description d("train-classifier flags");
  d.add_options()
      ("help,h", "show this help")
      ("dataset", po::value(&c.dataset)->default_value(c.dataset),
       "labelled image data set (the MNIST network for 1x28x28, a shape-generic one for other C x H x W)")
      ("out", po::value(&c.out)->default_value(c.out), "where to write it (default DATA_DIR/classifiers/DATASET.pt)")
      ("epochs", po::value(&c.epochs)->default_value(c.epochs), "training epochs")
      ("batch-size", po::value(&c.batch_size)->default_value(c.batch_size),
       "images per step (data-parallel: the global batch, shared out over the processes)")
      ("limit", po::value(&c.limit)->default_value(c.limit), "train on the first N training images only (0: all)")
      ("seed", po::value(&c.seed)->default_value(c.seed), "seed (training is deterministic for a seed and thread count)")
      ("dist-timeout", real(&c.dist_timeout, c.dist_timeout),
       "data-parallel training (torchrun or --nproc): seconds that meeting the other processes, or any one exchange "
       "with them, may take before it stops with an error");
  add_common(d, c.common);
  add_nproc(d, c.common);
  po::positional_options_description none;
  po::variables_map vm;
  if (!parse(args, d, none, vm,
             "usage: vae-ebm train-classifier [--dataset NAME]\n"
             "Trains the small convolutional classifier whose penultimate features score sample quality."))
    return false;
  notify_all(vm);
  if (c.epochs < 1) throw UsageError("--epochs must be >= 1, got " + std::to_string(c.epochs));
  if (c.batch_size < 1) throw UsageError("--batch-size must be >= 1, got " + std::to_string(c.batch_size));
  if (c.limit < 0) throw UsageError("--limit must be >= 0, got " + std::to_string(c.limit));
  return true;
}

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

}  // namespace vae_ebm::cli
