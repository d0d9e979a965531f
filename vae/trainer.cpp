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

void Trainer::set_learning_rates(int64_t epoch) {
  // Stateless in the epoch, so a resumed run sets exactly the same rates.
  const double factor = std::pow(options_.lr_decay(), static_cast<double>(epoch));
  auto apply = [&](torch::optim::Adam* opt, double lr) {
    if (!opt) return;
    for (auto& group : opt->param_groups()) static_cast<torch::optim::AdamOptions&>(group.options()).lr(lr * factor);
  };
  apply(vae_optimizer_.get(), options_.lr());
  apply(prior_optimizer_.get(), options_.prior_lr());
}

Trainer::PriorFitTerms Trainer::prior_fit_terms(const torch::Tensor& x, const BatchShard* shard) {
  PriorFitTerms out;
  DiagonalGaussian q;
  torch::Tensor z;
  auto sample = [&] { z = shard ? q.rsample(options_.samples(), generator_, *shard) : q.rsample(options_.samples(), generator_); };
  if (options_.mode() == TrainMode::post_hoc) {
    torch::NoGradGuard no_grad;
    q = model_->encoder->forward(x);
    sample();
  } else {
    // detach-posterior: the VAE trains on the Gaussian ELBO, the prior on detached samples.
    q = model_->encoder->forward(x);
    sample();
    out.reconstruction = model_->log_likelihood(z, x).mean(0);
    out.kl = -(q.entropy() + q.expected_standard_normal_log_prob());
    q = q.detach();
    z = z.detach();
  }
  auto term = objective_->prior_term(*model_->prior, q, z, generator_);
  out.log_prior = term.log_prior;
  out.diagnostics = std::move(term.diagnostics);
  return out;
}

std::map<std::string, double> Trainer::data_parallel_step(const torch::Tensor& x) {
  model_->train();
  // Per image of this process's rows: what the step maximises, and the terms reported.
  torch::Tensor total, reconstruction, kl, log_prior;
  std::map<std::string, double> out;
  if (options_.mode() == TrainMode::joint) {
    auto terms = elbo_terms(*model_, *objective_, x, options_.samples(), generator_, nullptr, &shard_);
    total = terms.total;
    reconstruction = terms.reconstruction;
    kl = terms.kl;
    out = std::move(terms.diagnostics);
  } else {
    auto terms = prior_fit_terms(x, &shard_);
    log_prior = terms.log_prior;
    total = terms.reconstruction.defined() ? log_prior + terms.reconstruction - terms.kl : log_prior;
    reconstruction = terms.reconstruction;
    kl = terms.kl;
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
  std::vector<torch::Tensor> grads;
  for (auto* optimizer : {vae_optimizer_.get(), prior_optimizer_.get()})
    if (optimizer)
      for (const auto& group : optimizer->param_groups())
        for (const auto& p : group.params())
          if (p.grad().defined()) grads.push_back(p.grad());
  dist_->all_reduce_sum(grads, "the gradient all-reduce");
  if (vae_optimizer_) vae_optimizer_->step();
  if (prior_optimizer_) prior_optimizer_->step();
  out["loss"] = sums[0].item<double>();
  return out;
}

std::map<std::string, double> Trainer::step(const torch::Tensor& x) {
  if (dist_->parallel()) return data_parallel_step(x);
  model_->train();
  torch::Tensor loss;
  std::map<std::string, double> out;
  if (options_.mode() == TrainMode::joint) {
    const auto refine = LangevinOptions().steps(options_.refine_steps()).step_size(options_.refine_step_size());
    auto terms = elbo_terms(*model_, *objective_, x, options_.samples(), generator_,
                            options_.refine_steps() > 0 ? &refine : nullptr);
    loss = -terms.total.mean();
    out = terms.diagnostics;
    out["reconstruction"] = terms.reconstruction.mean().item<double>();
    out["kl"] = terms.kl.mean().item<double>();
  } else {
    auto terms = prior_fit_terms(x, nullptr);
    out = std::move(terms.diagnostics);
    if (terms.reconstruction.defined()) {
      out["reconstruction"] = terms.reconstruction.mean().item<double>();
      out["kl"] = terms.kl.mean().item<double>();
    }
    out["log_prior"] = terms.log_prior.mean().item<double>();
    loss = -terms.log_prior.mean();
    if (terms.reconstruction.defined()) loss = loss - (terms.reconstruction - terms.kl).mean();
  }
  check_loss(loss.item<double>(), out);
  if (vae_optimizer_) vae_optimizer_->clear_grads();
  if (prior_optimizer_) prior_optimizer_->clear_grads();
  loss.backward();
  if (vae_optimizer_) vae_optimizer_->step();
  if (prior_optimizer_) prior_optimizer_->step();
  out["loss"] = loss.item<double>();
  return out;
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
  const int64_t total_steps = options_.max_steps() > 0 ? std::min(options_.max_steps(), options_.epochs() * per_epoch)
                                                       : options_.epochs() * per_epoch;
  auto window_start = clock::now();
  std::map<std::string, double> last;
  auto more_steps = [&] {
    return (options_.max_steps() == 0 || state_.step < options_.max_steps()) &&
           (options_.time_budget() <= 0 || state_.train_seconds < options_.time_budget());
  };
  while (state_.epoch < options_.epochs() && more_steps()) {
    set_learning_rates(state_.epoch);
    while (state_.batch_index < per_epoch && more_steps()) {
      auto step_start = clock::now();
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
        double eta = (total_steps - state_.step) / std::max(steps_per_s, 1e-9);
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
        for (const auto& [k, v] : last) record.set(k, v);
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
