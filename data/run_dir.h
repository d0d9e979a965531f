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
  // Creates a new run directory; throws DataError if `path` exists and is not empty, unless it
  // is an unstarted run's (unstarted_run), whose partial writes it removes.
  static RunDir create(const std::string& path);
  // Names a run directory without looking at it or making it: for the ranks of a data-parallel
  // run other than 0, which never write to it (vae/trainer.h).
  static RunDir named(const std::string& path) { return RunDir(path); }

  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const;  // path_/name
  std::string config_path() const { return file("config.ini"); }

  // Appends one JSON object as a line to metrics.jsonl (flushed at once). A write that fails
  // (a full disk) is cut back to the file's old length, so the log never holds half a line.
  void append_metrics(const Json& record) const;
  // Drops a partial last line of metrics.jsonl (left by a process killed mid-append); returns
  // the bytes dropped (0 when the log ends with a whole line).
  int64_t repair_metrics() const;
  // Rolls metrics.jsonl back to a checkpoint's step: the "train" and "validation" records of
  // later steps (steps that a resumed run does again) move to metrics.rolled-back.jsonl, so
  // the log holds each step once. Events ("resumed", "diverged", ...) stay. Returns how many
  // records moved.
  int64_t roll_back_metrics(int64_t step) const;

  // Holds the directory's lock (flock on RUN_DIR/.lock) while it lives: one training process
  // per run directory. lock() throws DataError, naming the holder's pid, if another holds it.
  class Lock {
   public:
    explicit Lock(int fd) : fd_(fd) {}
    Lock(Lock&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
    Lock(const Lock&) = delete;
    Lock& operator=(const Lock&) = delete;
    ~Lock();

   private:
    int fd_;
  };
  Lock lock() const;

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

// A directory that a run was killed in before its config.ini was whole (kill -9 inside the first
// write of config.ini): no config.ini, an empty checkpoints/, perhaps the lock file, and a partial
// config.ini.tmp-XXXXXX. Neither resumable nor worth keeping: RunDir::create reuses it.
bool unstarted_run(const std::string& path);

}  // namespace vae_ebm
