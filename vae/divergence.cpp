// Divergence: what counts as one (a training loss that is not finite, huge, or far above the
// median of the recent ones), what the trainer does on one (stop, roll back lowering a rate,
// or log the spike and go on), and which rate it blames, measured from how far each parameter
// group moved since the last checkpoint.
#include <torch/torch.h>

#include "vae/trainer.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
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

}  // namespace vae_ebm
