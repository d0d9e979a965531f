#pragma once
// What the commands share: the device, the data and the model of a run, its checkpoint, the
// flags of the log-Z methods (estimators/log_z_methods.h), and the printed table's rows. Each command is one file
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
#include "estimators/estimate.h"
#include "estimators/log_z_methods.h"
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

// Connects the processes torchrun (or --nproc) started, as train does: one process when the
// environment names none. `timeout` is --dist-timeout (seconds), checked here.
std::shared_ptr<Distributed> connect_processes(double timeout, torch::Device device);
// The log-Z method named (estimators/log_z_methods.h), or UsageError naming the value, the valid
// names and bad options, AIS's spelled as flags with `ais_flag_prefix` ("ais-", "validation-ais-").
LogZMethod log_z_method_from_flag(const std::string& name, const LogZSettings& settings,
                                  const std::string& ais_flag_prefix = "ais-");

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
