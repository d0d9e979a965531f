// Comparing evaluated runs (see compare.h); the arithmetic is bench/paired.py's.
#include "report/compare.h"

#include <cmath>
#include <cstdio>
#include <stdexcept>

#include "data/error.h"

namespace vae_ebm::report {

std::string bound_kind(const std::string& estimator) {
  const auto underscore = estimator.rfind('_');
  const std::string base = underscore == std::string::npos ? estimator : estimator.substr(0, underscore);
  if (base == "ELBO" || base == "SNELBO") return "bound";
  if (base == "IWAE" || base == "SN-IWAE") return "importance-weighted";
  return "";
}

PairedGain paired_gain(const std::vector<double>& run, const std::vector<double>& baseline, double run_log_z_se,
                       double baseline_log_z_se) {
  if (run.size() != baseline.size())
    throw DataError("paired gain: the run has " + std::to_string(run.size()) + " per-image values, the baseline " +
                    std::to_string(baseline.size()));
  const size_t n = run.size();
  if (n < 2) throw DataError("paired gain: needs at least 2 images, got " + std::to_string(n));
  double sum = 0;
  for (size_t i = 0; i < n; ++i) {
    if (!std::isfinite(run[i]) || !std::isfinite(baseline[i]))
      throw DataError("paired gain: image " + std::to_string(i) + " has a NaN or infinite bound");
    sum += run[i] - baseline[i];
  }
  PairedGain g;
  g.count = static_cast<int64_t>(n);
  g.mean = sum / static_cast<double>(n);
  double squares = 0;
  for (size_t i = 0; i < n; ++i) {
    const double d = run[i] - baseline[i] - g.mean;
    squares += d * d;
  }
  g.se_differences = std::sqrt(squares / static_cast<double>(n - 1)) / std::sqrt(static_cast<double>(n));
  g.se_log_z = std::hypot(std::isfinite(run_log_z_se) ? run_log_z_se : 0.0,
                          std::isfinite(baseline_log_z_se) ? baseline_log_z_se : 0.0);
  g.se_total = std::hypot(g.se_differences, g.se_log_z);
  return g;
}

double EvaluatedRun::log_z_std_error() const {
  const JsonValue* log_z = record.find("log_z");
  const double se = log_z ? log_z->number("std_error") : 0.0;
  return std::isfinite(se) ? se : 0.0;
}

void check_same_images(const EvaluatedRun& run, const EvaluatedRun& baseline) {
  auto refuse = [&](const std::string& what, const std::string& mine, const std::string& theirs) {
    throw DataError("cannot compare " + run.label + " with " + baseline.label + ": they were evaluated on different images (" +
                    what + " " + mine + " against " + theirs + "); evaluate both on the same data set and split");
  };
  for (const char* key : {"dataset", "split"})
    if (run.record.text(key) != baseline.record.text(key))
      refuse(std::string(key), "'" + run.record.text(key) + "'", "'" + baseline.record.text(key) + "'");
  const double a = run.record.number("images"), b = baseline.record.number("images");
  if (!(a == b)) refuse("images", number_text(a, 0), number_text(b, 0));
  const JsonValue* data_a = run.record.find("data");
  const JsonValue* data_b = baseline.record.find("data");
  if (data_a && data_b && data_a->text("fingerprint") != data_b->text("fingerprint"))
    refuse("data fingerprint", data_a->text("fingerprint").substr(0, 12), data_b->text("fingerprint").substr(0, 12));
  if (!run.binarisation_seed.empty() && !baseline.binarisation_seed.empty() &&
      run.binarisation_seed != baseline.binarisation_seed)
    refuse("binarisation seed", run.binarisation_seed, baseline.binarisation_seed);
}

namespace {

// The record's estimate named `estimator`, or nullptr.
const JsonValue* estimate_named(const JsonValue& record, const std::string& estimator) {
  const JsonValue* estimates = record.find("estimates");
  if (!estimates || !estimates->is_array()) return nullptr;
  for (const auto& e : estimates->as_array())
    if (e.text("estimator") == estimator) return &e;
  return nullptr;
}

}  // namespace

Table comparison_table(const std::vector<EvaluatedRun>& runs, size_t baseline) {
  if (runs.empty()) throw DataError("no runs to compare");
  if (baseline >= runs.size()) throw std::logic_error("comparison_table: no baseline " + std::to_string(baseline));
  const EvaluatedRun& base = runs[baseline];
  for (const auto& run : runs) check_same_images(run, base);
  Table table;
  table.id = "comparison";
  table.text_columns = 2;
  table.caption = "Bounds on " + base.record.text("dataset") + " (" + base.record.text("split") + " split, " +
                  number_text(base.record.number("images"), 0) + " images), in nats; gain over " + base.label +
                  ": mean per-image difference ± its total standard error (the differences' and both runs' log Z "
                  "standard errors in quadrature)";
  table.header = {"run", "estimator", "bound ± s.e.", "gain over " + base.label, "s.e. of differences", "log Z s.e. (both)"};
  for (const char* kind : {"bound", "importance-weighted"}) {
    const std::vector<double>* base_values = nullptr;
    std::string base_name;
    for (const auto& [name, values] : base.per_image)
      if (bound_kind(name) == kind) base_values = &values, base_name = name;
    for (size_t r = 0; r < runs.size(); ++r) {
      const auto& run = runs[r];
      for (const auto& [name, values] : run.per_image) {
        if (bound_kind(name) != kind) continue;
        const JsonValue* e = estimate_named(run.record, name);
        const std::string bound = e ? with_error(e->number("value"), e->number("std_error"), 2) : "n/a";
        if (r == baseline) {
          table.rows.push_back({run.label, name, bound, "baseline", "", ""});
        } else if (!base_values) {
          table.rows.push_back({run.label, name, bound, "n/a (the baseline has no " + std::string(kind) + ")", "", ""});
        } else {
          if (values.size() != base_values->size())
            throw DataError("cannot compare " + run.label + " with " + base.label + ": " + std::to_string(values.size()) +
                            " per-image values in " + name + ", " + std::to_string(base_values->size()) + " in " +
                            base_name);
          const auto g = paired_gain(values, *base_values, run.log_z_std_error(), base.log_z_std_error());
          char gain[64];
          std::snprintf(gain, sizeof gain, "%+.2f ± %.2f", g.mean, g.se_total);
          table.rows.push_back({run.label, name, bound, gain, number_text(g.se_differences, 3),
                                number_text(g.se_log_z, 3)});
        }
      }
    }
  }
  return table;
}

}  // namespace vae_ebm::report
