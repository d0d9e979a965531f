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
constexpr int64_t kCheckpointFormat = 1;

torch::Tensor scalar(int64_t v) { return torch::full({}, v, torch::kLong); }
torch::Tensor scalar(double v) { return torch::full({}, v, torch::kDouble); }

// Bytes (an archive of their own) as a tensor of an archive, and back.
torch::Tensor bytes_tensor(const std::string& bytes) {
  auto t = torch::empty({static_cast<int64_t>(bytes.size())}, torch::kByte);
  std::memcpy(t.data_ptr(), bytes.data(), bytes.size());
  return t;
}
std::string rank_bytes(torch::serialize::InputArchive& ranks, int rank) {
  torch::Tensor t;
  ranks.read(std::to_string(rank), t);
  t = t.to(torch::kCPU).contiguous();
  return std::string(static_cast<const char*>(t.data_ptr()), static_cast<size_t>(t.numel()));
}

}  // namespace

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

namespace {
// A step's own terms (the objective's diagnostics), as " (b 0.03, log_z_hat 7.2, ...)" for a
// message ("" when there are none) and as a JSON object for the event.
std::pair<std::string, Json> step_terms(const std::map<std::string, double>& diagnostics) {
  std::string text;
  Json values = Json::object();
  for (const auto& [name, value] : diagnostics) {
    values.set(name, value);
    text += (text.empty() ? " (" : ", ") + name + " " + short_number(value);
  }
  if (!text.empty()) text += ")";
  return {text, values};
}
}  // namespace

std::string normaliser_spike(const Divergence& d) {
  const auto log_z_hat = d.diagnostics.find("log_z_hat");
  const auto b = d.diagnostics.find("b");
  if (d.quantity != "training loss" || log_z_hat == d.diagnostics.end() || b == d.diagnostics.end() ||
      !std::isfinite(d.value) || d.value <= 0)
    return "";
  const double term = std::exp(log_z_hat->second - b->second);
  if (!(term > 0.5 * d.value)) return "";
  return "most of the loss is SNELBO's normaliser term exp(log_z_hat - b) = " + short_number(term) +
         ": a proposal sample met energy mass the proposal rarely reaches, so the rate is probably not the cause.";
}

Divergence::Divergence(int64_t at_step, std::string what, double v)
    : std::runtime_error(what + " diverged at step " + std::to_string(at_step) + " (" + short_number(v) + ")"),
      step(at_step),
      quantity(std::move(what)),
      value(v) {}

