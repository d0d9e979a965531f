#pragma once
// The `vae-ebm` command line: each subcommand's config struct and its parser, so tests can call
// the parsers directly. Each command declares its flags (name, default, help) once, beside
// itself: parse_train and parse_fit_prior in train_flags.cpp, parse_evaluate in evaluate.cpp, ...
// (apps/flags.h has the pieces they share).
#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/error.h"
#include "data/error.h"
#include "estimators/ais.h"
#include "estimators/classifier.h"
#include "estimators/flow_log_z.h"
#include "estimators/log_z_methods.h"
#include "estimators/samplers.h"
#include "prior/energy.h"
#include "prior/langevin.h"
#include "prior/objective.h"
#include "vae/likelihood.h"
#include "vae/networks.h"
#include "vae/trainer.h"

namespace vae_ebm::cli {

// Thrown for a bad command line or config file; the message names the flag. One of the user
// errors (common/error.h), like DataError and the library's OptionError.
struct UsageError : UserError {
  using UserError::UserError;
};

// Runs fn. A library OptionError becomes a UsageError naming the flag, `prefix` + the option
// ("langevin-" for sample's Langevin options); any other user error but bad data (an unknown
// name, a prior an objective does not support) becomes a UsageError with its message. Only
// apps/ knows how options are spelt as flags.
template <class F>
auto as_usage(F&& fn, const std::string& prefix = "") -> decltype(fn()) {
  try {
    return fn();
  } catch (const OptionError& e) {
    throw UsageError("--" + prefix + e.option + ": " + e.detail);
  } catch (const DataError&) {
    throw;
  } catch (const UsageError&) {
    throw;
  } catch (const UserError& e) {
    throw UsageError(e.what());
  }
}

// Flags shared by every subcommand.
struct CommonConfig {
  std::string data_dir;   // default: $VAE_EBM_DATA or data-cache
  std::string device = "cpu";
  int threads = 1;  // set from default_threads() by the parsers
  std::string blas_kernel = "auto";  // auto | keep | an OpenBLAS core name (common/blas_kernel.h)
  // --nproc (train, fit-prior, evaluate, train-classifier): processes to start on this machine,
  // as torchrun would (run_local_world); 1: this one process.
  int nproc = 1;
};

// "512,512" for {512, 512}: widths as the flags write them.
std::string widths_text(const std::vector<int64_t>& widths);

struct TrainConfig {
  CommonConfig common;
  std::string run_dir;        // where the run is written
  std::string resume;         // an existing run directory to continue
  std::string init_from;      // a checkpoint whose encoder and decoder start the model
  bool init_prior = false;    // with init_from: the checkpoint's prior starts the prior too
  std::string parent;         // the run this one was fitted to (post hoc)
  std::string mode = "joint";  // as config.ini writes it; parse_train sets train.mode() from it
  std::string on_divergence = divergence_policy_name(TrainOptions().on_divergence());  // sets train.on_divergence()
  bool report = false;  // at the end, (re)write RUN/report.html (apps/report.h)
  std::string dataset = "binary-mnist";
  uint64_t binarisation_seed = 0;
  // The defaults are the library's (NetworkOptions, the prior kinds'), written there once.
  std::string architecture = NetworkOptions().architecture();
  std::string hidden = widths_text(NetworkOptions().hidden());
  std::string activation = NetworkOptions().activation();
  int64_t conv_width = NetworkOptions().conv_width();
  int64_t latent = NetworkOptions().latent_dim();
  std::string prior = "gaussian";
  // Each prior kind's options as given (flag name -> text): the flags come from the prior
  // registry's declarations (all_prior_options()), the defaults are the kinds' own.
  OptionValues prior_values;
  LikelihoodOptions likelihood;  // p(x|z), vae/likelihood.h
  std::string objective;  // empty: the prior's default
  // Each objective's options as given (flag name -> text): the flags come from the objective
  // registry's declarations (all_objective_options()), the defaults are the objectives' own.
  OptionValues objective_values;
  TrainOptions train;
  int64_t eval_samples = 10;
  int64_t log_z_samples = 10000;
  std::string validation_log_z = "ais";  // how validation estimates log Z (ebm): a log-Z method
  int64_t validation_ais_chains = 500;
  int64_t validation_ais_temperatures = AisOptions().temperatures();
  // Data-parallel training (WORLD_SIZE > 1): how long meeting the other processes, and any one
  // exchange with them, may take before the run gives up (seconds).
  double dist_timeout = 1800;
  std::string config_text;  // the resolved configuration, in config-file syntax
  // With --resume: the flags given that change the run's config.ini, as flag -> {was, now}.
  std::vector<std::pair<std::string, std::pair<std::string, std::string>>> resume_changes;

