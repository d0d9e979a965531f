// The training loop (vae/trainer.h): steps, data-parallel steps, epochs and validation.
#include <torch/torch.h>

#include "vae/trainer.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>
#include <sstream>
#include <stdexcept>

#include "common/error.h"
#include "common/text.h"
#include "data/archive.h"
#include "data/error.h"
#include "data/files.h"
#include "data/json.h"
#include "data/seed.h"

namespace vae_ebm {

namespace {
const std::pair<TrainMode, const char*> kModes[] = {
    {TrainMode::joint, "joint"}, {TrainMode::detach_posterior, "detach-posterior"}, {TrainMode::post_hoc, "post-hoc"}};
const std::pair<DivergencePolicy, const char*> kPolicies[] = {
    {DivergencePolicy::stop, "stop"}, {DivergencePolicy::rollback, "rollback"}, {DivergencePolicy::warn, "warn"}};

// An enum's name in its table of names.
template <typename E, size_t N>
std::string name_in(const std::pair<E, const char*> (&table)[N], E value) {
  for (const auto& [v, name] : table)
    if (v == value) return name;
  throw std::logic_error("a value without a name");
}

// The enum a name stands for; OptionError naming the option, the text and the valid names.
template <typename E, size_t N>
E value_in(const std::pair<E, const char*> (&table)[N], const std::string& name, const char* option,
           const char* what) {
  std::string valid;
  for (const auto& [v, text] : table) {
    if (name == text) return v;
    valid += (valid.empty() ? "" : ", ") + std::string(text);
  }
  throw OptionError(option, "unknown " + std::string(what) + " '" + name + "' (valid: " + valid + ")");
}
}  // namespace

std::string train_mode_name(TrainMode mode) { return name_in(kModes, mode); }
TrainMode train_mode_from(const std::string& name) { return value_in(kModes, name, "mode", "training mode"); }
std::string divergence_policy_name(DivergencePolicy policy) { return name_in(kPolicies, policy); }
DivergencePolicy divergence_policy_from(const std::string& name) {
  return value_in(kPolicies, name, "on-divergence", "policy");
}

void TrainOptions::validate() const {
  auto check = [](bool ok, const char* option, const std::string& expected, double got) {
    if (!ok) {
      std::ostringstream text;
      text << "must be " << expected << ", got " << got;
      throw OptionError(option, text.str());
    }
  };
  check(epochs_ >= 1, "epochs", ">= 1", epochs_);
  check(max_steps_ >= 0, "max-steps", ">= 0", max_steps_);
  check(batch_size_ >= 1, "batch-size", ">= 1", batch_size_);
  check(lr_ > 0 && std::isfinite(lr_), "lr", "finite and > 0", lr_);
  check(prior_lr_ > 0 && std::isfinite(prior_lr_), "prior-lr", "finite and > 0", prior_lr_);
  check(beta1_ >= 0 && beta1_ < 1, "beta1", "in [0, 1)", beta1_);
  check(beta2_ >= 0 && beta2_ < 1, "beta2", "in [0, 1)", beta2_);
  check(lr_decay_ > 0 && lr_decay_ <= 1, "lr-decay", "in (0, 1]", lr_decay_);
  const auto& schedules = lr_schedule_names();
  if (std::find(schedules.begin(), schedules.end(), lr_schedule_) == schedules.end())
    throw OptionError("lr-schedule", "unknown schedule '" + lr_schedule_ + "' (valid: exponential, step, cosine)");
  check(lr_step_epochs_ >= 1, "lr-step-epochs", ">= 1", lr_step_epochs_);
  check(lr_warmup_steps_ >= 0, "lr-warmup-steps", ">= 0", lr_warmup_steps_);
  check(clip_grad_norm_ >= 0 && std::isfinite(clip_grad_norm_), "clip-grad-norm", "finite and >= 0 (0: off)",
        clip_grad_norm_);
  check(kl_warmup_epochs_ >= 0 && std::isfinite(kl_warmup_epochs_), "kl-warmup-epochs", "finite and >= 0 (0: off)",
        kl_warmup_epochs_);
  check(prior_start_epoch_ >= 0, "prior-start-epoch", ">= 0 (0: off)", prior_start_epoch_);
  if (train_bound_ != "elbo" && train_bound_ != "iw" && train_bound_ != "iw-dreg")
    throw OptionError("train-bound", "unknown bound '" + train_bound_ + "' (valid: elbo, iw, iw-dreg)");
  if (train_bound_ != "elbo") {
    if (mode_ == TrainMode::post_hoc)
      throw OptionError("train-bound", train_bound_ + " trains the encoder and decoder; a post-hoc fit trains only the prior");
    if (kl_warmup_epochs_ > 0)
      throw OptionError("train-bound", train_bound_ + " has no KL term to warm up: use elbo with the KL warm-up");
    if (refine_steps_ > 0)
      throw OptionError("train-bound", train_bound_ + " with posterior refinement is not supported yet");
  }
  if (mode_ == TrainMode::post_hoc) {
    if (kl_warmup_epochs_ > 0)
      throw OptionError("kl-warmup-epochs", "a post-hoc fit trains no KL term: the encoder and decoder are frozen");
    if (prior_start_epoch_ > 0)
      throw OptionError("prior-start-epoch", "a post-hoc fit trains only the prior: nothing would train before it starts");
  }
  check(samples_ >= 1, "samples", ">= 1", samples_);
  check(refine_steps_ >= 0, "refine-steps", ">= 0", refine_steps_);
  check(refine_step_size_ > 0 && std::isfinite(refine_step_size_), "refine-step-size", "finite and > 0",
        refine_step_size_);
  if (refine_steps_ > 0 && mode_ != TrainMode::joint)
    throw OptionError("refine-steps", "applies to joint training only, not " + train_mode_name(mode_));
  check(time_budget_ >= 0, "time-budget", ">= 0", time_budget_);
  check(eval_every_ >= 1, "eval-every", ">= 1", eval_every_);
  check(keep_checkpoints_ >= 1 && keep_checkpoints_ <= 1000000, "keep-checkpoints", "in [1, 1000000]", keep_checkpoints_);
  check(log_every_seconds_ > 0, "log-every", "> 0 (seconds)", log_every_seconds_);
  check(max_rollbacks_ >= 0, "max-rollbacks", ">= 0", max_rollbacks_);
  check(rollback_factor_ > 0 && rollback_factor_ < 1, "rollback-factor", "in (0, 1)", rollback_factor_);
  const std::string lowerable[] = {"auto", kBlameLr, kBlamePriorLr, kBlameStepSize};
  if (std::find(std::begin(lowerable), std::end(lowerable), rollback_lower_) == std::end(lowerable))
    throw OptionError("rollback-lower", "unknown rate '" + rollback_lower_ + "' (valid: auto, lr, prior-lr, mcmc-step-size)");
}

const std::vector<std::string>& lr_schedule_names() {
  static const std::vector<std::string> names = {"exponential", "step", "cosine"};
  return names;
}

double learning_rate_factor(const TrainOptions& options, int64_t step, int64_t epoch, int64_t total_steps) {
  double factor = 1.0;
  if (options.lr_schedule() == "exponential") {
    factor = std::pow(options.lr_decay(), static_cast<double>(epoch));
  } else if (options.lr_schedule() == "step") {
    factor = std::pow(options.lr_decay(), static_cast<double>(epoch / options.lr_step_epochs()));
  } else if (options.lr_schedule() == "cosine") {
    const double t = total_steps > 0 ? std::min(1.0, static_cast<double>(step) / static_cast<double>(total_steps)) : 0.0;
    factor = 0.5 * (1.0 + std::cos(std::acos(-1.0) * t));
  } else {
    throw OptionError("lr-schedule", "unknown schedule '" + options.lr_schedule() + "'");
  }
  if (options.lr_warmup_steps() > 0)
    factor *= std::min(1.0, static_cast<double>(step + 1) / static_cast<double>(options.lr_warmup_steps()));
  return factor;
}

double kl_weight(const TrainOptions& options, int64_t step, int64_t steps_per_epoch) {
  if (options.kl_warmup_epochs() <= 0) return 1.0;
  const double span = options.kl_warmup_epochs() * static_cast<double>(steps_per_epoch);
  return std::min(1.0, static_cast<double>(step) / span);
}

double clip_gradient_norm(const std::vector<torch::Tensor>& grads, double limit) {
  if (grads.empty()) return 0.0;
  std::vector<torch::Tensor> squares;
  squares.reserve(grads.size());
  for (const auto& g : grads) squares.push_back(g.norm().to(torch::kDouble));  // one pass each, no copy
  const double norm = torch::stack(squares).pow(2).sum().sqrt().item<double>();
  if (limit > 0 && norm > limit) {  // false for NaN: the loss check stops that step
    const double scale = limit / norm;
    for (const auto& g : grads) g.mul_(scale);
  }
  return norm;
}

void check_data_parallel(const TrainOptions& options, const PriorObjective& objective, int world_size) {
  if (world_size <= 1) return;
  const std::string yet = " is not data-parallel yet (" + std::to_string(world_size) + " processes)";
  if (options.mode() == TrainMode::joint && options.refine_steps() > 0)
    throw OptionError("refine-steps", "posterior refinement" + yet);
  if (options.on_divergence() == DivergencePolicy::rollback)
    throw OptionError("on-divergence", "rollback" + yet + ": use stop, then resume with a lower rate");
  if (options.batch_size() < world_size)
    throw OptionError("batch-size", "must be at least the number of processes (" + std::to_string(world_size) +
                                        "): it is the global batch, split over them; got " +
                                        std::to_string(options.batch_size()));
  objective.check_data_parallel(world_size);
}

namespace {
// A module's parameters and buffers: what must be the same on every data-parallel process.
std::vector<torch::Tensor> state_tensors(const torch::nn::Module& module) {
  auto out = module.parameters();
  for (const auto& b : module.buffers()) out.push_back(b);
  return out;
}
}  // namespace

Trainer::Trainer(std::shared_ptr<VaeModel> model, std::unique_ptr<PriorObjective> objective, torch::Tensor train_data,
                 TrainOptions options, RunDir run_dir, std::shared_ptr<Distributed> distributed)
    : model_(std::move(model)),
      objective_(std::move(objective)),
      options_(std::move(options)),
      run_dir_(std::move(run_dir)),
      batcher_(train_data,
               BatcherOptions(options_.batch_size()).seed(options_.seed()).dynamic_binarisation(options_.dynamic_binarisation())),
      generator_(make_generator(mix_seed(options_.seed(), 0x747261696eULL), options_.device())) {
  options_.validate();
  objective_->check(*model_->prior);
  if (importance_weighted() && options_.mode() == TrainMode::joint) {
    if (!objective_->per_sample_terms())
      throw OptionError("train-bound", options_.train_bound() +
                                           " needs an objective with a term per posterior sample (exact, snelbo), not " +
                                           objective_->name());
    objective_->set_per_sample_terms(true);
  }
  if (options_.refine_steps() > 0 && !is_energy_prior(*model_->prior))
    throw OptionError("refine-steps", "needs an energy prior (ebm), not the '" + model_->prior->kind() + "' prior");
  model_->to(options_.device());
  auto adam = [&](double lr) {
    return torch::optim::AdamOptions(lr).betas(std::make_tuple(options_.beta1(), options_.beta2()));
  };
  if (options_.mode() != TrainMode::post_hoc) vae_optimizer_ = std::make_unique<FusedAdam>(model_->vae_parameters(), adam(options_.lr()));
  auto prior_params = model_->prior_parameters();
  if (!prior_params.empty()) prior_optimizer_ = std::make_unique<FusedAdam>(prior_params, adam(options_.prior_lr()));
  if (options_.mode() == TrainMode::post_hoc) {
    if (!prior_optimizer_) throw std::invalid_argument("post-hoc fitting needs a prior with parameters (mog or ebm)");
    for (auto& p : model_->vae_parameters()) p.set_requires_grad(false);
  }
  dist_ = distributed ? std::move(distributed) : std::make_shared<Distributed>();
  shard_ = BatchShard::of(options_.batch_size(), dist_->rank(), dist_->world_size());
  writes_ = dist_->is_root();
  if (dist_->parallel()) {
    check_data_parallel(options_, *objective_, dist_->world_size());
    objective_->set_data_parallel(dist_, shard_, options_.seed(), options_.device());
    // Every process starts from rank 0's parameters (the same seed made the same ones; a
    // checkpoint read by --init-from might not be the same file on every machine).
    dist_->broadcast(state_tensors(*model_), 0, "the broadcast of rank 0's initial parameters");
  }
  keep_reference();
}

int64_t Trainer::schedule_steps() const { return options_.epochs() * batcher_.batches_per_epoch(); }

void Trainer::set_learning_rates(int64_t step, int64_t epoch) {
  // Stateless in the step, so a resumed run sets exactly the same rates.
  const double factor = learning_rate_factor(options_, step, epoch, schedule_steps());
  auto apply = [&](torch::optim::Adam* opt, double lr) {
    if (!opt) return;
    for (auto& group : opt->param_groups()) static_cast<torch::optim::AdamOptions&>(group.options()).lr(lr * factor);
  };
  apply(vae_optimizer_.get(), options_.lr());
  apply(prior_optimizer_.get(), options_.prior_lr());
}

Trainer::GaussianTerms Trainer::gaussian_terms(const torch::Tensor& x, const BatchShard* shard) {
  GaussianTerms out;
  out.q = model_->encoder->forward(x);
  out.z = shard ? out.q.rsample(options_.samples(), generator_, *shard) : out.q.rsample(options_.samples(), generator_);
  const auto log_px = model_->log_likelihood(out.z, x);
  out.reconstruction = log_px.mean(0);
  out.kl = -(out.q.entropy() + out.q.expected_standard_normal_log_prob());
  if (importance_weighted())
    out.iw = importance_weighted_objective(log_px + standard_normal_log_prob(out.z), out.q, out.z, dreg());
  return out;
}

Trainer::PriorFitTerms Trainer::prior_fit_terms(const torch::Tensor& x, const BatchShard* shard) {
  PriorFitTerms out;
  DiagonalGaussian q;
  torch::Tensor z;
  if (options_.mode() == TrainMode::post_hoc) {
    torch::NoGradGuard no_grad;
    q = model_->encoder->forward(x);
    z = shard ? q.rsample(options_.samples(), generator_, *shard) : q.rsample(options_.samples(), generator_);
  } else {
    // detach-posterior: the VAE trains on the Gaussian ELBO, the prior on detached samples.
    auto vae = gaussian_terms(x, shard);
    out.reconstruction = vae.reconstruction;
    out.kl = vae.kl;
    out.iw = vae.iw;
    if (prior_warming_up()) return out;
    q = vae.q.detach();
    z = vae.z.detach();
  }
  auto term = objective_->prior_term(*model_->prior, q, z, generator_);
  out.log_prior = term.log_prior;
  out.diagnostics = std::move(term.diagnostics);
  return out;
}

std::map<std::string, double> Trainer::data_parallel_step(const torch::Tensor& x) {
  model_->train();
  const double beta = kl_weight(options_, state_.step, batcher_.batches_per_epoch());
  const bool prior_learns = !prior_warming_up();
  // Per image of this process's rows: what the step maximises, and the terms reported.
  torch::Tensor total, reconstruction, kl, log_prior;
  std::map<std::string, double> out;
  if (options_.mode() == TrainMode::joint && !prior_learns) {
    auto terms = gaussian_terms(x, &shard_);
    reconstruction = terms.reconstruction;
    kl = terms.kl;
    total = terms.iw.defined() ? terms.iw : reconstruction - beta * kl;
  } else if (options_.mode() == TrainMode::joint) {
    auto terms = elbo_terms(*model_, *objective_, x, options_.samples(), generator_, nullptr, &shard_,
                            importance_weighted(), dreg());
    reconstruction = terms.reconstruction;
    kl = terms.kl;
    total = beta == 1.0 ? terms.total : reconstruction - beta * kl;
    out = std::move(terms.diagnostics);
  } else {
    auto terms = prior_fit_terms(x, &shard_);
    log_prior = terms.log_prior;
    reconstruction = terms.reconstruction;
    kl = terms.kl;
    total = terms.iw.defined() ? terms.iw : reconstruction.defined() ? reconstruction - beta * kl : torch::Tensor();
    if (log_prior.defined()) total = total.defined() ? total + log_prior : log_prior;
    out = std::move(terms.diagnostics);
  }
  // This process's rows' part of the mean over the global batch: the parts sum to it, and so
  // do their gradients.
  const double global = static_cast<double>(shard_.global);
  auto loss = -total.sum() / global;
  auto part = [global](const torch::Tensor& t) {
    return t.defined() ? t.detach().sum().to(torch::kDouble) / global : torch::zeros({}, torch::kDouble);
  };
  auto sums = torch::stack({loss.detach().to(torch::kDouble), part(reconstruction), part(kl), part(log_prior)});
  dist_->all_reduce_sum({sums}, "the all-reduce of the step's loss");
  if (reconstruction.defined()) {
    out["reconstruction"] = sums[1].item<double>();
    out["kl"] = sums[2].item<double>();
  }
  if (log_prior.defined()) out["log_prior"] = sums[3].item<double>();
  // The whole batch's loss, the same on every process: all of them stop on a divergence.
  check_loss(sums[0].item<double>(), out);
  if (vae_optimizer_) vae_optimizer_->clear_grads();
  if (prior_optimizer_) prior_optimizer_->clear_grads();
  loss.backward();
  auto grads = step_gradients(prior_learns);
  dist_->all_reduce_sum(grads, "the gradient all-reduce");
  // The summed gradients are the same on every process, and so are the norm and the clip.
  clip_gradients(grads, out);
  if (vae_optimizer_) vae_optimizer_->step();
  if (prior_optimizer_ && prior_learns) prior_optimizer_->step();
  out["loss"] = sums[0].item<double>();
  return out;
}

std::map<std::string, double> Trainer::step(const torch::Tensor& x) {
  if (dist_->parallel()) return data_parallel_step(x);
  model_->train();
  const double beta = kl_weight(options_, state_.step, batcher_.batches_per_epoch());
  const bool prior_learns = !prior_warming_up();
  torch::Tensor loss;
  std::map<std::string, double> out;
  if (options_.mode() == TrainMode::joint && !prior_learns) {
    auto terms = gaussian_terms(x, nullptr);
    loss = terms.iw.defined() ? -terms.iw.mean() : -(terms.reconstruction - beta * terms.kl).mean();
    out["reconstruction"] = terms.reconstruction.mean().item<double>();
    out["kl"] = terms.kl.mean().item<double>();
  } else if (options_.mode() == TrainMode::joint) {
    const auto refine = LangevinOptions().steps(options_.refine_steps()).step_size(options_.refine_step_size());
    auto terms = elbo_terms(*model_, *objective_, x, options_.samples(), generator_,
                            options_.refine_steps() > 0 ? &refine : nullptr, nullptr, importance_weighted(), dreg());
    loss = beta == 1.0 ? -terms.total.mean() : -(terms.reconstruction - beta * terms.kl).mean();
    out = terms.diagnostics;
    out["reconstruction"] = terms.reconstruction.mean().item<double>();
    out["kl"] = terms.kl.mean().item<double>();
  } else {
    auto terms = prior_fit_terms(x, nullptr);
    out = std::move(terms.diagnostics);
    if (terms.reconstruction.defined()) {
      out["reconstruction"] = terms.reconstruction.mean().item<double>();
      out["kl"] = terms.kl.mean().item<double>();
      loss = terms.iw.defined() ? -terms.iw.mean() : -(terms.reconstruction - beta * terms.kl).mean();
    }
    if (terms.log_prior.defined()) {
      out["log_prior"] = terms.log_prior.mean().item<double>();
      loss = loss.defined() ? loss - terms.log_prior.mean() : -terms.log_prior.mean();
    }
  }
  check_loss(loss.item<double>(), out);
  if (vae_optimizer_) vae_optimizer_->clear_grads();
  if (prior_optimizer_) prior_optimizer_->clear_grads();
  loss.backward();
  clip_gradients(step_gradients(prior_learns), out);
  if (vae_optimizer_) vae_optimizer_->step();
  if (prior_optimizer_ && prior_learns) prior_optimizer_->step();
  out["loss"] = loss.item<double>();
  return out;
}

std::vector<torch::Tensor> Trainer::step_gradients(bool prior) const {
  std::vector<torch::Tensor> grads;
  for (auto* optimizer : {vae_optimizer_.get(), prior ? prior_optimizer_.get() : nullptr})
    if (optimizer)
      for (const auto& group : optimizer->param_groups())
        for (const auto& p : group.params())
          if (p.grad().defined()) grads.push_back(p.grad());
  return grads;
}

void Trainer::clip_gradients(const std::vector<torch::Tensor>& grads, std::map<std::string, double>& out) {
  if (grads.empty()) return;
  const double limit = options_.clip_grad_norm();
  const double norm = clip_gradient_norm(grads, limit);
  const bool clipped = limit > 0 && norm > limit;
  out["grad_norm"] = norm;
  out["clipped"] = clipped ? 1.0 : 0.0;
  gradient_window_.sum += norm;
  gradient_window_.max = std::max(gradient_window_.max, norm);
  ++gradient_window_.steps;
  gradient_window_.clipped += clipped ? 1 : 0;
}

bool Trainer::run() {
  dist_->check_identical(state_tensors(*model_), "parameters and buffers at the start");
  // A rollback needs a checkpoint to return to, also in the first epoch.
  if (options_.on_divergence() == DivergencePolicy::rollback && state_.step == 0 && run_dir_.checkpoints().empty())
    save_checkpoint(run_dir_.checkpoint_path(0));
  for (;;) {
    try {
      return run_steps();
    } catch (const Divergence& d) {
      handle(d);
    }
  }
}

bool Trainer::run_steps() {
  const int64_t per_epoch = batcher_.batches_per_epoch();
  const bool live = listener_->live();
  using clock = std::chrono::steady_clock;
  auto last_print = clock::now();
  auto started = clock::now();
  int64_t images_since = 0;
  double rate = 0;
  auto started_step = state_.step;
  const int64_t run_steps_total =
      options_.max_steps() > 0 ? std::min(options_.max_steps(), schedule_steps()) : schedule_steps();
  auto window_start = clock::now();
  std::map<std::string, double> last;
  auto more_steps = [&] {
    return (options_.max_steps() == 0 || state_.step < options_.max_steps()) &&
           (options_.time_budget() <= 0 || state_.train_seconds < options_.time_budget());
  };
  while (state_.epoch < options_.epochs() && more_steps()) {
    while (state_.batch_index < per_epoch && more_steps()) {
      auto step_start = clock::now();
      set_learning_rates(state_.step, state_.epoch);
      const double collective_start = dist_->collective_seconds();
      auto x = dist_->parallel() ? batcher_.rows(state_.epoch, state_.batch_index, shard_.begin, shard_.size)
                                 : batcher_.batch(state_.epoch, state_.batch_index);
      x = x.to(options_.device());
      last = step(x);
      ++state_.batch_index;
      ++state_.step;
      images_since += shard_.global;
      auto now = clock::now();
      bool stop = false;
      if (dist_->parallel()) {
        // The processes agree on the time spent (their mean) and on stopping (any one was
        // asked to), so that a time budget or a signal ends them all at the same step.
        auto agreed = torch::tensor({std::chrono::duration<double>(now - step_start).count(),
                                     stop_flag_ && stop_flag_->load() ? 1.0 : 0.0,
                                     dist_->collective_seconds() - collective_start}, torch::kDouble);
        dist_->all_reduce_sum({agreed}, "the all-reduce of the step's time and stop flag");
        state_.train_seconds += agreed[0].item<double>() / dist_->world_size();
        stop = agreed[1].item<double>() > 0;
        state_.allreduce_seconds += agreed[2].item<double>() / dist_->world_size();
      } else {
        state_.train_seconds += std::chrono::duration<double>(now - step_start).count();
      }
      double since_print = std::chrono::duration<double>(now - last_print).count();
      if (writes_ && ((live && since_print > 0.25) || (!live && since_print > options_.log_every_seconds()))) {
        double window = std::chrono::duration<double>(now - window_start).count();
        rate = images_since / std::max(window, 1e-9);
        double steps_per_s = (state_.step - started_step) / std::chrono::duration<double>(now - started).count();
        double eta = (run_steps_total - state_.step) / std::max(steps_per_s, 1e-9);
        if (options_.time_budget() > 0) eta = std::min(eta, options_.time_budget() - state_.train_seconds);
        TrainerListener::Progress p;
        p.epoch = state_.epoch + 1;
        p.epochs = options_.epochs();
        p.batch = state_.batch_index;
        p.batches = per_epoch;
        p.images_per_second = rate;
        p.eta_seconds = eta;
        p.loss = last["loss"];
        listener_->progress(p);
        last_print = now;
        window_start = now;
        images_since = 0;
        Json record = Json::object();
        record.set("event", "train").set("step", state_.step).set("epoch", state_.epoch).set("images_per_second", rate);
        for (const auto& [k, v] : last)
          if (k != "grad_norm" && k != "clipped") record.set(k, v);
        // The gradient over the window's steps (what clipping acts on), and the schedule now.
        if (gradient_window_.steps > 0) {
          record.set("grad_norm", gradient_window_.sum / gradient_window_.steps)
              .set("grad_norm_max", gradient_window_.max)
              .set("clipped_fraction", static_cast<double>(gradient_window_.clipped) / gradient_window_.steps);
        }
        gradient_window_ = GradientWindow();
        record.set("lr", options_.lr() * learning_rate_factor(options_, state_.step - 1, state_.epoch, schedule_steps()));
        if (options_.kl_warmup_epochs() > 0) record.set("kl_weight", kl_weight(options_, state_.step - 1, per_epoch));
        if (options_.prior_start_epoch() > 0) record.set("prior_learning", prior_warming_up() ? 0.0 : 1.0);
        run_dir_.append_metrics(record);
      }
      if (dist_->parallel() ? stop : stop_flag_ && stop_flag_->load()) {
        if (writes_) listener_->progress_done();
        save_checkpoint(run_dir_.checkpoint_path(state_.step));
        if (writes_) listener_->interrupted(state_.step, run_dir_.path());
        return false;
      }
    }
    if (state_.batch_index >= per_epoch) end_epoch();
  }
  if (writes_) listener_->progress_done();
  // A time budget or --max-steps that ended the run mid-epoch: validate the model as it stands.
  if (state_.batch_index > 0 && state_.step > started_step) validate();
  save_checkpoint(run_dir_.checkpoint_path(state_.step));
  if (writes_) run_dir_.prune_checkpoints(static_cast<int>(options_.keep_checkpoints()));
  return true;
}

void Trainer::end_epoch() {
  ++state_.epoch;
  state_.batch_index = 0;
  const bool last = state_.epoch == options_.epochs();
  if (state_.epoch % options_.eval_every() == 0 || last) validate();
  save_checkpoint(run_dir_.checkpoint_path(state_.step));
  if (writes_) run_dir_.prune_checkpoints(static_cast<int>(options_.keep_checkpoints()));
}

void Trainer::validate_data_parallel() {
  // The processes must hold the same parameters: a bit that differs is a bug, found here.
  dist_->check_identical(state_tensors(*model_), "parameters and buffers at step " + std::to_string(state_.step));
  if (!validator_) return;  // the same on every process (train.cpp sets one everywhere)
  // Only rank 0 validates; the others wait for its outcome (within the collectives' timeout):
  // "ok VALUE", or a divergence or an error, which every process then raises alike.
  Json record = Json::object();
  std::string outcome;
  std::exception_ptr failure;
  if (writes_) {
    record.set("event", "validation").set("step", state_.step).set("epoch", state_.epoch)
        .set("train_seconds", state_.train_seconds);
    char text[64];
    try {
      std::snprintf(text, sizeof text, "ok %.17g", validator_(*model_, record));
      outcome = text;
    } catch (const Divergence& d) {
      std::snprintf(text, sizeof text, "diverged %.17g ", d.value);
      outcome = text + d.quantity;
    } catch (const std::exception& e) {
      failure = std::current_exception();
      outcome = std::string("error ") + e.what();
    }
  }
  outcome = dist_->broadcast_bytes(outcome, 0, "the broadcast of rank 0's validation");
  const auto space = outcome.find(' ');
  const std::string kind = outcome.substr(0, space);
  if (kind == "error") {
    if (failure) std::rethrow_exception(failure);
    throw DistributedError("rank 0 failed while validating: " + outcome.substr(space + 1));
  }
  const auto rest = outcome.substr(space + 1);
  const double value = std::strtod(rest.c_str(), nullptr);
  if (kind == "diverged") throw Divergence(state_.step, rest.substr(rest.find(' ') + 1), value);
  accept_validation(value, record);
}

void Trainer::accept_validation(double value, Json& record) {
  if (!std::isfinite(value) || std::abs(value) > kMaxAbsLoss ||
      (std::isfinite(state_.best_validation) && exploded(-value, -state_.best_validation)))
    throw Divergence(state_.step, "validation bound", value);
  const bool best = value > state_.best_validation;
  if (writes_) {
    record.set("validation_bound", value);
    record.set("best", best);
    run_dir_.append_metrics(record);
    // At an epoch's end, the epochs done; in the middle of one (--max-steps, a time budget, a
    // signal), the step and where in the epoch it falls, not "epoch 0".
    const std::string when =
        state_.batch_index == 0
            ? "epoch " + std::to_string(state_.epoch)
            : "step " + std::to_string(state_.step) + " (epoch " + std::to_string(state_.epoch + 1) + ", batch " +
                  std::to_string(state_.batch_index) + "/" + std::to_string(batcher_.batches_per_epoch()) + ")";
    listener_->validated(when, value, best);
  }
  if (best) {
    state_.best_validation = value;
    save_checkpoint(run_dir_.best_checkpoint_path());
  }
}

void Trainer::validate() {
  if (dist_->parallel()) return validate_data_parallel();
  if (validator_) {
    Json record = Json::object();
    record.set("event", "validation").set("step", state_.step).set("epoch", state_.epoch)
        .set("train_seconds", state_.train_seconds);
    accept_validation(validator_(*model_, record), record);
  }
}

}  // namespace vae_ebm
