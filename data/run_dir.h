#pragma once
// A run directory: config.ini, metrics.jsonl, checkpoints/, samples, evaluation.json.
#include <string>
#include <vector>

namespace vae_ebm {

class Json;

class RunDir {
 public:
  // Opens an existing run directory; throws DataError if it is not one (no config.ini).
  static RunDir open(const std::string& path);
  // Creates a new run directory; throws DataError if `path` exists and is not empty.
  static RunDir create(const std::string& path);

  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const;  // path_/name
  std::string config_path() const { return file("config.ini"); }

  // Appends one JSON object as a line to metrics.jsonl (flushed at once).
  void append_metrics(const Json& record) const;

  // Checkpoints live in path_/checkpoints as step-NNNNNNNNN.pt plus best.pt.
  std::string checkpoint_path(int64_t step) const;
  std::string best_checkpoint_path() const;
  // Existing step checkpoints, oldest first.
  std::vector<std::string> checkpoints() const;
  // Deletes all but the newest `keep` step checkpoints.
  void prune_checkpoints(int keep) const;

 private:
  explicit RunDir(std::string path) : path_(std::move(path)) {}
  std::string path_;
};

}  // namespace vae_ebm
