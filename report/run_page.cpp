// The sections of a report made from a run's files (see run_page.h).
#include "report/run_page.h"

#include <cmath>
#include <filesystem>
#include <limits>

#include "report/svg.h"

namespace vae_ebm::report {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

std::string paragraph(const std::string& text) { return "<p>" + html_escape(text) + "</p>\n"; }

// A member of a record that is itself an estimate ({value, std_error, ...}), or nullptr.
const JsonValue* estimate(const JsonValue& record, const std::string& key) {
  const JsonValue* e = record.find(key);
  return e && e->is_object() ? e : nullptr;
}

// The x values of records: their step, or their seconds of training steps (their own
// train_seconds, else read off the clock).
std::vector<double> steps_of(const std::vector<const JsonValue*>& records) {
  std::vector<double> x;
  for (const auto* r : records) x.push_back(r->number("step"));
  return x;
}
std::vector<double> seconds_of(const std::vector<const JsonValue*>& records, const StepClock& clock) {
  std::vector<double> x;
  for (const auto* r : records) {
    const double own = r->number("train_seconds");
    x.push_back(std::isfinite(own) ? own : clock.seconds_at(r->number("step")));
  }
  return x;
}
std::vector<double> values_of(const std::vector<const JsonValue*>& records, const std::string& key) {
  std::vector<double> y;
  for (const auto* r : records) y.push_back(r->number(key));
  return y;
}

// A series of one number of each train record, against the step.
Series train_series(const std::string& name, const std::vector<const JsonValue*>& train, const std::string& key) {
  Series s;
  s.name = name;
  s.x = steps_of(train);
  s.y = values_of(train, key);
  return s;
}

// A series of an estimate field ({value, std_error}) of each record, with its ± 1 s.e. band.
Series estimate_series(const std::string& name, const std::vector<const JsonValue*>& records, const std::string& key,
                       const std::vector<double>& x) {
  Series s;
  s.name = name;
  s.x = x;
  s.markers = true;
  for (const auto* r : records) {
    const JsonValue* e = estimate(*r, key);
    const double v = e ? e->number("value") : kNaN, se = e ? e->number("std_error") : kNaN;
    s.y.push_back(v);
    s.band_low.push_back(std::isfinite(se) ? v - se : v);
    s.band_high.push_back(std::isfinite(se) ? v + se : v);
  }
  return s;
}

bool any_key(const std::vector<const JsonValue*>& records, const std::string& key) {
  for (const auto* r : records)
    if (r->find(key)) return true;
  return false;
}

std::string charts(const std::vector<std::string>& figures) {
  std::string out = "<div class=\"figures\">\n";
  for (const auto& f : figures) out += f;
  return out + "</div>\n";
}

std::string json_scalar_text(const JsonValue& v) {
  switch (v.kind()) {
    case JsonValue::Kind::Null: return "null";
    case JsonValue::Kind::Boolean: return v.as_bool() ? "true" : "false";
    case JsonValue::Kind::Number: {
      const double d = v.as_number();
      return d == std::floor(d) && std::abs(d) < 1e15 ? number_text(d, 0) : number_text(d, 4);
    }
    case JsonValue::Kind::String: return v.as_string();
    default: return "";
  }
}

}  // namespace

bool is_energy_prior(const RunFiles& run) { return run.config_value("prior") == "ebm"; }

std::string figure(const std::string& content, const std::string& caption, const std::string& kind) {
  return "<figure class=\"" + kind + "\">\n" + content + "<figcaption>" + html_escape(caption) + "</figcaption>\n</figure>\n";
}

std::string chart_figure(const Chart& chart, const std::string& caption, const std::string& missing) {
  if (chart.empty()) return note(missing);
  return figure(chart.svg(), caption, "chart");
}

std::string note(const std::string& text) { return "<p class=\"note\">" + html_escape(text) + "</p>\n"; }

