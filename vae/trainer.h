#pragma once
// The training loop: joint (encoder, decoder and prior together), detached-posterior
// (the VAE on the Gaussian ELBO while the prior is fitted to detached samples), and
// post hoc (encoder and decoder frozen, only the prior learns). Checkpoints hold
// everything a resumed run needs, so resuming equals never stopping. The loop is
// vae/trainer.cpp, the checkpoints' layout and loading vae/checkpoint.cpp, divergence
// detection and its handling vae/divergence.cpp. The trainer prints nothing: it tells a
// TrainerListener (apps/train.cpp prints).
#include <torch/torch.h>

#include <atomic>
#include <deque>
#include <functional>
#include <stdexcept>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "common/distributed.h"
#include "common/error.h"
#include "data/batcher.h"
#include "data/run_dir.h"
#include "prior/flow.h"
#include "prior/objective.h"
#include "vae/fused_adam.h"
#include "vae/model.h"

namespace vae_ebm {

class ArchiveReader;

// What trains: encoder, decoder and prior together on the objective's bound (joint); the VAE on
// the Gaussian ELBO with the prior fitted to detached posterior samples (detach-posterior); or
// only the prior, fitted to a frozen VAE's posterior samples (post-hoc).
enum class TrainMode { joint, detach_posterior, post_hoc };
// "joint", "detach-posterior", "post-hoc" (the names config.ini and the flags use).
std::string train_mode_name(TrainMode mode);
// Throws std::invalid_argument naming the text and the valid names.
TrainMode train_mode_from(const std::string& name);

// What the loop does when training diverges (see Divergence): stop with a message naming the
// likely cause, or roll back to the newest good checkpoint, lower the rate to blame and go on,
// or (warn) log a finite training loss that explodes by the relative rule as a "spike" event and
// take the step: a heavy-tailed estimate, such as SNELBO's Zhat when a proposal sample meets
// energy mass the proposal rarely reaches, is then kept, not fatal. A loss that is not finite or
// above kMaxAbsLoss, and a validation bound that explodes, still stop under warn.
enum class DivergencePolicy { stop, rollback, warn };
std::string divergence_policy_name(DivergencePolicy policy);  // "stop", "rollback", "warn"
DivergencePolicy divergence_policy_from(const std::string& name);  // OptionError "on-divergence"

// The rates a divergence can be blamed on, by their flag names.
constexpr const char* kBlameLr = "lr";
constexpr const char* kBlamePriorLr = "prior-lr";
constexpr const char* kBlameStepSize = "mcmc-step-size";

struct TrainOptions {
  TORCH_ARG(int64_t, epochs) = 50;
  TORCH_ARG(int64_t, max_steps) = 0;  // stop after this many steps in all (0: no limit)
  TORCH_ARG(double, time_budget) = 0.0;  // stop after this many seconds of training steps (0: none)
  TORCH_ARG(int64_t, batch_size) = 256;
  TORCH_ARG(double, lr) = 1e-4;
  TORCH_ARG(double, prior_lr) = 2e-5;
  TORCH_ARG(double, beta1) = 0.5;
  TORCH_ARG(double, beta2) = 0.999;
  // The learning-rate schedule, on both rates (see learning_rate_factor): "exponential" (times
  // lr_decay each epoch), "step" (times lr_decay every lr_step_epochs epochs) or "cosine" (from
  // the rate to 0 over the epochs' steps, by half a cosine), after a linear warm-up from 0 over
  // lr_warmup_steps steps.
  TORCH_ARG(std::string, lr_schedule) = "exponential";
  TORCH_ARG(double, lr_decay) = 0.998;
  TORCH_ARG(int64_t, lr_step_epochs) = 10;
  TORCH_ARG(int64_t, lr_warmup_steps) = 0;
  // The gradient of every parameter the step trains, rescaled as one vector to this norm when it
  // is longer (0: off). The norm is measured and logged either way.
  TORCH_ARG(double, clip_grad_norm) = 0.0;
  // KL warm-up (joint and detach-posterior): the KL term's weight in the training loss rises
  // linearly from 0 at the first step to 1 after this many epochs (0: off; see kl_weight).
  // Validation bounds always weigh it 1.
  TORCH_ARG(double, kl_warmup_epochs) = 0.0;
  // Prior warm-up (joint and detach-posterior, learned priors): before this epoch (counted from
  // 0) the encoder and decoder train on the Gaussian ELBO with the base N(0, I) as their prior,
  // and the prior, its objective and its optimiser are not touched (0: off).
  TORCH_ARG(int64_t, prior_start_epoch) = 0;
  TORCH_ARG(int64_t, samples) = 1;      // K posterior samples per image
  // What the encoder and decoder train on: "elbo" (the objective's bound, averaged over the K
  // samples) or "iw" (the importance-weighted bound over the K samples: IWAE, SN-IWAE for the
  // energy prior with snelbo; docs/MATH.md section 13), or "iw-dreg" (the same bound with the
  // doubly reparameterised gradient for the encoder).
  TORCH_ARG(std::string, train_bound) = "elbo";
  TORCH_ARG(uint64_t, seed) = 0;
  TORCH_ARG(TrainMode, mode) = TrainMode::joint;
  TORCH_ARG(int64_t, eval_every) = 1;      // epochs between validations
  TORCH_ARG(int64_t, keep_checkpoints) = 3;
  TORCH_ARG(double, log_every_seconds) = 10.0;  // progress lines when stderr is not a terminal
  TORCH_ARG(bool, dynamic_binarisation) = false;
  // Posterior refinement for the energy prior (joint mode): Langevin steps on
  // -log p(x|z) + U(z) from the encoder's samples before the prior term (0: off).
  TORCH_ARG(int64_t, refine_steps) = 0;
  TORCH_ARG(double, refine_step_size) = 0.1;
  TORCH_ARG(torch::Device, device) = torch::kCPU;
  TORCH_ARG(DivergencePolicy, on_divergence) = DivergencePolicy::stop;
  TORCH_ARG(int64_t, max_rollbacks) = 3;      // rollback: then stop
  TORCH_ARG(double, rollback_factor) = 0.5;   // rollback: the blamed rate times this
  // rollback: the rate to lower: "auto" (the likely cause, see Trainer::likely_cause), or a flag
  // name: lr, prior-lr, mcmc-step-size.
  TORCH_ARG(std::string, rollback_lower) = "auto";

