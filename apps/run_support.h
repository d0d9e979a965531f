#pragma once
// What the commands share: the device, the data and the model of a run, its checkpoint, the
// log-Z strategies of an energy prior, and the printed table's rows. Each command is one file
// beside this (apps/train.cpp, evaluate.cpp, ...); the table of commands is apps/commands.cpp.
#include <torch/torch.h>

#include <cmath>
#include <functional>
#include <memory>
#include <string>

#include "apps/cli.h"
#include "common/distributed.h"
#include "data/dataset.h"
#include "data/json.h"
#include "data/run_dir.h"
#include "estimators/ais.h"
#include "estimators/estimate.h"
#include "estimators/flow_log_z.h"
#include "estimators/samplers.h"
#include "prior/energy.h"
#include "vae/model.h"

namespace vae_ebm::cli {

// --device TEXT; throws UsageError naming it.
torch::Device parse_device(const std::string& text);
Dataset load_data(const std::string& name, const CommonConfig& common, uint64_t binarisation_seed);
// "data: NAME sha256 FINGERPRINT (FILE DIGEST, ...)": the comment config.ini carries.
std::string data_line(const Dataset& data);
// Warns on stderr when config.ini records another fingerprint for the data than `data` has
// now (the file behind hdf5:PATH changed since the run was made); silent when it records none.
void warn_if_data_changed(const std::string& config_path, const Dataset& data);
// {"name", "fingerprint", "files": {NAME: DIGEST}}, for evaluation records.
Json data_record(const Dataset& data);
// The run's model for this data (UsageError for bad network or prior options).
std::shared_ptr<VaeModel> build_model(const TrainConfig& c, const Dataset& data);

// A trained run, loaded: its config, data, model at a checkpoint, and device.
struct LoadedRun {
  TrainConfig config;
  Dataset data;
  std::shared_ptr<VaeModel> model;
  std::string checkpoint;
  torch::Device device = torch::kCPU;
};

// Loads RUN_DIR's config.ini, data (or dataset_override's, of the same shape) and the
// checkpoint (best, latest or a path); chooses the machine (use_machine) first.
LoadedRun load_run(const std::string& run_dir, const std::string& checkpoint, const CommonConfig& common,
                   const std::string& dataset_override = "");
// best | latest | a path -> the checkpoint file (DataError if there is none).
std::string checkpoint_path(const RunDir& run, const std::string& which);

// An estimator of log Z and the words that say how it estimates.
struct LogZMethod {
  std::function<Estimate(EnergyPrior&, at::Generator&)> estimate;
  std::string how;
};

// What the log-Z methods read: the base samples of importance sampling, AIS's options.
struct LogZSettings {
  int64_t samples = 10000;
  AisOptions ais;
  std::string ais_flag_prefix = "ais-";  // how the command spells AIS's options as flags
  FlowFitOptions flow;                    // flow: the proposal's fit to the energy
  double flow_base_fraction = 0.1;        // flow: share of the samples drawn from the base
  // Set (evaluate): the importance samples and AIS chains are drawn in blocks, each from a
  // generator of its own seeded from the one the method is given (in_blocks), shared out over
  // these processes: the estimate is the same for any number of them (one included). Unset
  // (training's validation): everything is drawn from the one generator, in one process.
  std::shared_ptr<Distributed> blocks_over;
};
// The block sizes of LogZSettings::blocks_over: importance samples (the chunk that
// log_z_importance draws at once anyway) and AIS chains (two blocks of AIS's default 100 chains:
// smaller blocks cost one process a transition call per block and temperature).
constexpr int64_t kImportanceBlock = 8192;
constexpr int64_t kAisChainBlock = 50;

// Work in blocks, shared out over the processes of a run, whose numbers do not depend on how
// many processes there are: block j holds items [j * block, min((j + 1) * block, total)) and is
// computed by fn(first, n, generator) on one rank (rank r holds the consecutive blocks
// BatchShard::of(blocks, r, world) names) with a generator of its own, make_generator(mix_seed(seed,
// j), device). fn returns [n, columns] float64; the blocks are gathered, in order, into
// [total, columns] on every rank (an all-reduce of each rank's rows within zeros: exact).
using BlockFn = std::function<torch::Tensor(int64_t first, int64_t n, at::Generator& generator)>;
torch::Tensor in_blocks(Distributed& dist, int64_t total, int64_t block, int64_t columns, uint64_t seed,
                        torch::Device device, const BlockFn& fn, const std::string& what);
// A 64-bit seed drawn from `generator` (the same on every rank that holds the same state).
uint64_t draw_seed(at::Generator& generator);
// Connects the processes torchrun (or --nproc) started, as train does: one process when the
// environment names none. `timeout` is --dist-timeout (seconds), checked here.
std::shared_ptr<Distributed> connect_processes(double timeout, torch::Device device);
// The method named (is | ais; the registry of log-Z estimators), or UsageError naming the
// value, the valid names and bad options.
LogZMethod log_z_method(const std::string& name, const LogZSettings& settings);
std::vector<std::string> log_z_method_names();
// Sets the log Z estimate that an energy prior's bounds hold fixed. With a learned b
// (snelbo) one estimate serves as Zhat; otherwise b is replaced by a first estimate and Zhat
// comes from a second, independent one by the same method. Records both in `record`.
Estimate set_normaliser(EnergyPrior& prior, bool use_learned_b, const LogZMethod& method, uint64_t seed, Json& record);

// A flow fitted to the energy: reverse KL from the identity (drawn from `gen`), then the
// mass-covering refinement (estimators/flow_log_z.h); its parameters frozen.
Flow fit_log_z_flow(EnergyPrior& prior, const FlowFitOptions& fit, double base_fraction, at::Generator& gen);
// The flow an objective trained alongside (the SNELBO proposal, the NCE noise, the FCE flow),
// from the checkpoint's objective state, on `device`; undefined when there is none.
Flow trained_flow(const std::string& checkpoint, torch::Device device);
// The flow of the flow samplers, made at the first call: the run's trained flow where its
// checkpoint has one, else one fitted to the energy (fit_log_z_flow, seeded from `seed`). `how`,
// if given, is set to which it was. `prior` must outlive the source.
FlowSource sampling_flow(const LoadedRun& run, EnergyPrior& prior, const FlowFitOptions& fit, double base_fraction,
                         uint64_t seed, std::shared_ptr<std::string> how = nullptr);

// n samples [n, D] of a prior: exact priors by their own sampler, energy priors by `sampler`
// (estimators/samplers.h); the record says which, with its diagnostic; seconds is the wall time.
struct PriorDraws {
  torch::Tensor z;
  std::string sampler, description;  // "exact" for exact priors
  double acceptance = std::nan("");
  double resampling_ess = std::nan("");  // flow-sir: a fraction of the candidates
  double seconds = 0;
  // {"sampler", "description", "acceptance"?, "resampling_ess_fraction"?}
  Json record() const;
  // " (acceptance 0.57)", " (resampling ESS 41.0% of the candidates)" or "".
  std::string diagnostic_text() const;
};
PriorDraws draw_prior(Prior& prior, const std::string& sampler, const SamplerOptions& options, const FlowSource& flow,
                      int64_t n, at::Generator& generator);

std::string fmt(double v, int precision = 3);
// One row of a printed table of estimates: value, standard error, count and ESS.
void print_row(const std::string& name, const Estimate& e);

}  // namespace vae_ebm::cli
