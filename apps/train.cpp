// vae-ebm train and vae-ebm fit-prior: a run directory, trained (or fitted post hoc) and
// validated, resumable where it stopped.
#include <torch/torch.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cmath>
#include <cstdio>
#include <iterator>
#include <filesystem>
#include <sstream>
#include <unistd.h>
#include <vector>

#include "apps/command.h"
#include "apps/flags.h"
#include "apps/report.h"
#include "apps/run_support.h"
#include "common/blas_kernel.h"
#include "common/distributed.h"
#include "common/text.h"
#include "data/archive.h"
#include "data/error.h"
#include "data/files.h"
#include "data/json.h"
#include "data/run_config.h"
#include "data/run_dir.h"
#include "data/seed.h"
#include "estimators/bounds.h"
#include "prior/energy.h"
#include "vae/trainer.h"

namespace vae_ebm::cli {

namespace {

std::atomic<bool> g_stop{false};
std::atomic<int> g_signal{0};

// SIGINT (Ctrl-C), and SIGTERM and SIGHUP, which batch schedulers send before they kill a job:
// the trainer stops at the end of the step and saves a checkpoint.
constexpr int kStopSignals[] = {SIGINT, SIGTERM, SIGHUP};

extern "C" void on_stop_signal(int signal) {
  g_signal.store(signal);
  g_stop.store(true);
  std::signal(signal, SIG_DFL);  // a second one ends the process at once
}

// Installs on_stop_signal for the stop signals while it lives and restores the previous
// handlers, also when training throws. A signal the process was started ignoring (SIGHUP under
// nohup, SIGINT in a background job) stays ignored.
class StopSignals {
 public:
  StopSignals() {
    for (size_t i = 0; i < std::size(kStopSignals); ++i) {
      previous_[i] = std::signal(kStopSignals[i], on_stop_signal);
      if (previous_[i] == SIG_IGN) std::signal(kStopSignals[i], SIG_IGN);
    }
  }
  ~StopSignals() {
    for (size_t i = 0; i < std::size(kStopSignals); ++i)
      if (previous_[i] != SIG_ERR) std::signal(kStopSignals[i], previous_[i]);
  }
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

 private:
  void (*previous_[std::size(kStopSignals)])(int) = {};
};

const char* signal_name(int signal) {
  switch (signal) {
    case SIGINT: return "SIGINT";
    case SIGTERM: return "SIGTERM";
    case SIGHUP: return "SIGHUP";
    default: return "a signal";
  }
}

// The training loop's terminal: a live bar on a terminal, progress lines elsewhere, and every
// notice with the flags that go with it (the loop names rates as TrainOptions does: "lr").
std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const auto s = static_cast<long long>(seconds + 0.5);
  char buf[32];
  if (s >= 3600) std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", s / 3600, s / 60 % 60, s % 60);
  else std::snprintf(buf, sizeof buf, "%lld:%02lld", s / 60, s % 60);
  return buf;
}

class TerminalListener : public TrainerListener {
 public:
  bool live() const override { return tty_; }
  void progress(const Progress& p) override {
    char line[256];
    std::snprintf(line, sizeof line, "epoch %lld/%lld  batch %lld/%lld  %.0f img/s  ETA %s  loss %.3f", (long long)p.epoch,
                  (long long)p.epochs, (long long)p.batch, (long long)p.batches, p.images_per_second,
                  format_duration(p.eta_seconds).c_str(), p.loss);
    if (tty_) {
      const int width = 24;
      const int filled = p.batches > 0 ? static_cast<int>(width * p.batch / p.batches) : 0;
      std::fprintf(stderr, "\r[%s%s] %s\033[K", std::string(filled, '=').c_str(), std::string(width - filled, ' ').c_str(),
                   line);
      bar_ = true;
    } else {
      std::fprintf(stderr, "%s\n", line);
    }
    std::fflush(stderr);
  }
  void progress_done() override {
    if (bar_) std::fprintf(stderr, "\n");
    bar_ = false;
  }
  void validated(const std::string& when, double bound, bool best) override {
    say("%s: validation bound %.3f nats%s", when.c_str(), bound, best ? " (best)" : "");
  }
  void unsealed_checkpoint(const std::string& path) override {
    say("warning: checkpoint %s has no integrity seal (written by vae-ebm 0.1 before checkpoints were sealed): a "
        "damaged byte in it cannot be detected", path.c_str());
  }
  void damaged_checkpoint_set_aside(const std::string& renamed_to, const std::string& why) override {
    say("skipping a damaged checkpoint (renamed to %s): %s", renamed_to.c_str(), why.c_str());
  }
  void spike_taken(int64_t step, double loss, double median, const std::string& terms) override {
    say("training loss spiked at step %lld (%s against a median of %s)%s; taking the step (--on-divergence warn)",
        (long long)step, short_number(loss).c_str(), short_number(median).c_str(), terms.c_str());
  }
  void rolled_back(const std::string& what, const std::string& rate, double was, double now, int64_t rollback,
                   int64_t max_rollbacks) override {
    say("%s; rolling back to the newest checkpoint and lowering --%s from %g to %g (rollback %lld of %lld)", what.c_str(),
        rate.c_str(), was, now, (long long)rollback, (long long)max_rollbacks);
  }
  void interrupted(int64_t step, const std::string& run_dir) override {
    say("stopped at step %lld; checkpoint saved in %s", (long long)step, run_dir.c_str());
  }