bool exploded(double value, double reference) {
  return value - reference > std::max(10.0 * std::abs(reference), 1000.0);
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

void Trainer::check_loss(double loss, const std::map<std::string, double>& diagnostics) {
  // The step that diverged is the one being taken: state_.step + 1.
  auto diverged = [&] {
    Divergence d(state_.step + 1, "training loss", loss);
    d.diagnostics = diagnostics;
    return d;
  };
  if (!std::isfinite(loss) || std::abs(loss) > kMaxAbsLoss) throw diverged();
  if (recent_losses_.size() >= 20) {
    std::vector<double> sorted(recent_losses_.begin(), recent_losses_.end());
    std::nth_element(sorted.begin(), sorted.begin() + sorted.size() / 2, sorted.end());
    const double median = sorted[sorted.size() / 2];
    if (exploded(loss, median)) {
      if (options_.on_divergence() != DivergencePolicy::warn) throw diverged();
      // Logged and taken, but kept out of the window so that the median stays the typical loss.
      const auto [terms, values] = step_terms(diagnostics);
      Json event = Json::object();
      event.set("event", "spike").set("step", state_.step + 1).set("quantity", "training loss").set("value", loss)
          .set("median", median);
      if (!terms.empty()) event.set("diagnostics", values);
      if (writes_) {
        run_dir_.append_metrics(event);
        listener_->spike_taken(state_.step + 1, loss, median, terms);
      }
      return;
    }
  }
  recent_losses_.push_back(loss);
  if (recent_losses_.size() > kLossWindow) recent_losses_.pop_front();
}

void Trainer::keep_reference() const {
  torch::NoGradGuard no_grad;
  reference_.vae.clear();
  reference_.prior.clear();
  for (const auto& p : model_->vae_parameters()) reference_.vae.push_back(p.detach().clone());
  for (const auto& p : model_->prior_parameters()) reference_.prior.push_back(p.detach().clone());
}

std::pair<double, double> Trainer::moved() const {
  torch::NoGradGuard no_grad;
  auto relative = [](const std::vector<torch::Tensor>& now, const std::vector<torch::Tensor>& then) {
    if (now.empty() || now.size() != then.size()) return 0.0;
    double change = 0, size = 0;
    for (size_t i = 0; i < now.size(); ++i) {
      change += (now[i].detach().to(torch::kDouble) - then[i].to(torch::kDouble)).pow(2).sum().item<double>();
      size += then[i].to(torch::kDouble).pow(2).sum().item<double>();
    }
    if (!std::isfinite(change)) return std::numeric_limits<double>::infinity();
    return std::sqrt(change) / (std::sqrt(size) + 1e-12);
  };
  return {relative(model_->vae_parameters(), reference_.vae), relative(model_->prior_parameters(), reference_.prior)};
}

std::string Trainer::likely_cause() const {
  // Measured first: the parameter group that moved most from the last checkpoint (or the start),
  // relative to its size, when it moved far (a tenth of its size or more) and ten times more
  // than the other group: its rate is the one that exploded.
  const auto [vae, prior] = moved();
  const bool prior_rate = (is_energy_prior(*model_->prior) && prior_optimizer_) || options_.mode() == TrainMode::post_hoc;
  if (options_.mode() != TrainMode::post_hoc && vae >= 0.1 && vae > 10 * prior) return kBlameLr;
  if (prior_optimizer_ && prior >= 0.1 && prior > 10 * vae) return kBlamePriorLr;
  // Neither moved far: the chains of an MCMC objective, else the prior's rate for an energy prior.
  if (objective_->sampler_step_size() > 0) return kBlameStepSize;
  if (prior_rate) return kBlamePriorLr;
  return kBlameLr;
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

void Trainer::handle(const Divergence& d) {
  const std::string cause = likely_cause();
  const auto [moved_vae, moved_prior] = moved();
  const std::string lower = options_.rollback_lower() == "auto" ? cause : options_.rollback_lower();
  const bool roll_back = options_.on_divergence() == DivergencePolicy::rollback && rollbacks_ < options_.max_rollbacks();
  double was = 0;
  if (lower == kBlameLr) was = options_.lr();
  else if (lower == kBlamePriorLr) was = options_.prior_lr();
  else was = objective_->sampler_step_size();
  // A divergence that comes back at the same step after a rollback is said to have done so: a
  // rate far too large does that too, so it alone does not clear the rate. A SNELBO loss that is
  // mostly its normaliser term does: the draw that met the mass stays where it was.
  const bool same_step = rollbacks_ > 0 && d.step == last_divergence_step_;
  last_divergence_step_ = d.step;
  const std::string spike = normaliser_spike(d);
  Json event = Json::object();
  event.set("event", "diverged").set("step", d.step).set("quantity", d.quantity).set("value", d.value)
      .set("value_text", short_number(d.value))
      .set("likely_cause", spike.empty() ? cause : std::string("SNELBO's normaliser term"))
      .set("moved", Json::object().set("vae", moved_vae).set("prior", moved_prior));
  const auto described = step_terms(d.diagnostics);  // what in the loss exploded
  const std::string& terms = described.first;
  const Json& values = described.second;
  auto append = [&] {  // the step's terms after the fields every event has
    if (!terms.empty()) event.set("diagnostics", values);
    if (same_step) event.set("same_step_as_before", true);
    if (writes_) run_dir_.append_metrics(event);
  };
  auto checkpoints = writes_ ? run_dir_.checkpoints() : std::vector<std::string>{};
  const bool can = roll_back && !checkpoints.empty() && was > 0;
  if (can) {
    const double now = was * options_.rollback_factor();
    event.set("action", "rollback").set("lowered", lower).set("was", was).set("now", now);
    append();
    if (writes_) listener_->rolled_back(d.what() + terms, lower, was, now, rollbacks_ + 1, options_.max_rollbacks());
    ++rollbacks_;
    resume_latest();
    run_dir_.roll_back_metrics(state_.step);
    recent_losses_.clear();
    if (lower == kBlameLr) options_.lr(now);
    else if (lower == kBlamePriorLr) options_.prior_lr(now);
    else objective_->set_sampler_step_size(now);
    if (rate_listener_) rate_listener_(lower, was, now);
    return;
  }
  event.set("action", "stop");
  append();
  std::string why;
  if (options_.on_divergence() == DivergencePolicy::rollback)
    why = rollbacks_ >= options_.max_rollbacks() ? " after " + std::to_string(rollbacks_) + " rollback(s)"
                                                 : " (no checkpoint to roll back to)";
  std::ostringstream text;
  text << d.what() << terms << why;
  if (!spike.empty()) text << "; " << spike;
  TrainingDiverged stopped(text.str());
  stopped.cause = cause;
  stopped.cause_value = cause == kBlameStepSize ? objective_->sampler_step_size()
                        : cause == kBlamePriorLr ? options_.prior_lr()
                                                 : options_.lr();
  stopped.lowered = lower;
  stopped.normaliser_spike = !spike.empty();
  stopped.same_step = same_step;
  stopped.nothing_saved = checkpoints.empty();
  stopped.at_first_step = state_.step == 0;
  stopped.run_dir = run_dir_.path();
  throw stopped;
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

void Trainer::save_checkpoint(const std::string& path) const {
  // A checkpoint is what a rollback returns to: never one with NaN or infinite parameters.
  if (const auto bad = first_non_finite(*model_); !bad.empty())
    throw Divergence(state_.step, "parameters (" + bad + ")", std::nan(""));
  // An objective's state of each process's own (MCMC chains) comes to rank 0 from every process.
  std::vector<std::string> per_process;
  if (dist_->parallel() && objective_->per_process_state()) {
    torch::serialize::OutputArchive own;
    objective_->save(own);
    std::ostringstream bytes;
    own.save_to(bytes);
    per_process = dist_->all_gather_bytes(bytes.str(), "the gathering of every rank's chains for a checkpoint");
  }
  if (!writes_) return;  // only rank 0 writes (the parameters are the same on every process)
  torch::serialize::OutputArchive archive;
  archive.write("format", scalar(kCheckpointFormat));
  torch::serialize::OutputArchive model_archive;
  model_->save(model_archive);
  archive.write("model", model_archive);
  if (vae_optimizer_) {
    torch::serialize::OutputArchive a;
    vae_optimizer_->save(a);
    archive.write("vae_optimizer", a);
  }
  if (prior_optimizer_) {
    torch::serialize::OutputArchive a;
    prior_optimizer_->save(a);
    archive.write("prior_optimizer", a);
  }
  torch::serialize::OutputArchive objective_archive;
  objective_->save(objective_archive);
  archive.write("objective", objective_archive);
  if (!per_process.empty()) {
    // Rank r's objective archive, as bytes; rank 0's is "objective" above.
    torch::serialize::OutputArchive ranks;
    for (size_t r = 1; r < per_process.size(); ++r) ranks.write(std::to_string(r), bytes_tensor(per_process[r]));
    archive.write("objective_of_rank", ranks);
  }
  archive.write("world_size", scalar(static_cast<int64_t>(dist_->world_size())));
  archive.write("generator", generator_state(generator_));
  archive.write("step", scalar(state_.step));
  archive.write("epoch", scalar(state_.epoch));
  archive.write("batch_index", scalar(state_.batch_index));
  archive.write("best_validation", scalar(state_.best_validation));
  archive.write("train_seconds", scalar(state_.train_seconds));
  archive.write("allreduce_seconds", scalar(state_.allreduce_seconds));
  atomic_write(path, sealed_archive_bytes(archive));
  keep_reference();
}

void Trainer::load_checkpoint(const std::string& path) { load_checkpoint_bytes(read_file(path), path); }

// Everything a checkpoint load sets, as it is now, unchecked (no seal, no finiteness test): what
// a load that fails half-way puts back.
std::string Trainer::snapshot() const {
  torch::serialize::OutputArchive archive, model_archive, objective_archive;
  model_->save(model_archive);
  archive.write("model", model_archive);
  if (vae_optimizer_) {
    torch::serialize::OutputArchive a;
    vae_optimizer_->save(a);
    archive.write("vae_optimizer", a);
  }
  if (prior_optimizer_) {
    torch::serialize::OutputArchive a;
    prior_optimizer_->save(a);
    archive.write("prior_optimizer", a);
  }
  objective_->save(objective_archive);
  archive.write("objective", objective_archive);
  std::ostringstream bytes;
  archive.save_to(bytes);
  return bytes.str();
}

void Trainer::restore(const std::string& snapshot) {
  std::istringstream in(snapshot);
  torch::serialize::InputArchive archive, model_archive, objective_archive;
  archive.load_from(in, options_.device());
  archive.read("model", model_archive);
  model_->load(model_archive);
  if (vae_optimizer_) {
    torch::serialize::InputArchive a;
    archive.read("vae_optimizer", a);
    vae_optimizer_->load(a);
  }
  if (prior_optimizer_) {
    torch::serialize::InputArchive a;
    archive.read("prior_optimizer", a);
    prior_optimizer_->load(a);
  }
  archive.read("objective", objective_archive);
  objective_->load(objective_archive);
}

void Trainer::load_checkpoint_bytes(const std::string& bytes, const std::string& path) {
  // Opening: a file that is cut short, changed after it was written (its seal) or not an
  // archive at all is damaged (DataError: resume_latest sets it aside). Nothing is touched yet.
  // A pointer, not std::optional: InputArchive's copy constructor takes a non-const reference,
  // which clang's std::optional refuses to instantiate.
  std::unique_ptr<ArchiveReader> opened;
  try {
    opened = std::make_unique<ArchiveReader>(bytes, options_.device(), "checkpoint " + path);
  } catch (const DataError&) {
    throw;
  } catch (const std::exception& e) {
    throw DataError("checkpoint " + path + " is truncated, corrupt or not a checkpoint: " + first_line(e.what()));
  }
  auto& reader = *opened;
  if (writes_ && !reader.sealed()) listener_->unsealed_checkpoint(path);
  // An intact file that does not fit this run (another format, model, optimiser or objective)
  // is not damage: ResumeError naming both sides, the file left where it is. The load is all or
  // nothing: what it set before it failed is put back, so a caller that goes on (a fresh start,
  // an older checkpoint) goes on from the trainer as it was.
  const std::string config = run_dir_.path().empty() ? std::string("this run's configuration")
                                                     : run_dir_.config_path() + " (this run's configuration)";
  auto mismatch = [&](const std::string& detail) {
    return ResumeError("checkpoint " + path + " does not fit the model, optimiser and objective that " + config +
                       " describes: " + detail + ". Nothing was changed or set aside: the checkpoint was written by "
                       "another configuration (was config.ini edited, or the checkpoint copied from another run?); "
                       "restore the config.ini it was written with, or move the checkpoint out of the run" +
                       (reader.sealed() ? "" : " (it has no seal, so damage is possible too)"));
  };
  {
    torch::Tensor format;
    if (!reader.archive().try_read("format", format))
      throw mismatch("it has no format record");
    if (format.item<int64_t>() != kCheckpointFormat)
      throw mismatch("it has format " + std::to_string(format.item<int64_t>()) + ", this version reads " +
                     std::to_string(kCheckpointFormat));
  }
  const auto before = snapshot();
  const auto state_before = state_;
  const auto generator_before = generator_state(generator_);
  try {
    load_checkpoint_state(reader, path);
    // A step file whose name says another step than it records (a copy, or a stray such as
    // step-9999999999999999999.pt) would pin every resume to it and never be pruned: it is set
    // aside like a damaged one.
    const auto name = std::filesystem::path(path).filename().string();
    if (!run_dir_.path().empty() && name.rfind("step-", 0) == 0 &&
        name != std::filesystem::path(run_dir_.checkpoint_path(state_.step)).filename().string())
      throw DataError("checkpoint " + path + " records step " + std::to_string(state_.step) +
                      ", not the step its name says: a copy or a stray file, not one this run wrote there");
    keep_reference();
  } catch (...) {
    restore(before);
    state_ = state_before;
    set_generator_state(generator_, generator_before);
    try {
      throw;
    } catch (const ResumeError&) {
      throw;
    } catch (const DataError&) {
      throw;
    } catch (const std::exception& e) {
      throw mismatch(first_line(e.what()));
    }
  }
}

void Trainer::load_checkpoint_state(ArchiveReader& reader, const std::string& path) {
  auto& archive = reader.archive();
  auto read = [&reader](const char* key) { return reader.tensor(key); };
  torch::serialize::InputArchive model_archive;
  archive.read("model", model_archive);
  load_module_checked(*model_, model_archive);
  if (vae_optimizer_) {
    torch::serialize::InputArchive a;
    archive.read("vae_optimizer", a);
    vae_optimizer_->load(a);
  }
  if (prior_optimizer_) {
    torch::serialize::InputArchive a;
    archive.read("prior_optimizer", a);
    prior_optimizer_->load(a);
  }
  // A checkpoint without a world size is one process's (written before data-parallel training).
  torch::Tensor world;
  const int64_t wrote = archive.try_read("world_size", world) ? world.item<int64_t>() : 1;
  if (wrote != dist_->world_size() && objective_->per_process_state())
    throw ResumeError("checkpoint " + path + " was written by " + std::to_string(wrote) + " process" +
                      (wrote == 1 ? "" : "es") + ", and its '" + objective_->name() + "' chains are each process's "
                      "own: resume it with " + std::to_string(wrote) + " process" + (wrote == 1 ? "" : "es") +
                      ", not " + std::to_string(dist_->world_size()),
                      wrote);
  torch::serialize::InputArchive objective_archive;
  if (dist_->rank() == 0 || !objective_->per_process_state()) {
    archive.read("objective", objective_archive);
  } else {
    torch::serialize::InputArchive ranks;
    archive.read("objective_of_rank", ranks);
    const auto bytes = rank_bytes(ranks, dist_->rank());
    objective_archive.load_from(bytes.data(), bytes.size(), options_.device());
  }
  objective_->load(objective_archive);
  set_generator_state(generator_, read("generator"));
  TrainState s;
  s.step = read("step").item<int64_t>();
  s.epoch = read("epoch").item<int64_t>();
  s.batch_index = read("batch_index").item<int64_t>();
  s.best_validation = read("best_validation").item<double>();
  s.train_seconds = read("train_seconds").item<double>();
  torch::Tensor allreduce;  // absent from checkpoints written before it was timed
  if (archive.try_read("allreduce_seconds", allreduce)) s.allreduce_seconds = allreduce.item<double>();
  state_ = s;
}

bool Trainer::resume_latest() {
  // In data-parallel training rank 0 finds the checkpoint and sends its bytes to the others.
  std::string bytes, refused;
  if (writes_) {
    auto all = run_dir_.checkpoints();
    while (!all.empty()) {
      try {
        bytes = read_file(all.back());
        load_checkpoint_bytes(bytes, all.back());
        break;
      } catch (const ResumeError& e) {
        if (!dist_->parallel()) throw;
        // Said to every process below, so that all of them stop with it: "PROCESSES\nMESSAGE".
        refused = std::to_string(e.processes) + "\n" + e.what();
        bytes.clear();
        break;
      } catch (const DataError& e) {
        bytes.clear();
        // Set aside, not deleted: the user may want to look at it; it no longer counts as a checkpoint.
        const std::string aside = all.back() + ".corrupt";
        std::error_code ec;
        std::filesystem::rename(all.back(), aside, ec);
        if (writes_) listener_->damaged_checkpoint_set_aside(aside, e.what());
        skipped_.push_back(all.back() + ": " + first_line(e.what()));
        all.pop_back();
      }
    }
  }
  if (!dist_->parallel()) return !bytes.empty();
  refused = dist_->broadcast_bytes(refused, 0, "the broadcast of whether rank 0 can resume");
  if (!refused.empty()) {
    const auto eol = refused.find('\n');
    throw ResumeError(refused.substr(eol + 1), std::stoll(refused.substr(0, eol)));
  }
  bytes = dist_->broadcast_bytes(bytes, 0, "the broadcast of the checkpoint to resume from");
  if (!bytes.empty() && !writes_) load_checkpoint_bytes(bytes, "rank 0's checkpoint");
  return !bytes.empty();
}

std::string first_non_finite(const torch::nn::Module& module) {
  torch::NoGradGuard no_grad;
  for (const auto& p : module.named_parameters())
    if (p.value().defined() && !torch::isfinite(p.value()).all().item<bool>()) return p.key();
  for (const auto& b : module.named_buffers())
    if (b.value().defined() && b.value().is_floating_point() && !torch::isfinite(b.value()).all().item<bool>())
      return b.key();
  return "";
}

void load_module_checked(torch::nn::Module& module, torch::serialize::InputArchive& archive) {
  auto shapes = [&module] {
    std::vector<std::pair<std::string, std::vector<int64_t>>> out;
    for (const auto& p : module.named_parameters()) out.emplace_back(p.key(), p.value().sizes().vec());
    for (const auto& b : module.named_buffers()) out.emplace_back(b.key(), b.value().sizes().vec());
    return out;
  };
  const auto expected = shapes();
  // Module::load re-targets each tensor in turn: on a failure the ones before it would hold the
  // checkpoint's values. These share the old storage, so that the module can be put back.
  std::vector<std::pair<torch::Tensor, torch::Tensor>> was;
  for (auto& p : module.named_parameters()) was.emplace_back(p.value(), p.value().detach());
  for (auto& b : module.named_buffers()) was.emplace_back(b.value(), b.value().detach());
  try {
    module.load(archive);
    const auto stored = shapes();
    for (size_t i = 0; i < expected.size(); ++i)
      if (stored[i].second != expected[i].second)
        throw std::runtime_error("tensor " + expected[i].first + " has shape " +
                                 c10::str(c10::IntArrayRef(stored[i].second)) + " in the checkpoint where the model has " +
                                 c10::str(c10::IntArrayRef(expected[i].second)));
    if (const auto bad = first_non_finite(module); !bad.empty())
      throw std::runtime_error("tensor " + bad + " holds NaN or infinite values");
  } catch (...) {
    torch::NoGradGuard no_grad;
    for (auto& [tensor, old] : was) tensor.set_(old);
    throw;
  }
}

bool load_model_from_checkpoint(const std::string& path, VaeModel& model, torch::Device device) {
  auto bytes = read_file(path);
  try {
    ArchiveReader reader(bytes, device, "checkpoint " + path);
    torch::serialize::InputArchive model_archive;
    reader.archive().read("model", model_archive);
    load_module_checked(model, model_archive);
    return reader.sealed();
  } catch (const DataError&) {
    throw;  // names the file already
  } catch (const std::exception& e) {
    throw DataError("checkpoint " + path + " is truncated, corrupt or from another model: " + first_line(e.what()));
  }
}

}  // namespace vae_ebm