std::string summary_html(const RunFiles& run) {
  Table t;
  t.text_columns = 2;
  for (const char* key : {"dataset", "architecture", "hidden", "latent", "prior", "energy-hidden", "objective", "mode",
                          "batch-size", "epochs", "lr", "seed"}) {
    const auto v = run.config_value(key);
    if (!v.empty() && (key != std::string("energy-hidden") || is_energy_prior(run))) t.rows.push_back({key, v});
  }
  const auto finished = run.events("finished");
  const auto interrupted = run.events("interrupted");
  const auto train = run.events("train");
  if (!finished.empty()) {
    const auto& f = *finished.back();
    t.rows.push_back({"status", "finished at step " + number_text(f.number("step"), 0)});
    t.rows.push_back({"training steps (s)", number_text(f.number("train_seconds"), 1)});
    t.rows.push_back({"whole run (s)", number_text(f.number("seconds"), 1)});
    t.rows.push_back({"best validation bound", number_text(f.number("best_validation_bound"), 3)});
  } else if (!interrupted.empty()) {
    t.rows.push_back({"status", "interrupted at step " + number_text(interrupted.back()->number("step"), 0) + " by " +
                                    interrupted.back()->text("signal", "a signal")});
  } else if (!train.empty()) {
    t.rows.push_back({"status", "no finished record: running, or stopped (last record at step " +
                                    number_text(train.back()->number("step"), 0) + ")"});
  }
  return t.html();
}

namespace {
// A rate as metrics.jsonl names it ("lr"; older runs wrote "--lr"), as its flag.
std::string rate_flag(const std::string& rate) {
  const bool named = !rate.empty() && rate.find(' ') == std::string::npos && rate.rfind("--", 0) != 0;
  return named ? "--" + rate : rate;
}
}  // namespace

std::string events_html(const RunFiles& run) {
  std::string items;
  for (const auto& r : run.metrics.records) {
    const auto event = r.text("event");
    std::string text;
    if (event == "diverged") {
      text = "diverged at step " + number_text(r.number("step"), 0) + ": " + r.text("quantity") + " = " +
             r.text("value_text", number_text(r.number("value"))) + "; likely cause " + rate_flag(r.text("likely_cause"));
      if (r.text("action") == "rollback")
        text += "; rolled back, " + rate_flag(r.text("lowered")) + " lowered from " + number_text(r.number("was"), 6) + " to " +
                number_text(r.number("now"), 6);
      else if (!r.text("action").empty())
        text += "; " + r.text("action");
    } else if (event == "spike") {
      text = r.text("quantity") + " spiked at step " + number_text(r.number("step"), 0) + ": " +
             number_text(r.number("value"), 2) + " against a median of " + number_text(r.number("median"), 2);
      if (const JsonValue* terms = r.find("diagnostics"); terms && terms->is_object()) {
        std::string listed;
        for (const auto& [name, value] : terms->members()) listed += (listed.empty() ? "" : ", ") + name + " " + json_scalar_text(value);
        text += " (" + listed + ")";
      }
      text += "; the step was taken (--on-divergence warn)";
    } else if (event == "resumed") {
      text = "resumed at step " + number_text(r.number("step"), 0);
      if (const JsonValue* changed = r.find("changed"); changed && changed->is_object())
        for (const auto& [flag, values] : changed->members())
          text += "; --" + flag + " " + values.text("was") + " → " + values.text("now");
      const double moved = r.number("rolled_back_records");
      if (moved > 0) text += "; " + number_text(moved, 0) + " records of later steps moved to metrics.rolled-back.jsonl";
      if (const JsonValue* skipped = r.find("skipped_checkpoints"); skipped && skipped->is_array())
        for (const auto& s : skipped->as_array()) text += "; damaged checkpoint set aside: " + json_scalar_text(s);
    } else if (event == "interrupted") {
      text = "interrupted at step " + number_text(r.number("step"), 0) + " by " + r.text("signal", "a signal") + " after " +
             number_text(r.number("seconds"), 1) + " s";
    } else if (event == "initialised") {
      text = "started " + r.text("parts") + " from " + r.text("from");
    } else {
      continue;
    }
    const bool warning = event == "diverged" || event == "spike";
    items += "<li" + std::string(warning ? " class=\"warning\"" : "") + ">" + html_escape(text) + "</li>\n";
  }
  std::string out;
  if (!run.metrics.note.empty()) out += note(run.metrics.note);
  if (items.empty()) return out + note("No divergence, spike, rollback, interruption or resumption in metrics.jsonl.");
  return out + "<ul class=\"events\">\n" + items + "</ul>\n";
}

