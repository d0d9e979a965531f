// What a report reads from a run directory (see run_files.h).
#include "report/run_files.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <map>
#include <set>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "data/error.h"
#include "data/files.h"

namespace vae_ebm::report {

namespace fs = std::filesystem;

std::vector<const JsonValue*> RunFiles::events(const std::string& event) const {
  std::vector<const JsonValue*> out;
  for (const auto& r : metrics.records)
    if (r.text("event") == event) out.push_back(&r);
  return out;
}

namespace {

// Two records of one evaluation (evaluation.json and its copy in evaluations/) agree on
// these; the per-image file they name differs.
bool same_evaluation(const JsonValue& a, const JsonValue& b) {
  for (const char* key : {"dataset", "split", "checkpoint"})
    if (a.text(key) != b.text(key)) return false;
  return a.number("seconds") == b.number("seconds") && a.number("images") == b.number("images");
}

// The regular files (not links to one) of a directory with the extension.
std::vector<std::string> files_with_extension(const std::string& dir, const std::string& extension) {
  std::vector<std::string> out;
  std::error_code ec;
  if (!fs::is_directory(fs::symlink_status(dir, ec)) ) return out;
  for (const auto& entry : fs::directory_iterator(dir, ec))
    if (fs::is_regular_file(entry.symlink_status(ec)) && entry.path().extension() == extension)
      out.push_back(entry.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

std::string read_run_file(const std::string& path, size_t max_bytes) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0 && S_ISLNK(st.st_mode))
      throw DataError(path + " is a symbolic link: a report reads only the run directory's own regular files");
    throw DataError("cannot read " + path + ": " + std::strerror(err));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw DataError(path + " is not a regular file (a FIFO, a device or a directory): a report reads only the run "
                           "directory's own regular files");
  }
  if (static_cast<uint64_t>(st.st_size) > max_bytes) {
    ::close(fd);
    throw DataError(path + " is " + std::to_string(st.st_size) + " bytes, more than a report reads of it (" +
                    std::to_string(max_bytes) + ")");
  }
  std::string out(static_cast<size_t>(st.st_size), '\0');
  size_t done = 0;
  while (done < out.size()) {
    const ssize_t n = ::read(fd, out.data() + done, out.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  out.resize(done);
  return out;
}

std::string printable(const std::string& text) {
  std::string out = text;
  for (auto& c : out)
    if ((static_cast<unsigned char>(c) < 0x20 && c != '\n' && c != '\t') || c == 0x7f) c = '?';
  return out;
}

RunFiles read_run_files(const std::string& dir, const std::string& records_dir) {
  RunFiles run;
  run.dir = dir;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw DataError("no run directory " + dir);
  if (!file_exists(dir + "/config.ini"))
    throw DataError(dir + " is not a run directory: it has no config.ini (made by vae-ebm train or fit-prior)");
  run.config_text = read_run_file(dir + "/config.ini", kMaxConfigBytes);
  run.config = RunConfig(run.config_text);
  if (file_exists(dir + "/metrics.jsonl")) {
    run.metrics = parse_json_lines(read_run_file(dir + "/metrics.jsonl", kMaxMetricsBytes), dir + "/metrics.jsonl");
    run.has_metrics = true;
  }
  const std::string records = records_dir.empty() ? dir : records_dir;
  run.records_dir = records;
  for (const auto& name : files_with_extension(records + "/evaluations", ".json"))
    run.evaluations.push_back({"evaluations/" + name, parse_json_file(read_run_file(records + "/evaluations/" + name, kMaxRecordBytes),
                                                                        records + "/evaluations/" + name)});
  if (file_exists(records + "/evaluation.json")) {
    run.evaluation_json =
        parse_json_file(read_run_file(records + "/evaluation.json", kMaxRecordBytes), records + "/evaluation.json");
    const bool repeated = std::any_of(run.evaluations.begin(), run.evaluations.end(), [&](const auto& e) {
      return same_evaluation(e.record, *run.evaluation_json);
    });
    if (!repeated) run.evaluations.push_back({"evaluation.json", *run.evaluation_json});
  }
  run.sample_pngs = files_with_extension(dir + "/samples", ".png");
  return run;
}

StepClock::StepClock(const RunFiles& run) {
  std::map<double, double> by_step{{0.0, 0.0}};
  for (const auto& r : run.metrics.records) {
    const auto event = r.text("event");
    if (event != "validation" && event != "finished" && event != "interrupted") continue;
    const double step = r.number("step"), seconds = r.number("train_seconds");
    if (std::isfinite(step) && std::isfinite(seconds)) by_step[step] = seconds;
  }
  // A resumed run's clock goes on from its checkpoint; keep only points where time moves on.
  for (const auto& point : by_step)
    if (points_.empty() || point.second >= points_.back().second) points_.push_back(point);
}

double StepClock::seconds_at(double step) const {
  if (points_.size() < 2 || !std::isfinite(step) || step < 0 || step > points_.back().first)
    return std::numeric_limits<double>::quiet_NaN();
  const auto upper = std::lower_bound(points_.begin(), points_.end(), std::make_pair(step, -1.0));
  if (upper->first == step) return upper->second;
  const auto lower = upper - 1;
  return lower->second + (step - lower->first) / (upper->first - lower->first) * (upper->second - lower->second);
}

Table differing_flags(const std::vector<const RunFiles*>& runs, const std::vector<std::string>& labels) {
  Table table;
  table.id = "differing-flags";
  table.caption = "Flags whose values differ between the runs (config.ini)";
  table.header = {"flag"};
  for (const auto& label : labels) table.header.push_back(label);
  table.text_columns = table.header.size();  // flag values are text
  std::vector<std::string> keys;  // in the order the first run that has them writes them
  std::set<std::string> seen{"run-dir"};
  for (const auto* run : runs)
    for (const auto& [key, value] : run->config.entries())
      if (seen.insert(key).second) keys.push_back(key);
  for (const auto& key : keys) {
    std::vector<std::string> row{key};
    std::set<std::string> values;
    for (const auto* run : runs) {
      row.push_back(run->config.has(key) ? run->config_value(key) : "(not set)");
      values.insert(row.back());
    }
    if (values.size() > 1) table.rows.push_back(row);
  }
  return table;
}

}  // namespace vae_ebm::report