 public:
  void validate() const;  // throws std::invalid_argument naming the bad value
};

// The names TrainOptions::lr_schedule takes.
const std::vector<std::string>& lr_schedule_names();
// The factor on both learning rates at `step` (0-based, in `epoch`, counted from 0) of a run of
// `total_steps` steps: warm-up min(1, (step + 1) / lr_warmup_steps) times lr_decay^epoch
// (exponential), lr_decay^floor(epoch / lr_step_epochs) (step), or (1 + cos(pi step /
// total_steps)) / 2 (cosine). A function of its arguments only, so a resumed run sets the rates a
// run that never stopped would.
double learning_rate_factor(const TrainOptions& options, int64_t step, int64_t epoch, int64_t total_steps);
// The KL term's weight at `step` (0-based) with `steps_per_epoch` steps an epoch:
// min(1, step / (kl_warmup_epochs * steps_per_epoch)); 1 without warm-up.
double kl_weight(const TrainOptions& options, int64_t step, int64_t steps_per_epoch);

// Rescales the gradients, as one vector, to norm `limit` when they are longer (limit 0: never);
// returns their norm before, computed in double. A non-finite norm is returned, not clipped.
double clip_gradient_norm(const std::vector<torch::Tensor>& grads, double limit);

// Training diverged: a quantity (the training loss, the validation bound, log Z, the
// parameters) is not finite or exploded. Thrown inside the loop; the loop logs a "diverged"
// event and stops or rolls back.
struct Divergence : std::runtime_error {
  Divergence(int64_t step, std::string quantity, double value);
  int64_t step;
  std::string quantity;  // "training loss", "validation bound", "validation log Z", "parameters"
  double value;
  // The training step's own diagnostics (the objective's, e.g. log_z_hat, b and ess_fraction
  // for SNELBO), which say what in the loss exploded: empty for the other quantities.
  std::map<std::string, double> diagnostics;
};

// For a training loss that diverged because SNELBO's normaliser term exp(log_z_hat - b) (the
// step's diagnostics) is more than half of it: a sentence that says so. Otherwise "".
std::string normaliser_spike(const Divergence& d);

// The run stopped because it diverged (policy stop, or no rollback left). what() says where,
// what and why in words; how to go on is the caller's to say (apps/train.cpp spells it as
// flags), from the fields.
struct TrainingDiverged : std::runtime_error {
  using std::runtime_error::runtime_error;
  std::string cause;              // the likely cause: kBlameLr, kBlamePriorLr or kBlameStepSize
  double cause_value = 0;         // its value now
  std::string lowered;            // the rate a rollback lowers (the cause unless --rollback-lower says)
  bool normaliser_spike = false;  // SNELBO's normaliser term, not a rate: the step can be taken (warn)
  bool same_step = false;         // it diverged again at the step of the last rollback, after `lowered` was lowered
  bool nothing_saved = false;     // no checkpoint: the run goes on from its start
  bool at_first_step = false;     // and it diverged at its first step
  std::string run_dir;
};

// What the training loop has to tell whoever runs it. The loop prints nothing: apps/train.cpp's
// listener prints, and spells rates and policies as the user's flags. Rates are named as
// TrainOptions names them (kBlameLr, kBlamePriorLr, kBlameStepSize). Every method does nothing
// unless overridden; only the process that writes the run (rank 0) tells it.
class TrainerListener {
 public:
  virtual ~TrainerListener() = default;
  struct Progress {
    int64_t epoch = 0, epochs = 0;    // epoch counted from 1
    int64_t batch = 0, batches = 0;   // in the epoch
    double images_per_second = 0, eta_seconds = 0, loss = 0;
  };
  // True for a live display (a terminal): progress is then told every quarter second, else
  // every TrainOptions::log_every_seconds(). The "train" records of metrics.jsonl go with it.
  virtual bool live() const { return false; }
  virtual void progress(const Progress&) {}
  virtual void progress_done() {}  // the progress display ends here
  virtual void validated(const std::string& when, double bound, bool best) {}
  virtual void unsealed_checkpoint(const std::string& path) {}
  virtual void damaged_checkpoint_set_aside(const std::string& renamed_to, const std::string& why) {}
  // A finite training-loss spike, logged and taken (DivergencePolicy::warn).
  virtual void spike_taken(int64_t step, double loss, double median, const std::string& terms) {}
  virtual void rolled_back(const std::string& what, const std::string& rate, double was, double now, int64_t rollback,
                           int64_t max_rollbacks) {}
  virtual void interrupted(int64_t step, const std::string& run_dir) {}
};

// Where a loss, bound or log Z counts as exploded. A training loss explodes when its magnitude
// exceeds kMaxAbsLoss nats, or when it exceeds the median of the last kLossWindow losses by
// more than max(10 |median|, 1000) nats; a validation bound the same way, below the best one so
// far; log Z when |log Z| > kMaxAbsLogZ.
constexpr int kLossWindow = 100;
constexpr double kMaxAbsLoss = 1e10;
constexpr double kMaxAbsLogZ = 1000.0;
bool exploded(double value, double reference);  // value above reference by max(10 |ref|, 1000)

// A checkpoint that cannot go on under this launch (see check_data_parallel): not damaged, so
// resume_latest() does not set it aside; the message says how to resume it.
struct ResumeError : UserError {
  using UserError::UserError;
  ResumeError(const std::string& what, int64_t processes) : UserError(what), processes(processes) {}
  int64_t processes = 0;  // > 0: the number of processes the checkpoint resumes with
};

struct TrainState {
  int64_t step = 0;
  int64_t epoch = 0;        // epochs completed
  int64_t batch_index = 0;  // next batch within the current epoch
  double best_validation = -std::numeric_limits<double>::infinity();
  double train_seconds = 0;  // wall time spent in training steps (validation excluded)
  // Data-parallel training: the part of train_seconds spent in the steps' collectives (the
  // gradient all-reduce, the loss's, SNELBO's log-sum-exp; Distributed::collective_seconds),
  // the ranks' mean; it includes waiting for the slowest rank. 0 in one process.
  double allreduce_seconds = 0;
};

// Data-parallel training (common/distributed.h, docs/MATH.md section 10) of these options and
// this objective over `world_size` processes: throws OptionError naming the option that is not
// data-parallel yet (posterior refinement, rollback, the objective's own) or a batch smaller
// than the number of processes. Nothing for one process.
//
// A checkpoint of an objective with state of each process's own (PriorObjective::
// per_process_state: the MCMC chains) resumes only with as many processes as wrote it:
// otherwise ResumeError, naming both numbers.
void check_data_parallel(const TrainOptions& options, const PriorObjective& objective, int world_size);

// The validation callback returns the mean validation bound (higher is better) and
// may add fields to the record it is given.
using Validator = std::function<double(VaeModel&, class Json&)>;

class Trainer {
 public:
  // With `distributed` of more than one process (data-parallel training), this is one of them:
  // options.batch_size() is the global batch, of which this process takes its rows
  // (BatchShard); gradients are summed over the processes before each optimiser step, and
  // the loss, the stop flag and the time spent are agreed, so every process takes the same
  // steps and holds the same parameters (checked at each validation). Rank 0's parameters
  // start all processes; only rank 0 validates (the validator is called there alone) and
  // writes to the run directory, which the other ranks never touch (RunDir::named).
  Trainer(std::shared_ptr<VaeModel> model, std::unique_ptr<PriorObjective> objective, torch::Tensor train_data,
          TrainOptions options, RunDir run_dir, std::shared_ptr<Distributed> distributed = nullptr);