std::string evaluations_html(const RunFiles& run) {
  if (run.evaluations.empty())
    return note("Not evaluated yet: vae-ebm evaluate " + run.dir + " writes the records this section shows.");
  std::string out;
  for (const auto& evaluation : run.evaluations) {
    const JsonValue& r = evaluation.record;
    out += "<h4>" + html_escape(evaluation.file) + "</h4>\n";
    out += paragraph(r.text("dataset") + ", " + r.text("split") + " split, " + number_text(r.number("images"), 0) +
                     " images, K = " + number_text(r.number("samples_K"), 0) + ", checkpoint " +
                     std::filesystem::path(r.text("checkpoint")).filename().string() + ", " +
                     number_text(r.number("seconds"), 1) + " s");
    if (const auto warning = r.text("warning"); !warning.empty())
      out += "<p class=\"warning\">" + html_escape(warning) + "</p>\n";
    Table t;
    t.header = {"estimator", "value (nats)", "std. error", "count", "ESS"};
    if (const JsonValue* estimates = r.find("estimates"); estimates && estimates->is_array())
      for (const auto& e : estimates->as_array())
        t.rows.push_back({e.text("estimator"), number_text(e.number("value")), number_text(e.number("std_error")),
                          number_text(e.number("count"), 0), ""});
    if (const JsonValue* log_z = estimate(r, "log_z"))
      t.rows.push_back({"log Z " + log_z->text("estimator"), number_text(log_z->number("value")),
                        number_text(log_z->number("std_error")), number_text(log_z->number("count"), 0),
                        number_text(log_z->number("ess"), 1)});
    if (const JsonValue* b_used = estimate(r, "b_used"))
      t.rows.push_back({"b used: " + b_used->text("estimator"), number_text(b_used->number("value")),
                        number_text(b_used->number("std_error")), number_text(b_used->number("count"), 0),
                        number_text(b_used->number("ess"), 1)});
    if (std::isfinite(r.number("b"))) t.rows.push_back({"b (learned)", number_text(r.number("b")), "", "", ""});
    out += t.html();
    if (const JsonValue* log_z = estimate(r, "log_z"); log_z && !log_z->text("how").empty())
      out += note("log Z: " + log_z->text("how"));
    if (const JsonValue* q = r.find("sample_quality"); q && q->is_object()) {
      Table s;
      s.caption = "Sample quality (" + q->text("generated") + ")";
      s.header = {"score", "value"};
      if (const JsonValue* fd = estimate(*q, "frechet_distance"))
        s.rows.push_back({"Fréchet distance", number_text(fd->number("value"))});
      if (const JsonValue* kid = estimate(*q, "kid"))
        s.rows.push_back({"KID (± sd over subsets)", with_error(kid->number("value"), kid->number("std"), 4)});
      if (const JsonValue* prdc = estimate(*q, "prdc"))
        for (const char* key : {"precision", "recall", "density", "coverage"})
          s.rows.push_back({key, number_text(prdc->number(key))});
      if (const JsonValue* score = estimate(*q, "classifier_score"))
        s.rows.push_back({"classifier score (of 10 at most)", with_error(score->number("value"), score->number("std_error"))});
      s.rows.push_back({"feature network", q->text("feature_network") + " (SHA-256 " +
                                               q->text("feature_network_sha256").substr(0, 12) + "...)"});
      out += s.html();
    }
  }
  return out;
}

