#pragma once
// The training loop: joint (encoder, decoder and prior together), detached-posterior
// (the VAE on the Gaussian ELBO while the prior is fitted to detached samples), and
// post hoc (encoder and decoder frozen, only the prior learns). Checkpoints hold
// everything a resumed run needs, so resuming equals never stopping.
#include <torch/torch.h>

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "data/batcher.h"
#include "data/run_dir.h"
#include "prior/objective.h"
#include "vae/fused_adam.h"
#include "vae/model.h"

namespace vae_ebm {

// What trains: encoder, decoder and prior together on the objective's bound (joint); the VAE on
// the Gaussian ELBO with the prior fitted to detached posterior samples (detach-posterior); or
// only the prior, fitted to a frozen VAE's posterior samples (post-hoc).
enum class TrainMode { joint, detach_posterior, post_hoc };
// "joint", "detach-posterior", "post-hoc" (the names config.ini and the flags use).
std::string train_mode_name(TrainMode mode);
// Throws std::invalid_argument naming the text and the valid names.
TrainMode train_mode_from(const std::string& name);

struct TrainOptions {
  TORCH_ARG(int64_t, epochs) = 50;
  TORCH_ARG(int64_t, max_steps) = 0;  // stop after this many steps in all (0: no limit)
  TORCH_ARG(double, time_budget) = 0.0;  // stop after this many seconds of training steps (0: none)
  TORCH_ARG(int64_t, batch_size) = 256;
  TORCH_ARG(double, lr) = 1e-4;
  TORCH_ARG(double, prior_lr) = 2e-5;
  TORCH_ARG(double, beta1) = 0.5;
  TORCH_ARG(double, beta2) = 0.999;
  TORCH_ARG(double, lr_decay) = 0.998;  // both learning rates times this each epoch
  TORCH_ARG(int64_t, samples) = 1;      // K posterior samples per image
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

 public:
  void validate() const;  // throws std::invalid_argument naming the bad value
};

struct TrainState {
  int64_t step = 0;
  int64_t epoch = 0;        // epochs completed
  int64_t batch_index = 0;  // next batch within the current epoch
  double best_validation = -std::numeric_limits<double>::infinity();
  double train_seconds = 0;  // wall time spent in training steps (validation excluded)
};

// The validation callback returns the mean validation bound (higher is better) and
// may add fields to the record it is given.
using Validator = std::function<double(VaeModel&, class Json&)>;

class Trainer {
 public:
  Trainer(std::shared_ptr<VaeModel> model, std::unique_ptr<PriorObjective> objective, torch::Tensor train_data,
          TrainOptions options, RunDir run_dir);

  void set_validator(Validator validator) { validator_ = std::move(validator); }
  // When set and true, the loop saves a checkpoint after the current step and returns.
  void set_stop_flag(const std::atomic<bool>* flag) { stop_flag_ = flag; }

  // Trains until options.epochs() (or max_steps). Returns false if stopped early by the flag.
  bool run();

  // One optimisation step on x [B, P]; returns the loss and the mean terms.
  std::map<std::string, double> step(const torch::Tensor& x);

  void save_checkpoint(const std::string& path) const;
  // Throws DataError naming the file if it is missing, truncated or not a checkpoint.
  void load_checkpoint(const std::string& path);
  // Loads the newest step checkpoint of the run directory; false if there is none.
  bool resume_latest();

  const TrainState& state() const { return state_; }
  VaeModel& model() { return *model_; }
  PriorObjective& objective() { return *objective_; }

 private:
  void set_learning_rates(int64_t epoch);
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
};

// Loads only the model's parameters from a checkpoint written by Trainer (for
// evaluate, sample, export and post-hoc fitting). Throws DataError naming the file.
// Module::load re-targets each tensor to the stored one whatever its shape; this throws,
// naming the tensor, when a stored shape differs from the module's.
void load_module_checked(torch::nn::Module& module, torch::serialize::InputArchive& archive);

void load_model_from_checkpoint(const std::string& path, VaeModel& model, torch::Device device = torch::kCPU);

}  // namespace vae_ebm
