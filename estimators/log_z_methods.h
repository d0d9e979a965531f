#pragma once
// The log-Z methods of an energy prior, by name (auto | is | flow | flow-ais | ais): importance
// sampling from the base or from a flow fitted to the energy, and forward AIS from either
// (MATH.md sections 5 and 8.3); how evaluate and training's validation set the normaliser that
// the bounds hold fixed; and the work in blocks that makes an estimate the same for any number
// of processes. The commands name the methods and spell their options as flags (apps/).
#include <torch/torch.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/distributed.h"
#include "common/options.h"
#include "data/json.h"
#include "estimators/ais.h"
#include "estimators/estimate.h"
#include "estimators/flow_log_z.h"
#include "prior/energy.h"

namespace vae_ebm {

// An estimator of log Z and the words that say how it estimates.
struct LogZMethod {
  std::function<Estimate(EnergyPrior&, at::Generator&)> estimate;
  std::string how;
};

// What the log-Z methods read: the base samples of importance sampling, AIS's options.
struct LogZSettings {
  int64_t samples = 10000;
  AisOptions ais;
  FlowFitOptions flow;                    // flow: the proposal's fit to the energy
  double flow_base_fraction = 0.1;        // flow: share of the samples drawn from the base
  // auto: the flow the training objective trained alongside the energy (evaluate sets it from
  // the checkpoint; a null Flow when there is none). auto tries it before fitting a flow: the
  // estimate is unbiased from any proposal, and a fit costs minutes.
  std::function<Flow()> trained_flow;
  // Set (evaluate): the importance samples and AIS chains are drawn in blocks, each from a
  // generator of its own seeded from the one the method is given (in_blocks), shared out over
  // these processes: the estimate is the same for any number of them (one included). Unset
  // (training's validation): everything is drawn from the one generator, in one process.
  std::shared_ptr<Distributed> blocks_over;
};
// The settings a user gives (evaluate's flags), declared once: flow-steps, flow-refine-steps,
// flow-layers, flow-hidden, flow-base-fraction (the flow a method fits to the energy),
// ais-temperatures, ais-chains, ais-step-size, ais-target-acceptance. The defaults are the
// structs'. check_log_z_settings throws OptionError naming one of these.
const OptionSet<LogZSettings>& log_z_option_set();
void check_log_z_settings(const LogZSettings& settings);

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
// The method named (the registry of log-Z estimators), or an error naming the value and the
// valid names (RegistryError), or a bad option (OptionError, named as AIS's and the flow fit's
// options name themselves: "chains", "steps", ...).
LogZMethod log_z_method(const std::string& name, const LogZSettings& settings);
std::vector<std::string> log_z_method_names();
// Sets the log Z estimate that an energy prior's bounds hold fixed. With a learned b
// (snelbo) one estimate serves as Zhat; otherwise b is replaced by a first estimate and Zhat
// comes from a second, independent one by the same method. Records both in `record`.
Estimate set_normaliser(EnergyPrior& prior, bool use_learned_b, const LogZMethod& method, uint64_t seed, Json& record);

// A flow fitted to the energy: reverse KL from the identity (drawn from `gen`), then the
// mass-covering refinement (estimators/flow_log_z.h); its parameters frozen.
Flow fit_log_z_flow(EnergyPrior& prior, const FlowFitOptions& fit, double base_fraction, at::Generator& gen);
}  // namespace vae_ebm