std::string training_html(const RunFiles& run) {
  if (!run.has_metrics) return note("No metrics.jsonl in " + run.dir + ": no training curves.");
  const StepClock clock(run);
  const auto train = run.events("train");
  const auto validation = run.events("validation");
  std::vector<std::string> figures;

  auto loss_chart = [&](bool by_seconds) {
    Chart c(by_seconds ? "Training loss against time" : "Training loss", by_seconds ? "seconds of training steps" : "step",
            "loss (nats per image)");
    Series s;
    s.name = "loss";
    s.x = by_seconds ? seconds_of(train, clock) : steps_of(train);
    s.y = values_of(train, "loss");
    c.add(s);
    return c;
  };
  figures.push_back(chart_figure(loss_chart(false), "The training loss of the step logged (train records, key loss).",
                                 "No train records with a loss in metrics.jsonl."));
  figures.push_back(chart_figure(loss_chart(true),
                                 "The same against seconds of training steps: train records carry no time, so theirs is "
                                 "read off the validation records' train_seconds, linearly between them.",
                                 "No train records with a loss, or no validation record with train_seconds to time them."));

  auto bound_chart = [&](bool by_seconds) {
    Chart c(by_seconds ? "Validation bound against time" : "Validation bound",
            by_seconds ? "seconds of training steps" : "step", "bound (nats)");
    std::string estimator = "validation bound";
    for (const auto* v : validation)
      if (const JsonValue* e = estimate(*v, "validation")) estimator = e->text("estimator", estimator);
    c.add(estimate_series(estimator + " ± 1 s.e.", validation, "validation",
                          by_seconds ? seconds_of(validation, clock) : steps_of(validation)));
    return c;
  };
  figures.push_back(chart_figure(bound_chart(false), "The validation bound at each validation, shaded ± 1 standard error.",
                                 "No validation records in metrics.jsonl."));
  figures.push_back(chart_figure(bound_chart(true), "The same against seconds of training steps (train_seconds).",
                                 "No validation records in metrics.jsonl."));

  if (is_energy_prior(run) || any_key(validation, "log_z")) {
    Chart z("log Z and b", "step", "nats");
    z.add(estimate_series("log Z ± 1 s.e.", validation, "log_z", steps_of(validation)));
    Series b;
    b.name = "b (learned)";
    b.x = steps_of(validation);
    b.y = values_of(validation, "b");
    b.markers = true;
    z.add(b);
    figures.push_back(chart_figure(z, "The estimate of log Z at each validation (shaded ± 1 s.e.) and the learned b.",
                                   "No validation record carries log Z."));
    Chart ess("ESS of the log Z estimate", "step", "effective sample size");
    Series e;
    e.x = steps_of(validation);
    double count = kNaN;
    for (const auto* v : validation) {
      const JsonValue* log_z = estimate(*v, "log_z");
      e.y.push_back(log_z ? log_z->number("ess") : kNaN);
      if (log_z) count = log_z->number("count");
    }
    e.name = "ESS (of " + number_text(count, 0) + " samples)";
    e.markers = true;
    ess.add(e);
    figures.push_back(chart_figure(ess, "Effective sample size of the importance weights behind each log Z estimate.",
                                   "No validation record carries the ESS of log Z."));
  }
  Chart rate("Throughput", "step", "images per second");
  rate.add(train_series("images/s", train, "images_per_second"));
  figures.push_back(chart_figure(rate, "Training images per second over each logging window (images_per_second).",
                                 "No train records with images_per_second."));
  // The gradient's norm and how often it was clipped (--clip-grad-norm), and the schedule's
  // factors: what settles, or fails to settle, a run (runs before they were logged have none).
  if (any_key(train, "grad_norm")) {
    Chart g("Gradient norm", "step", "norm of the whole gradient");
    g.add(train_series("mean over the window", train, "grad_norm"));
    g.add(train_series("largest in the window", train, "grad_norm_max"));
    std::string caption = "The norm of the gradient of every trained parameter, before clipping: the mean and the largest "
                          "over the steps of each logging window (grad_norm, grad_norm_max).";
    const auto limit = run.config_value("clip-grad-norm");
    if (!limit.empty() && limit != "0") caption += " Clipped to " + limit + " (--clip-grad-norm).";
    figures.push_back(chart_figure(g, caption, "No gradient norms recorded."));
    if (!limit.empty() && limit != "0") {
      Chart clipped("Steps clipped", "step", "fraction of the window's steps");
      clipped.add(train_series("clipped", train, "clipped_fraction"));
      figures.push_back(chart_figure(clipped, "The fraction of each logging window's steps whose gradient was clipped.",
                                     "No clipped fractions recorded."));
    }
  }
  if (any_key(train, "lr")) {
    Chart r("Schedule", "step", "value");
    r.add(train_series("learning rate (encoder and decoder)", train, "lr"));
    figures.push_back(chart_figure(r, "The encoder's and decoder's learning rate at each train record (--lr-schedule, "
                                      "--lr-warmup-steps; the prior's follows the same factor).",
                                   "No learning rates recorded."));
  }
  if (any_key(train, "kl_weight") || any_key(train, "prior_learning")) {
    Chart w("Warm-ups", "step", "weight");
    if (any_key(train, "kl_weight")) w.add(train_series("KL weight", train, "kl_weight"));
    if (any_key(train, "prior_learning")) w.add(train_series("prior learning (0 or 1)", train, "prior_learning"));
    figures.push_back(chart_figure(w, "The KL term's weight in the training loss (--kl-warmup-epochs) and whether the "
                                      "prior was learning (--prior-start-epoch).",
                                   "No warm-up recorded."));
  }
  return charts(figures);
}

