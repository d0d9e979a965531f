#pragma once
// What a report reads from a run directory without the model: config.ini, metrics.jsonl, the
// evaluation records and the sample PNGs, and the series the charts draw from them.
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "data/run_config.h"
#include "report/html.h"
#include "report/json_read.h"

namespace vae_ebm::report {

struct RunFiles {
  std::string dir;
  std::string records_dir;  // where the evaluation records were read (the run directory unless told)
  std::string config_text;  // config.ini as written
  RunConfig config;         // the same, read (data/run_config.h)
  JsonLines metrics;        // metrics.jsonl (empty if none)
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
  std::string config_value(const std::string& key) const { return config.value(key); }
  // The records of metrics.jsonl whose "event" is `event`, in order.
  std::vector<const JsonValue*> events(const std::string& event) const;
};

// Reads RUN_DIR, and its evaluation records from `records_dir` (evaluate --out; default the
// run directory). Throws DataError when it is not a run directory (no config.ini, naming the
// path) or a file in it is malformed (naming the file and line).
RunFiles read_run_files(const std::string& dir, const std::string& records_dir = "");

// A file of a run directory as a report may read it: a regular file, not a symbolic link (a run
// directory from someone else could link /etc/passwd or /dev/zero in), opened without blocking
// (a FIFO would hang the reader) and at most `max_bytes` long. Throws DataError naming the file
// and what it is.
std::string read_run_file(const std::string& path, size_t max_bytes);
// Its limits: config.ini 1 MB, metrics.jsonl 512 MB, an evaluation record 64 MB, a PNG 64 MB.
constexpr size_t kMaxConfigBytes = size_t{1} << 20;
constexpr size_t kMaxMetricsBytes = size_t{512} << 20;
constexpr size_t kMaxRecordBytes = size_t{64} << 20;
constexpr size_t kMaxPngBytes = size_t{64} << 20;
// `text` with its control bytes (below 0x20 but tab and newline, and 0x7f) as '?': what reaches a
// terminal from a run directory cannot move its cursor or change its colours.
std::string printable(const std::string& text);

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
