#pragma once
// What a report reads from a run directory without the model: config.ini, metrics.jsonl, the
// evaluation records and the sample PNGs, and the series the charts draw from them.
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "report/html.h"
#include "report/json_read.h"

namespace vae_ebm::report {

struct RunFiles {
  std::string dir;
  std::string records_dir;  // where the evaluation records were read (the run directory unless told)
  std::string config_text;                                  // config.ini as written
  std::vector<std::pair<std::string, std::string>> config;  // its key=value lines, in order
  JsonLines metrics;                                        // metrics.jsonl (empty if none)
  bool has_metrics = false;
  struct Evaluation {
    std::string file;  // relative to records_dir
    JsonValue record;
  };
  // evaluations/*.json by name, then evaluation.json unless it repeats one of them (it is
  // the newest evaluation of the run's own data set, written twice).
  std::vector<Evaluation> evaluations;
  std::optional<JsonValue> evaluation_json;  // RUN/evaluation.json, what comparisons read
  std::vector<std::string> sample_pngs;      // RUN/samples/*.png, by name

  // A config value ("" when absent).
  std::string config_value(const std::string& key) const;
  // The records of metrics.jsonl whose "event" is `event`, in order.
  std::vector<const JsonValue*> events(const std::string& event) const;
};

// Reads RUN_DIR, and its evaluation records from `records_dir` (evaluate --out; default the
// run directory). Throws DataError when it is not a run directory (no config.ini, naming the
// path) or a file in it is malformed (naming the file and line).
RunFiles read_run_files(const std::string& dir, const std::string& records_dir = "");

// The seconds of training steps at a step: train records carry none, so they are read off
// the (step, train_seconds) points of the validation, finished and interrupted records,
// linearly between them and from (0, 0); NaN past the last such point (not extrapolated).
class StepClock {
 public:
  explicit StepClock(const RunFiles& run);
  double seconds_at(double step) const;
  bool empty() const { return points_.size() < 2; }

 private:
  std::vector<std::pair<double, double>> points_;  // (step, seconds), steps increasing
};

// The flags whose values differ between the runs' config.ini (run-dir excluded: it always
// does), one row per flag, one column per run; empty rows when all agree.
Table differing_flags(const std::vector<const RunFiles*>& runs, const std::vector<std::string>& labels);

}  // namespace vae_ebm::report