  void set_validator(Validator validator) { validator_ = std::move(validator); }
  // When set and true, the loop saves a checkpoint after the current step and returns.
  void set_stop_flag(const std::atomic<bool>* flag) { stop_flag_ = flag; }

  // Called when a rollback lowered a rate (flag name, old value, new value), so that the caller
  // can write it into config.ini; the trainer logs the "diverged" event itself.
  void set_rate_listener(std::function<void(const std::string&, double, double)> listener) {
    rate_listener_ = std::move(listener);
  }
  // Told what the loop has to say (see TrainerListener); none: the loop is silent.
  void set_listener(std::shared_ptr<TrainerListener> listener) {
    listener_ = listener ? std::move(listener) : std::make_shared<TrainerListener>();
  }

  // Trains until options.epochs() (or max_steps). Returns false if stopped early by the flag.
  // Throws TrainingDiverged when training diverged and the policy (or the rollbacks left) says stop.
  bool run();

  // One optimisation step on x [B, P]; returns the loss and the mean terms. In data-parallel
  // training x is this process's rows of the batch, and the loss and terms are the whole
  // batch's.
  std::map<std::string, double> step(const torch::Tensor& x);

  void save_checkpoint(const std::string& path) const;
  // All or nothing: on any failure the trainer is as it was before the call. Throws DataError
  // naming the file if it is missing, truncated, changed after it was written (its seal) or not
  // a checkpoint; ResumeError naming the file and the run's config.ini when an intact
  // checkpoint does not fit this model, optimiser or objective (another configuration's).
  void load_checkpoint(const std::string& path);
  // Loads the newest intact step checkpoint of the run directory; false if there is none. A
  // damaged checkpoint (DataError) is renamed to NAME.corrupt, named on stderr and in
  // skipped_checkpoints(), and the one before it is tried; one that does not fit the run
  // (ResumeError) stops the resume and is left where it is. In data-parallel training rank 0
  // does so and sends the checkpoint's bytes to the others.
  bool resume_latest();
  const std::vector<std::string>& skipped_checkpoints() const { return skipped_; }