  NetworkOptions network_options(const std::vector<int64_t>& image_shape) const;
  PriorOptions prior_options() const;
  // " --name value" for each option the prior's kind reads, as given or by its default: how a
  // message names the prior's size.
  std::string prior_flags_text() const;
  std::string objective_name() const;
};

struct EvaluateConfig {
  CommonConfig common;
  std::string run_dir;
  std::string checkpoint = "best";  // best | latest | a path
  std::string out;                  // where the records go (default: the run directory)
  std::string dataset;              // default: the run's
  std::string split = "test";
  int64_t samples = 100;            // K
  int64_t log_z_samples = 100000;
  int64_t limit = 0;                // evaluate only the first N images (0: all)
  std::string normaliser = "auto";  // energy prior's b: auto | learned | estimated
  std::string log_z_method = "auto";  // energy prior: auto | is | flow | flow-ais | ais (the log-Z registry)
  // The log-Z methods' settings, their flags declared by log_z_option_set() (samples is
  // log_z_samples, set when a method is made).
  LogZSettings log_z;
  std::string feature_network;      // a user's TorchScript feature network (instead of the classifier)
  std::string classifier;           // feature network (default DATA_DIR/classifiers/DATASET.pt if present)
  int64_t quality_samples = 10000;  // generated images scored against the split (0: no scores)
  std::string quality_images = "draws";  // what is scored: draws of p(x|z) or the decoder's means
  std::string sampler = default_sampler();  // energy prior: the sampler behind the scores
  SamplerOptions sampler_options;
  uint64_t seed = 1;
  bool report = false;              // then (re)write report.html beside the records (apps/report.h)
  double dist_timeout = 1800;       // as train's: seconds the processes of a data-parallel run wait for each other
};

struct ClassifierConfig {
  CommonConfig common;
  std::string dataset = "binary-mnist";
  std::string out;  // default DATA_DIR/classifiers/DATASET.pt
  int64_t epochs = 10;
  int64_t batch_size = ClassifierTrainOptions().batch_size();  // global: shared out over the processes
  int64_t limit = 0;  // train on the first N training images only (0: all)
  uint64_t seed = 0;
  double dist_timeout = 1800;  // as train's
};

struct SampleConfig {
  CommonConfig common;
  std::string run_dir;
  std::string checkpoint = "best";
  std::string out;  // default RUN_DIR/samples
  int64_t count = 64;
  uint64_t seed = 1;
  std::string sampler = default_sampler();  // energy prior: a sampler's name, or "all"
  SamplerOptions sampler_options;
};

struct ExportConfig {
  CommonConfig common;
  std::string run_dir;
  std::string checkpoint = "best";
  std::string out;
};

// Each returns false (after printing help to stdout) when --help was asked for, and
// throws UsageError on a bad flag, value or config file. args excludes the subcommand. A flag
// not given keeps the value `config` has: a default-constructed config holds the defaults,
// each written once, in the config struct or in the library's options struct it comes from.
bool parse_train(const std::vector<std::string>& args, TrainConfig& config);
bool parse_fit_prior(const std::vector<std::string>& args, TrainConfig& config);
bool parse_evaluate(const std::vector<std::string>& args, EvaluateConfig& config);
bool parse_sample(const std::vector<std::string>& args, SampleConfig& config);
bool parse_export(const std::vector<std::string>& args, ExportConfig& config);
bool parse_train_classifier(const std::vector<std::string>& args, ClassifierConfig& config);

// Comma-separated positive integers ("512,512"); throws UsageError naming `flag`.
std::vector<int64_t> parse_widths(const std::string& text, const std::string& flag);

// The commands (commands.cpp). Each returns a process exit code.
int run_train(TrainConfig config);
int run_evaluate(const EvaluateConfig& config);
int run_sample(const SampleConfig& config);
int run_export(const ExportConfig& config);
int run_train_classifier(const ClassifierConfig& config);
// Where train-classifier writes, and evaluate looks for, a data set's feature network.
std::string default_classifier_path(const std::string& data_dir, const std::string& dataset);

// The whole program: `vae-ebm SUBCOMMAND [flags]`.
int main_entry(int argc, char** argv);

// --nproc N (apps/local_world.cpp): starts N processes of this program on this machine (ranks
// 0..N-1 meeting at 127.0.0.1 and a free port, the environment torchrun would give them), each
// with this command line less --nproc, and waits for them: 0 when all succeed; otherwise it
// names the rank that failed first and returns its exit status. UsageError under torchrun
// (WORLD_SIZE set). `command` names the command in its messages.
int run_local_world(int nproc, const std::string& command);
// main_entry keeps the command line for run_local_world.
void keep_command_line(int argc, char** argv);
// --nproc's value; UsageError naming the flag when it is not an integer in [1, kMaxNproc].
constexpr int kMaxNproc = 4096;
int parse_nproc(const std::string& text);

// Gives `threads` to OpenBLAS and keeps LibTorch's OpenMP pool at one (threads.cpp
// says what was measured). default_threads() is the number of hardware threads.
void set_threads(int threads);
int default_threads();
// --threads' default: the hardware threads, shared among the processes that torchrun starts on
// this machine (LOCAL_WORLD_SIZE) when it started several.
int default_threads_per_process();
// Chooses the BLAS kernel (--blas-kernel, once per process) and prints it to stderr, then
// sets the threads. Every command calls it before it reads data or computes anything.
void use_machine(const CommonConfig& common);
// Applies --blas-kernel (once per process); a bad request is a UsageError naming the flag.
void choose_blas_kernel(const std::string& request);
// The BLAS kernel line that config.ini, --version and the log carry.
std::string blas_kernel_line();

}  // namespace vae_ebm::cli
