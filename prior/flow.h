#pragma once
// A normalising flow over the latent space: affine coupling layers (RealNVP, Dinh et al. 2017)
// on the base N(0, I). Chosen for what a proposal over z needs at D = 16 to 64: a sample and its
// exact log-density in one pass (the forward pass), and the log-density of a given point in one
// pass too (the inverse pass), each a few small matrix products per layer. An autoregressive
// flow makes one of the two passes D sequential steps; a spline coupling costs more per layer
// for tails a latent prior rarely needs.
//
// Layer k splits the coordinates by a fixed binary mask m_k (alternating between even and odd
// indices) and maps
//   y = m x + (1 - m) (x exp(s(m x)) + t(m x)),   log |det dy/dx| = sum (1 - m) s(m x),
// with s = scale * tanh(.) and t from one MLP per layer. The MLPs' last layers start at zero, so
// a new flow is the identity and its density is N(0, I) exactly.
#include <torch/torch.h>

#include <functional>
#include <memory>
#include <utility>

#include "common/distributed.h"
#include "prior/prior.h"

namespace vae_ebm {

struct FlowOptions {
  TORCH_ARG(int64_t, layers) = 6;     // coupling layers
  TORCH_ARG(int64_t, hidden) = 64;    // width of each conditioner MLP (two hidden layers)
  TORCH_ARG(double, max_log_scale) = 2.0;  // s = max_log_scale * tanh(.): bounded scales

 public:
  void validate() const;  // throws OptionError
};

// The flow prior's options (prior kind "flow"), declared once by flow_prior_option_set():
// flow-layers and flow-hidden (FlowOptions' layers and hidden).
const OptionSet<FlowOptions>& flow_prior_option_set();

class FlowImpl : public torch::nn::Module {
 public:
  FlowImpl(int64_t dim, const FlowOptions& options = FlowOptions());

  // n samples x ~ q [n, D] and log q(x) [n], reparameterised: differentiable in the parameters.
  std::pair<torch::Tensor, torch::Tensor> sample_with_log_prob(int64_t n, at::Generator& generator);
  // The same for `share`'s rows of the n samples (data-parallel training: the base noise is
  // drawn for all n, as one process draws it, and only this process's rows go through the flow).
  std::pair<torch::Tensor, torch::Tensor> sample_with_log_prob(const BatchShard& share, at::Generator& generator);
  // The flow's image of base noise u [n, D] and its log q [n].
  std::pair<torch::Tensor, torch::Tensor> push(const torch::Tensor& u);
  // log q(x) for x [..., D] -> [...] (the inverse pass).
  torch::Tensor log_prob(const torch::Tensor& x);
  // Draws the conditioners' hidden layers afresh from `generator` (uniform, +-1/sqrt(fan-in), as
  // LibTorch's Linear does) and zeroes their last layers: the identity again, reproducibly.
  void reset_parameters(at::Generator& generator);
  int64_t dim() const { return dim_; }

 private:
  // One coupling layer on u [n, D] given its mask: y and log |det| [n]; inverse: x and -log |det|.
  std::pair<torch::Tensor, torch::Tensor> couple(int64_t k, const torch::Tensor& u, bool inverse);
  int64_t dim_;
  FlowOptions options_;
  std::vector<torch::Tensor> masks_;
  torch::nn::ModuleList nets_;
};
TORCH_MODULE(Flow);

// Samples of the defensive mixture r = (1 - a) q + a p0 (p0 = N(0, I)): from_base from the base
// first, then from_flow from the flow, with log [p0(z) / r(z)] for each. Give `a` the fraction
// actually drawn, from_base / (from_base + from_flow) over the whole estimate: then exp(-f(z))
// times exp(log_correction) is an unbiased importance weight of Z (the balance heuristic), and
// for a > 0 each weight stays below exp(-f) / a. No gradient.
struct FlowMixtureSamples {
  torch::Tensor z, log_correction;
};
// log [p0(z) / r(z)] for r = (1 - a) q + a p0 from log q(z) (the weight's correction above), for
// any z [.., D]; differentiable in z and log_q when they are.
torch::Tensor flow_mixture_log_correction(const torch::Tensor& z, const torch::Tensor& log_q, double a);
// With `share` (data-parallel training), its rows of the from_base + from_flow samples: all of
// their noise drawn, this process's rows kept.
FlowMixtureSamples sample_flow_mixture(Flow& flow, int64_t from_base, int64_t from_flow, double a,
                                       at::Generator& generator, const BatchShard* share = nullptr);

// mean over n fresh flow samples of log q(z) + f(z) - log p0(z): an estimate of KL(q || p) - log Z
// for p = p0 exp(-f) / Z, differentiable in the flow's parameters (the reverse-KL loss).
// With `share`, this process's part of it: its rows' sum over n (the parts sum to the mean).
torch::Tensor reverse_kl_gap(Flow& flow, const std::function<torch::Tensor(const torch::Tensor&)>& energy, int64_t n,
                             at::Generator& generator, const BatchShard* share = nullptr);

// One step of `optimizer` (over the flow's parameters) on `loss`, taking the gradients of the
// flow's parameters only: whatever else `loss` depends on (an energy's parameters) is left alone.
// With `dist` (data-parallel training, `loss` this process's part of the whole), the gradients
// are summed over the processes first, so that every process takes the same step.
void step_flow(Flow& flow, torch::optim::Optimizer& optimizer, const torch::Tensor& loss, Distributed* dist = nullptr);

// A flow trained alongside an objective (SNELBO's proposal, NCE's noise, FCE's adversary), with
// its own Adam. It is made at the first step, when the latent dimension is known, its hidden
// layers drawn from the trainer's generator (so a run is reproducible), and it goes into the
// objective's state in checkpoints.
class TrainedFlow {
 public:
  explicit TrainedFlow(double lr) : lr_(lr) {}
  // The flow, made at the first call.
  Flow& get(int64_t dim, torch::Device device, at::Generator& generator);
  // One Adam step on `loss`, for the flow's parameters only (step_flow).
  void step(const torch::Tensor& loss, Distributed* dist = nullptr) { step_flow(flow_, *optimizer_, loss, dist); }
  void save(torch::serialize::OutputArchive& archive) const;
  // Nothing to load when the checkpoint was written before the first step.
  void load(torch::serialize::InputArchive& archive);
  // The keys save() writes into the objective's archive: the latent dimension, the flow's
  // parameters (a module archive) and its Adam's state.
  static constexpr const char* kDimKey = "flow_dim";
  static constexpr const char* kFlowKey = "flow";
  static constexpr const char* kOptimizerKey = "flow_optimizer";

 private:
  void make(int64_t dim, torch::Device device);
  double lr_;
  Flow flow_{nullptr};
  std::unique_ptr<torch::optim::Adam> optimizer_;
};

// --prior flow: the flow itself as the VAE's prior, an exact density trained by the exact
// objective (its parameters learn at --prior-lr). A new one is the identity: N(0, I).
class FlowPrior : public Prior {
 public:
  FlowPrior(int64_t latent_dim, const FlowOptions& options);
  std::string kind() const override { return "flow"; }
  int64_t latent_dim() const override { return flow->dim(); }
  bool exact() const override { return true; }
  torch::Tensor log_prob_unnormalised(const torch::Tensor& z) override { return flow->log_prob(z); }
  torch::Tensor log_prob_bound(const torch::Tensor& z) override { return flow->log_prob(z); }
  torch::Tensor sample(int64_t n, at::Generator& generator) override;
  Flow flow{nullptr};
};

}  // namespace vae_ebm