  // The rate a divergence is most likely due to, measured: the learning rate of the parameter
  // group that moved far (a tenth of its size or more) and ten times more than the other since
  // the newest checkpoint; when neither did, the sampler's step size for the MCMC objectives,
  // the prior's learning rate for other energy priors, else the learning rate.
  std::string likely_cause() const;

  const TrainState& state() const { return state_; }
  VaeModel& model() { return *model_; }
  PriorObjective& objective() { return *objective_; }
  const Distributed& distributed() const { return *dist_; }

 private:
  // The detach-posterior and post-hoc modes' terms per image of x (this process's `shard` of
  // the batch in data-parallel training, drawing the posterior noise as BatchShard says): the
  // prior's term on the posterior samples, and in detach-posterior the Gaussian ELBO's
  // reconstruction and KL, which train the VAE (undefined in post-hoc).
  struct PriorFitTerms {
    torch::Tensor log_prior, reconstruction, kl, iw;
    std::map<std::string, double> diagnostics;
  };
  PriorFitTerms prior_fit_terms(const torch::Tensor& x, const BatchShard* shard);
  std::map<std::string, double> data_parallel_step(const torch::Tensor& x);
  void load_checkpoint_bytes(const std::string& bytes, const std::string& name);
  // What a checkpoint and a snapshot both hold: "model", the optimisers, "objective".
  void write_learned_state(torch::serialize::OutputArchive& archive) const;
  // The optimisers' states from a checkpoint's or a snapshot's archive.
  void read_optimizers(torch::serialize::InputArchive& archive);
  // The parts of load_checkpoint_bytes after the file opened intact; may leave the trainer half
  // loaded, which load_checkpoint_bytes undoes with snapshot() and restore().
  void load_checkpoint_state(ArchiveReader& reader, const std::string& name);
  std::string snapshot() const;
  void restore(const std::string& snapshot);
  // The parameters as of the newest checkpoint saved or loaded (or the start), and how far each
  // group (encoder, decoder and likelihood; the prior) has moved from them, relative to their
  // size (infinite when not finite): what likely_cause() measures.
  void keep_reference() const;
  std::pair<double, double> moved() const;
  struct Reference {
    std::vector<torch::Tensor> vae, prior;
  };
  mutable Reference reference_;
  void validate_data_parallel();  // validate() in data-parallel training
  // A validation bound: a divergence, or recorded (rank 0), printed and kept as best if it is.
  void accept_validation(double value, Json& record);
  void set_learning_rates(int64_t step, int64_t epoch);
  // The steps of the schedule's horizon: the epochs' (a stop by max_steps or the time budget
  // does not change the rates, so that a run stopped early equals the start of a longer one).
  int64_t schedule_steps() const;
  // The prior warm-up: before TrainOptions::prior_start_epoch the prior is left alone.
  bool prior_warming_up() const { return state_.epoch < options_.prior_start_epoch(); }
  // The encoder's samples' Gaussian ELBO terms with the base N(0, I) as prior: the VAE's loss in
  // detach-posterior and in the prior warm-up. z: the samples, for the prior's term.
  struct GaussianTerms {
    DiagonalGaussian q;
    torch::Tensor z, reconstruction, kl;
    torch::Tensor iw;  // with train_bound iw: the IWAE bound with N(0, I) over the K samples
  };
  bool importance_weighted() const { return options_.train_bound() != "elbo"; }
  bool dreg() const { return options_.train_bound() == "iw-dreg"; }
  GaussianTerms gaussian_terms(const torch::Tensor& x, const BatchShard* shard);
  // After the backward pass (and the gradient all-reduce): the norm of the gradient of every
  // parameter the step trains, as one vector, rescaled to TrainOptions::clip_grad_norm when it
  // is longer; the step's record gets grad_norm and clipped. `grads`: step_gradients(), gathered
  // once per step for the all-reduce and this.
  void clip_gradients(const std::vector<torch::Tensor>& grads, std::map<std::string, double>& out);
  // The defined gradients of the parameters the step updates: the VAE optimiser's, and the
  // prior's when `prior`.
  std::vector<torch::Tensor> step_gradients(bool prior) const;
  // The window of train steps since the last train record: their gradient norms and clips.
  struct GradientWindow {
    double sum = 0, max = 0;
    int64_t steps = 0, clipped = 0;
  };
  GradientWindow gradient_window_;
  bool run_steps();
  // Logs the divergence; rolls back and lowers a rate when the policy allows, else throws
  // TrainingDiverged.
  void handle(const Divergence& d);
  void check_loss(double loss, const std::map<std::string, double>& diagnostics);
  void end_epoch();
  void validate();  // runs the validator (if any), logs it, keeps best.pt