 private:
  // A line of its own, clearing a live bar's line first.
  template <class... Args>
  void say(const char* format, Args... args) {
    if (bar_) std::fprintf(stderr, "\r\033[K");
    std::fprintf(stderr, format, args...);
    std::fprintf(stderr, "\n");
  }
  const bool tty_ = isatty(fileno(stderr));
  bool bar_ = false;
};

// How to go on after a divergence, as the user's flags say it.
std::string divergence_message(const TrainingDiverged& e) {
  std::ostringstream text;
  text << e.what();
  const std::string saved = e.nothing_saved ? "the start" : "the newest checkpoint";
  if (e.normaliser_spike) {
    text << " A larger --proposal-base-fraction, or another --proposal or --flow-fit, reaches such mass more often "
            "(docs/MATH.md 8.4).";
    if (e.same_step) text << " Lowering --" << e.lowered << " did not move it.";
    text << " Nothing after " << saved << " was saved; to take such a step and go on: vae-ebm train --resume "
         << e.run_dir << " --on-divergence warn";
    return text.str();
  }
  if (e.same_step) text << "; it diverged again at the same step after --" << e.lowered << " was lowered";
  text << "; the likely cause is --" << e.cause << " (" << e.cause_value << ")";
  if (e.at_first_step && e.nothing_saved)
    text << ". Start again with a smaller --" << e.cause;
  else
    text << ". Nothing after " << saved << " was saved; go on from there with a smaller value: vae-ebm train --resume "
         << e.run_dir << " --" << e.cause << " VALUE, or let the run do it: --on-divergence rollback";
  return text.str();
}

// Partial files that a training process killed while writing (kill -9 during an atomic write of
// a checkpoint or of config.ini) left behind. Only training writes these, and the caller holds
// the run's lock; evaluate's own temporaries are left alone.
int remove_stale_temporaries(const RunDir& run) {
  // The run's own atomic writes: checkpoints, config.ini, and the metrics log's roll-back
  // (metrics.jsonl and metrics.rolled-back.jsonl), which a kill may cut as well.
  return remove_partial_writes(run.path() + "/checkpoints") + remove_partial_writes(run.path(), "config.ini") +
         remove_partial_writes(run.path(), "metrics.");
}

// Starts `model`'s encoder and decoder (and the likelihood's parameters, where it has any), and
// with `with_prior` its prior, from a checkpoint's; returns the parts taken, as "encoder,
// decoder[, likelihood][, prior]". Each must have the same networks and shapes.
std::string init_model_from(const std::string& path, VaeModel& model, bool with_prior) {
  auto bytes = read_file(path);
  std::vector<std::pair<std::string, torch::nn::Module*>> parts = {{"encoder", model.encoder.get()},
                                                                   {"decoder", model.decoder.get()}};
  if (!model.likelihood->parameters().empty()) parts.push_back({"likelihood", model.likelihood.get()});
  if (with_prior) parts.push_back({"prior", model.prior.get()});
  std::string taken;
  try {
    ArchiveReader reader(bytes, torch::kCPU, "checkpoint " + path);
    torch::serialize::InputArchive model_archive;
    reader.archive().read("model", model_archive);
    for (const auto& [name, module] : parts) {
      torch::serialize::InputArchive part;
      model_archive.read(name, part);
      try {
        load_module_checked(*module, part);
      } catch (const std::exception& e) {
        throw std::runtime_error("its " + name + " does not fit this run's: " + first_line(e.what()));
      }
      taken += (taken.empty() ? "" : ", ") + name;
    }
  } catch (const std::exception& e) {
    throw DataError("cannot start the model from " + path + ": " + first_line(e.what()));
  }
  return taken;
}

// The run, from its directory on: config.ini, the trainer, validation, the signals, the end.
// In data-parallel training only rank 0 (`writes`) touches the run directory and prints the
// run's progress; every process trains.
int train_in(RunDir& run, TrainConfig& c, bool resuming, const std::string& initialised, Dataset data,
             std::shared_ptr<VaeModel> model, std::unique_ptr<PriorObjective> objective, torch::Device device,
             std::shared_ptr<Distributed> dist, int64_t& steps_done) {
  std::vector<std::string> comments = {blas_kernel_line(), data_line(data)};
  if (dist->parallel()) comments.push_back("data-parallel: " + dist->describe());
  const bool writes = dist->is_root();
  // config.ini: the resolved flags with these comments after the header's.
  auto write_config = [&] { atomic_write(run.config_path(), RunConfig(c.config_text).add_comments(comments).text()); };
  if (!resuming && writes) {
    write_config();
    if (!initialised.empty()) {
      std::fprintf(stderr, "started %s from %s\n", initialised.c_str(), c.init_from.c_str());
      run.append_metrics(Json::object().set("event", "initialised").set("from", c.init_from).set("parts", initialised));
    }
  }
  auto train_images = data.train.images;
  Trainer trainer(model, std::move(objective), train_images, c.train, run, dist);
  // A checkpoint that resumes only with another number of processes: the message says how.
  auto resume_latest = [&] {
    try {
      return trainer.resume_latest();
    } catch (const ResumeError& e) {
      if (e.processes < 1) throw;
      const auto n = std::to_string(e.processes);
      throw ResumeError(std::string(e.what()) + " (vae-ebm train --resume " + c.run_dir + " --nproc " + n +
                        ", or torchrun --nproc_per_node " + n + ")");
    }
  };
  if (resuming && !writes) {
    resume_latest();  // rank 0's checkpoint, sent by rank 0
  } else if (resuming) {
    // The flags a resumed run may change (how long it goes on, where it runs) are written
    // back, so that config.ini keeps saying what the run is.
    Json changed = Json::object();
    for (const auto& [flag, values] : c.resume_changes) {
      changed.set(flag, Json::object().set("was", values.first).set("now", values.second));
      std::fprintf(stderr, "resuming with --%s %s (config.ini had %s)\n", flag.c_str(), values.second.c_str(),
                   values.first.c_str());
    }
    if (!resume_latest()) std::fprintf(stderr, "no checkpoint in %s yet: starting from the beginning\n", c.run_dir.c_str());
    else std::fprintf(stderr, "resuming %s at step %lld (epoch %lld)\n", c.run_dir.c_str(),
                      (long long)trainer.state().step, (long long)trainer.state().epoch);
    // Steps after the checkpoint are done again: their records leave the log (kept aside).
    const auto rolled_back = run.roll_back_metrics(trainer.state().step);
    if (rolled_back > 0)
      std::fprintf(stderr, "moved %lld records of steps after %lld from metrics.jsonl to metrics.rolled-back.jsonl\n",
                   (long long)rolled_back, (long long)trainer.state().step);
    if (!c.resume_changes.empty()) write_config();
    Json skipped = Json::array();
    for (const auto& s : trainer.skipped_checkpoints()) skipped.push(Json::string(s));
    run.append_metrics(Json::object().set("event", "resumed").set("step", trainer.state().step).set("changed", changed)
                           .set("rolled_back_records", rolled_back).set("skipped_checkpoints", skipped)
                           .set("blas_kernel", blas::kernel_state().summary()));
  }
  auto validation = data.validation.images.to(device);
  const auto eval_samples = c.eval_samples;
  LogZSettings log_z_settings;
  log_z_settings.samples = c.log_z_samples;
  log_z_settings.ais.chains(c.validation_ais_chains).temperatures(c.validation_ais_temperatures);
  const auto validation_log_z = log_z_method_from_flag(c.validation_log_z, log_z_settings, "validation-ais-");
  const auto seed = c.train.seed();
  trainer.set_validator([&, validation](VaeModel& m, Json& record) {
    torch::NoGradGuard no_grad;
    const auto epoch = trainer.state().epoch;
    if (auto* ebm = dynamic_cast<EnergyPrior*>(m.prior.get())) {
      const auto log_z = set_normaliser(*ebm, trainer.objective().trains_b_in_its_bound(), validation_log_z,
                                        mix_seed(seed, 0x6c6f677aULL, epoch), record);
      if (!std::isfinite(log_z.value) || std::abs(log_z.value) > kMaxAbsLogZ)
        throw Divergence(trainer.state().step, "validation log Z", log_z.value);
    }
    auto gen = make_generator(mix_seed(seed, 0x76616cULL, epoch), device);
    auto report = evaluate_bounds(*m.encoder, *m.decoder, *m.likelihood, *m.prior, validation,
                                  BoundOptions().samples(eval_samples).importance_weighted(false), gen);
    record.set("validation", report.bound.to_json());
    record.set("reconstruction", report.reconstruction.value).set("kl", report.kl.value);
    return report.bound.value;
  });
  g_stop = false;
  g_signal = 0;
  const StopSignals stop_signals;
  if (writes)
    std::fprintf(stderr, "training %s prior (%s) on %s: %lld train images, run directory %s%s\n", c.prior.c_str(),
                 c.objective_name().c_str(), c.dataset.c_str(), (long long)data.train.size(), c.run_dir.c_str(),
                 dist->parallel() ? ("; data-parallel over " + dist->describe()).c_str() : "");
  trainer.set_stop_flag(&g_stop);
  if (writes) trainer.set_listener(std::make_shared<TerminalListener>());
  // A rollback's lowered rate goes into config.ini, so that a later --resume keeps it (a
  // rollback is not data-parallel yet: only one process gets here).
  trainer.set_rate_listener([&](const std::string& flag, double, double now) {
    c.config_text = RunConfig(c.config_text).set(flag, shortest(now)).text();
    write_config();
  });
  auto t0 = std::chrono::steady_clock::now();
  bool finished = false;
  try {
    finished = trainer.run();
  } catch (...) {
    steps_done = trainer.state().step;
    throw;
  }
  steps_done = trainer.state().step;
  // In data-parallel training a signal to any rank stops them all at the same step; a rank that
  // was not signalled itself reports it as SIGTERM from "another rank".
  const int signal = g_signal.load() ? g_signal.load() : dist->parallel() ? SIGTERM : SIGINT;
  const std::string signal_text =
      g_signal.load() || !dist->parallel() ? signal_name(g_signal.load()) : "a signal to another rank";
  const int status = finished ? 0 : 128 + signal;
  if (!writes) return status;
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  Json record = Json::object();
  record.set("event", finished ? "finished" : "interrupted").set("step", trainer.state().step)
      .set("seconds", seconds).set("train_seconds", trainer.state().train_seconds)
      .set("best_validation_bound", trainer.state().best_validation);
  // The part of train_seconds spent in the steps' collectives (TrainState::allreduce_seconds).
  if (dist->parallel()) record.set("allreduce_seconds", trainer.state().allreduce_seconds);
  if (!finished) record.set("signal", signal_text);
  run.append_metrics(record);
  std::fprintf(stderr, "%s after %lld steps in %.1f s; best validation bound %s\nrun directory: %s\n",
               finished ? "finished" : "interrupted", (long long)trainer.state().step, seconds,
               std::isfinite(trainer.state().best_validation) ? (fmt(trainer.state().best_validation) + " nats").c_str()
                                                              : "(none yet)",
               c.run_dir.c_str());
  if (!finished)
    std::fprintf(stderr, "stopped by %s; continue with: vae-ebm train --resume %s\n", signal_text.c_str(),
                 c.run_dir.c_str());
  if (c.report) {
    RunReportOptions options;
    options.require_evaluation = false;  // evaluate has not run yet: the page says so
    std::fprintf(stderr, "report: %s\n", write_run_report(c.run_dir, c.common, options).c_str());
  }
  return status;
}

// A data-parallel rank other than 0: the same data and model as rank 0 (which sends its
// parameters, so --init-from is read there alone), no run directory.
int train_elsewhere(TrainConfig& c, torch::Device device, std::unique_ptr<PriorObjective> objective,
                    std::shared_ptr<Distributed> dist) {
  auto data = load_data(c.dataset, c.common, c.binarisation_seed);
  c.train.dynamic_binarisation(data.dynamic);
  torch::manual_seed(c.train.seed());
  auto model = build_model(c, data);
  as_usage([&] { objective->check(*model->prior); });
  RunDir run = RunDir::named(c.run_dir);
  int64_t steps_done = 0;
  try {
    return train_in(run, c, !c.resume.empty(), "", std::move(data), std::move(model), std::move(objective), device,
                    dist, steps_done);
  } catch (const TrainingDiverged&) {
    return 3;  // as rank 0, which says why
  }
}

}  // namespace