std::string langevin_metrics_html(const RunFiles& run) {
  const auto train = run.events("train");
  if (!any_key(train, "energy_negative") && !any_key(train, "acceptance"))
    return note("metrics.jsonl holds no Langevin traces: only the MCMC objectives (short-run-mcmc, long-run-mcmc) "
                "record their chains (energy_positive, energy_negative, acceptance); this run's objective is " +
                run.config_value("objective") + ".");
  std::vector<std::string> figures;
  Chart energy("Energies in training", "step", "mean f(z)");
  for (const auto& [key, name] : std::vector<std::pair<std::string, std::string>>{
           {"energy_positive", "f at posterior samples"}, {"energy_negative", "f at the chains' ends"}})
    energy.add(train_series(name, train, key));
  figures.push_back(chart_figure(energy, "Mean energy at the posterior samples and at the negatives the Langevin chains "
                                         "reach (train records).",
                                 "No energies recorded."));
  Chart acceptance("Langevin acceptance in training", "step", "fraction of moves accepted");
  acceptance.add(train_series("acceptance", train, "acceptance"));
  figures.push_back(chart_figure(acceptance, "Fraction of the chains' moves accepted (1 without the Metropolis correction).",
                                 "No acceptance recorded."));
  return charts(figures);
}

std::string config_html(const RunFiles& run) {
  return "<details><summary>config.ini</summary>\n<pre>" + html_escape(run.config_text) + "</pre>\n</details>\n";
}

std::string validation_overlay_html(const std::vector<const RunFiles*>& runs, const std::vector<std::string>& labels) {
  std::vector<std::string> figures;
  for (const bool by_seconds : {false, true}) {
    Chart c(by_seconds ? "Validation bounds against time" : "Validation bounds",
            by_seconds ? "seconds of training steps" : "step", "bound (nats)");
    for (size_t i = 0; i < runs.size(); ++i) {
      const StepClock clock(*runs[i]);
      const auto validation = runs[i]->events("validation");
      c.add(estimate_series(labels[i], validation, "validation",
                            by_seconds ? seconds_of(validation, clock) : steps_of(validation)));
    }
    c.size(540, 320);
    figures.push_back(chart_figure(c, "Each run's validation bound, shaded ± 1 standard error.",
                                   "No run has validation records."));
  }
  return charts(figures);
}

}  // namespace vae_ebm::report