  std::shared_ptr<VaeModel> model_;
  std::unique_ptr<PriorObjective> objective_;
  TrainOptions options_;
  RunDir run_dir_;
  Batcher batcher_;
  at::Generator generator_;
  std::unique_ptr<FusedAdam> vae_optimizer_;
  std::unique_ptr<FusedAdam> prior_optimizer_;
  TrainState state_;
  Validator validator_;
  const std::atomic<bool>* stop_flag_ = nullptr;
  std::function<void(const std::string&, double, double)> rate_listener_;
  std::shared_ptr<TrainerListener> listener_ = std::make_shared<TrainerListener>();
  std::deque<double> recent_losses_;
  int64_t rollbacks_ = 0;
  int64_t last_divergence_step_ = -1;  // the step of the divergence handled last, if any
  std::vector<std::string> skipped_;
  std::shared_ptr<Distributed> dist_;  // never null: one process unless data-parallel
  BatchShard shard_;                   // this process's rows of each batch
  bool writes_ = true;                 // rank 0 writes the run directory, the others nothing
};

// Loads a module's parameters and buffers from an archive. Module::load re-targets each tensor
// to the stored one whatever its shape; this throws, naming the tensor, when a stored shape
// differs from the module's, or when a stored value is NaN or infinite.
void load_module_checked(torch::nn::Module& module, torch::serialize::InputArchive& archive);

// The first parameter or buffer of `module` holding NaN or an infinity, or "" if none.
std::string first_non_finite(const torch::nn::Module& module);

// Loads only the model's parameters from a checkpoint written by Trainer (for
// evaluate, sample, export and post-hoc fitting). Throws DataError naming the file.
// Returns whether the checkpoint carries its seal (false: written by vae-ebm 0.1 before
// checkpoints were sealed, so damage cannot be detected; the caller says so).
bool load_model_from_checkpoint(const std::string& path, VaeModel& model, torch::Device device = torch::kCPU);

// The flow an objective trained alongside (the SNELBO proposal, the NCE noise, the FCE flow:
// TrainedFlow, saved in the checkpoint's objective state), on `device`, its parameters frozen;
// an undefined Flow when the checkpoint holds none. Throws DataError naming the file.
Flow load_objective_flow_from_checkpoint(const std::string& path, torch::Device device = torch::kCPU);

}  // namespace vae_ebm