int run_train(TrainConfig c) {
  auto device = parse_device(c.common.device);
  c.train.device(device);
  // The objective, its options and the schedule are checked before any data is read.
  auto objective = as_usage([&] { return make_objective(c.objective_name(), c.objective_values); });
  as_usage([&] { c.train.validate(); });
  // Many processes when torchrun (or the like) set WORLD_SIZE: they meet here, before any
  // data is read, and every one of them checks that the options are data-parallel.
  if (!(c.dist_timeout > 0 && c.dist_timeout <= 7 * 24 * 3600.0))
    throw UsageError("--dist-timeout must be > 0 and at most a week (seconds), got " + shortest(c.dist_timeout));
  if (c.common.nproc > 1) {
    // What would refuse the processes is said once, here, before they start.
    as_usage([&] { check_data_parallel(c.train, *objective, c.common.nproc); });
    return run_local_world(c.common.nproc, c.train.mode() == TrainMode::post_hoc ? "fit-prior" : "train");
  }
  use_machine(c.common);
  const auto launch = Distributed::launch_from_environment();
  as_usage([&] { check_data_parallel(c.train, *objective, launch.world_size); });
  if (launch.world_size > 1 && device.is_cuda() && !device.has_index()) {
    // One GPU per process on a machine (untested: no CUDA here).
    device = torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(launch.local_rank));
    c.train.device(device);
  }
  Distributed::Options dist_options;
  dist_options.timeout = std::chrono::milliseconds(static_cast<int64_t>(c.dist_timeout * 1000.0));
  dist_options.device = device;
  auto dist = Distributed::connect(launch, dist_options);
  if (!dist->is_root()) return train_elsewhere(c, device, std::move(objective), dist);
  auto data = load_data(c.dataset, c.common, c.binarisation_seed);
  c.train.dynamic_binarisation(data.dynamic);
  torch::manual_seed(c.train.seed());  // the networks' initialisation draws from the global generator
  auto model = build_model(c, data);
  as_usage([&] { objective->check(*model->prior); });
  const bool resuming = !c.resume.empty();
  // A checkpoint that does not fit fails here, before the run directory exists.
  std::string initialised;
  if (!resuming && !c.init_from.empty()) initialised = init_model_from(c.init_from, *model, c.init_prior);
  const bool existed = std::filesystem::exists(c.run_dir);
  RunDir run = resuming ? RunDir::open(c.run_dir) : RunDir::create(c.run_dir);
  const auto lock = run.lock();  // one process per run directory, until this one ends
  if (resuming) {
    warn_if_data_changed(run.config_path(), data);
    if (const int n = remove_stale_temporaries(run))
      std::fprintf(stderr, "removed %d partial file(s) left by a process killed while writing\n", n);
    if (const auto bytes = run.repair_metrics())
      std::fprintf(stderr, "cut a partial last line (%lld bytes) from metrics.jsonl\n", (long long)bytes);
  }
  int64_t steps_done = 0;
  try {
    try {
      return train_in(run, c, resuming, initialised, std::move(data), std::move(model), std::move(objective), device,
                      dist, steps_done);
    } catch (const TrainingDiverged& e) {
      // At any step, the first included: exit 3, the directory kept (its metrics.jsonl records the
      // divergence, and the message says how to go on).
      std::fprintf(stderr, "vae-ebm train: diverged: %s\n", divergence_message(e).c_str());
      return 3;
    }
  } catch (...) {
    // A new run that fails before its first training step (an option that does not fit the
    // data, a batch larger than the data set) leaves nothing behind, so the same command,
    // corrected, can run again. RunDir::create found the directory absent or empty, so all in
    // it is this run's; a directory the user made stays, emptied. Once a step has run, the
    // directory and its metrics stay: they record what happened. A directory that holds a
    // checkpoint is never removed, whatever the step count says.
    const bool holds_checkpoint = !run.checkpoints().empty() || std::filesystem::exists(run.best_checkpoint_path());
    if (!resuming && steps_done == 0 && !holds_checkpoint) {
      std::error_code ec;
      if (existed) {
        std::vector<std::filesystem::path> made;
        for (const auto& entry : std::filesystem::directory_iterator(c.run_dir, ec)) made.push_back(entry.path());
        for (const auto& path : made) std::filesystem::remove_all(path, ec);
      } else {
        std::filesystem::remove_all(c.run_dir, ec);
      }
      std::fprintf(stderr, "removed what %s held: the run failed before its first step\n", c.run_dir.c_str());
    }
    throw;
  }
}

Command train_command() {
  return command_of("train", "train an encoder, decoder and prior (gaussian, mog or ebm) jointly",
                    parse_train, run_train);
}

Command fit_prior_command() {
  return command_of("fit-prior", "fit a mixture or energy prior post hoc to a trained VAE", parse_fit_prior, run_train);
}

}  // namespace vae_ebm::cli
