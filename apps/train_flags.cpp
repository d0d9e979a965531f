// The flags of train and fit-prior (apps/train.cpp), and their checks: the networks, the prior,
// the objective's options as the objectives declare them, the schedule, validation, and what a
// resumed run may change.
#include <torch/torch.h>

#include <algorithm>
#include <ctime>
#include <filesystem>
#include <map>
#include <type_traits>

#include "apps/cli.h"
#include "apps/flags.h"
#include "apps/run_support.h"
#include "data/run_dir.h"

namespace vae_ebm::cli {

namespace {

std::string join(const std::vector<std::string>& items, const std::string& sep = ", ") { return join_names(items, sep); }

// A flag's default, a real one shown as written.
template <class T>
po::typed_value<T>* with_default(po::typed_value<T>* value, const T& fallback) {
  if constexpr (std::is_same_v<T, double>)
    return value->default_value(fallback, shortest(fallback));
  else
    return value->default_value(fallback);
}

// What defines the data and the networks: a post-hoc prior is fitted to the parent run's
// encoder and decoder, so fit-prior reads these from the parent's config.ini, never from its
// own command line.
const std::vector<std::string> kParentOwned = {
    "dataset", "binarisation-seed", "architecture", "hidden", "activation", "conv-width", "latent", "likelihood",
    "likelihood-variance", "likelihood-sigma", "likelihood-min-sigma", "likelihood-range", "likelihood-mixture"};

// Every objective's options, as the objectives declare them (prior/objective.h): one flag each,
// its help led by the objectives that read it, its value kept as text in `values` (numbers in
// their shortest form, so that config.ini and a resumed run compare them as they read).
void add_objective_flags(po::options_description& d, OptionValues& values) {
  std::vector<OptionSpec> specs;
  std::map<std::string, std::string> help;
  for (const auto& option : all_objective_options()) {
    specs.push_back(option.spec);
    help[option.spec.name] = join(option.objectives) + ": " + option.spec.help;
  }
  add_option_flags(
      d, specs, [&help](const OptionSpec& spec) { return help.at(spec.name); },
      [&values](const std::string& name, const std::string& text) { values.set(name, text); });
}

// Every prior kind's options, as the kinds declare them (prior/prior.h), kept as text in
// `values` like the objectives'.
void add_prior_flags(po::options_description& d, OptionValues& values) {
  std::vector<OptionSpec> specs;
  for (const auto& option : all_prior_options()) specs.push_back(option.spec);
  add_option_flags(
      d, specs, [](const OptionSpec& spec) { return spec.help; },
      [&values](const std::string& name, const std::string& text) { values.set(name, text); });
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
  // The data and the networks: fit-prior takes them from the parent's config.ini (kParentOwned),
  // so it shows no default of its own for them and refuses them on its command line.
  auto own = [fit_prior](auto* value, const auto& fallback) { return fit_prior ? value : with_default(value, fallback); };
  d.add_options()
      ("run-dir", po::value(&c.run_dir)->default_value(c.run_dir), "run directory to create (default runs/DATASET-PRIOR-TIME)")
      ("dataset", own(po::value(&c.dataset), c.dataset), ("data set: " + join(dataset_names())).c_str())
      ("binarisation-seed", own(po::value(&c.binarisation_seed), c.binarisation_seed), "key of the static binarisation")
      ("architecture", own(po::value(&c.architecture), c.architecture),
       ("encoder/decoder: " + join(architectures()) +
        " (conv: the SNL reference networks for 1x28x28 images, the conv family for other C x H x W)").c_str())
      ("hidden", own(po::value(&c.hidden), c.hidden), "MLP hidden widths, comma-separated")
      ("activation", own(po::value(&c.activation), c.activation), ("MLP activation: " + join(activations())).c_str())
      ("conv-width", own(po::value(&c.conv_width), c.conv_width),
       "conv family (images other than 1x28x28): base channels w; the decoder starts at 8w, the encoder at w")
      ("latent", own(po::value(&c.latent), c.latent), "latent dimension D")
      ("likelihood", own(po::value(&c.likelihood.kind()), c.likelihood.kind()),
       ("p(x|z): " + join(likelihood_kinds()) + " (bernoulli for binary data, logistic for 8-bit levels, gaussian for continuous values)").c_str())
      ("likelihood-variance", own(po::value(&c.likelihood.variance()), c.likelihood.variance()),
       "gaussian: fixed (--likelihood-sigma) or learned (one sigma per value)")
      ("likelihood-sigma", own(po::value(&c.likelihood.sigma()), c.likelihood.sigma()), "gaussian, fixed variance: the standard deviation")
      ("likelihood-min-sigma", own(po::value(&c.likelihood.min_sigma()), c.likelihood.min_sigma()),
       "gaussian, learned variance: the floor of each sigma")
      ("likelihood-range", own(po::value(&c.likelihood.range()), c.likelihood.range()),
       "gaussian: the data as the density sees them: 0,1 or -1,1 (2x - 1, as in Pang et al.)")
      ("likelihood-mixture", own(po::value(&c.likelihood.mixture()), c.likelihood.mixture()),
       "logistic: discretised logistics per value (1: one)")
      ("prior", po::value(&c.prior)->default_value(c.prior), ("prior: " + join(prior_kinds())).c_str());
  add_prior_flags(d, c.prior_values);
  d.add_options()
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
      ("lr-schedule", po::value(&t.lr_schedule())->default_value(t.lr_schedule()),
       ("both learning rates: " + join(lr_schedule_names()) +
        " (exponential: times --lr-decay each epoch; step: times --lr-decay every --lr-step-epochs epochs; "
        "cosine: down to 0 over the steps of --epochs by half a cosine)").c_str())
      ("lr-decay", real(&t.lr_decay(), t.lr_decay()), "exponential and step schedules: the factor")
      ("lr-step-epochs", po::value(&t.lr_step_epochs())->default_value(t.lr_step_epochs()), "step schedule: epochs between decays")
      ("lr-warmup-steps", po::value(&t.lr_warmup_steps())->default_value(t.lr_warmup_steps()),
       "both learning rates rise linearly from 0 over this many steps, then follow the schedule (0: off)")
      ("clip-grad-norm", real(&t.clip_grad_norm(), t.clip_grad_norm()),
       "rescale the gradient of every trained parameter, as one vector, to this norm when longer (0: off); "
       "metrics.jsonl records the norm and the fraction of steps clipped either way")
      ("kl-warmup-epochs", real(&t.kl_warmup_epochs(), t.kl_warmup_epochs()),
       "the KL term's weight in the training loss rises linearly from 0 to 1 over this many epochs (0: off); "
       "validation bounds weigh it 1")
      ("prior-start-epoch", po::value(&t.prior_start_epoch())->default_value(t.prior_start_epoch()),
       "prior warm-up: before this epoch (from 0) the encoder and decoder train on the Gaussian ELBO with N(0, I) "
       "and the prior learns nothing (0: off)")
      ("samples", po::value(&t.samples())->default_value(t.samples()), "posterior samples K per image")
      ("train-bound", po::value(&t.train_bound())->default_value(t.train_bound()),
       "what the encoder and decoder train on: elbo (the objective's bound, the mean over the K samples) or iw "
       "(the importance-weighted bound over the K samples: IWAE, and SN-IWAE for the energy prior with snelbo), or "
       "iw-dreg (the same bound, the encoder trained by the doubly reparameterised gradient)")
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
  as_usage([&] { check_prior(c.prior_options()); });
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

// fit-prior's own defaults, where a post-hoc fit needs other settings than joint training's
// (TrainOptions' defaults, the SNL paper's for the joint model): with those (prior-lr 2e-5, beta1
// 0.5, a validation every epoch) a 25-epoch fit of an energy moved the bound by 0.03 nats; with
// these, 50 epochs gained 1.59 nats (recipes/README.md).
namespace {
void set_fit_prior_defaults(TrainConfig& c) {
  c.train.prior_lr(1e-3).beta1(0.9).lr_schedule("cosine").eval_every(5);
}
}  // namespace

bool parse_fit_prior(const std::vector<std::string>& args, TrainConfig& c) {
  set_fit_prior_defaults(c);
  auto desc = train_description(c, true);
  desc.add_options()("parent-run", po::value<std::string>(), "the trained VAE's run directory");
  po::positional_options_description pos;
  pos.add("parent-run", 1);
  po::variables_map vm;
  if (!parse(args, desc, pos, vm,
             "usage: vae-ebm fit-prior PARENT_RUN --prior ebm|mog [--run-dir DIR] [flags]\n"
             "Freezes the parent's encoder and decoder and fits a new prior to its aggregate posterior.\n"
             "The data and network flags (--dataset ... --likelihood-mixture, shown without defaults) come from the\n"
             "parent's config.ini and cannot be given here."))
    return false;
  if (!vm.count("parent-run")) throw UsageError("fit-prior needs the parent run directory: vae-ebm fit-prior RUN_DIR --prior ebm");
  if (vm["prior"].defaulted()) throw UsageError("fit-prior needs --prior ebm or --prior mog");
  auto parent = vm["parent-run"].as<std::string>();
  if (!std::filesystem::exists(parent + "/config.ini"))
    throw UsageError("fit-prior: '" + parent + "' is not a run directory (no config.ini)");
  for (const auto& name : kParentOwned)
    if (vm.count(name))
      throw UsageError("fit-prior takes --" + name + " from the parent's config.ini (" + parent +
                       "/config.ini): the prior is fitted to the parent's encoder and decoder, so it cannot be given");
  // Only what defines the networks and the data comes from the parent (and its data directory,
  // unless given here).
  auto inherited = kParentOwned;
  inherited.push_back("data-dir");
  store_config_file(parent + "/config.ini", desc, vm, inherited);
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

}  // namespace vae_ebm::cli
