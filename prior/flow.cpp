#include <torch/torch.h>

#include "prior/flow.h"

#include <algorithm>
#include <cmath>

#include "common/error.h"
#include "prior/posterior.h"

namespace vae_ebm {

const OptionSet<FlowOptions>& flow_prior_option_set() {
  static const auto set =
      OptionSet<FlowOptions>()
          .integer("flow-layers", [](FlowOptions& o) -> int64_t& { return o.layers(); }, "flow prior: affine coupling layers")
          .integer("flow-hidden", [](FlowOptions& o) -> int64_t& { return o.hidden(); },
                   "flow prior: width of each coupling's conditioner");
  return set;
}

void FlowOptions::validate() const {
  if (layers_ < 1) throw OptionError("flow-layers", "must be >= 1, got " + std::to_string(layers_));
  if (hidden_ < 1) throw OptionError("flow-hidden", "must be >= 1, got " + std::to_string(hidden_));
  if (!(max_log_scale_ > 0 && std::isfinite(max_log_scale_)))
    throw OptionError("flow-max-log-scale", "must be finite and > 0, got " + std::to_string(max_log_scale_));
}

FlowImpl::FlowImpl(int64_t dim, const FlowOptions& options) : dim_(dim), options_(options) {
  TORCH_CHECK(dim > 0, "Flow: dimension must be > 0, got ", dim);
  options.validate();
  nets_ = register_module("nets", torch::nn::ModuleList());
  for (int64_t k = 0; k < options.layers(); ++k) {
    // Layer k conditions on the even coordinates (k even) or the odd ones (k odd).
    auto mask = torch::zeros({dim});
    for (int64_t i = k % 2; i < dim; i += 2) mask[i] = 1;
    masks_.push_back(register_buffer("mask" + std::to_string(k), mask));
    auto last = torch::nn::Linear(options.hidden(), 2 * dim);
    {
      torch::NoGradGuard no_grad;
      last->weight.zero_();
      last->bias.zero_();
    }
    nets_->push_back(torch::nn::Sequential(torch::nn::Linear(dim, options.hidden()), torch::nn::Tanh(),
                                           torch::nn::Linear(options.hidden(), options.hidden()), torch::nn::Tanh(),
                                           last));
  }
}

void FlowImpl::reset_parameters(at::Generator& generator) {
  torch::NoGradGuard no_grad;
  for (const auto& net : *nets_) {
    auto layers = net->as<torch::nn::Sequential>()->children();
    for (size_t i = 0; i < layers.size(); ++i) {
      auto* linear = layers[i]->as<torch::nn::Linear>();
      if (!linear) continue;
      if (i + 1 == layers.size()) {
        linear->weight.zero_();
        linear->bias.zero_();
        continue;
      }
      const double bound = 1.0 / std::sqrt(static_cast<double>(linear->weight.size(1)));
      linear->weight.copy_(torch::rand(linear->weight.sizes(), generator, linear->weight.options()) * 2 * bound - bound);
      linear->bias.copy_(torch::rand(linear->bias.sizes(), generator, linear->bias.options()) * 2 * bound - bound);
    }
  }
}

std::pair<torch::Tensor, torch::Tensor> FlowImpl::couple(int64_t k, const torch::Tensor& u, bool inverse) {
  const auto& m = masks_[k];
  auto kept = u * m;
  auto st = nets_[k]->as<torch::nn::Sequential>()->forward(kept);
  auto s = options_.max_log_scale() * torch::tanh(st.narrow(-1, 0, dim_)) * (1 - m);
  auto t = st.narrow(-1, dim_, dim_) * (1 - m);
  if (!inverse) return {kept + (1 - m) * (u * torch::exp(s) + t), s.sum(-1)};
  return {kept + (1 - m) * ((u - t) * torch::exp(-s)), -s.sum(-1)};
}

std::pair<torch::Tensor, torch::Tensor> FlowImpl::sample_with_log_prob(int64_t n, at::Generator& generator) {
  return push(torch::randn({n, dim_}, generator, masks_[0].options()));
}

std::pair<torch::Tensor, torch::Tensor> FlowImpl::sample_with_log_prob(const BatchShard& share,
                                                                       at::Generator& generator) {
  return push(share.rows(torch::randn({share.global, dim_}, generator, masks_[0].options()), 0));
}

std::pair<torch::Tensor, torch::Tensor> FlowImpl::push(const torch::Tensor& u) {
  auto log_q = standard_normal_log_prob(u);
  auto x = u;
  for (int64_t k = 0; k < options_.layers(); ++k) {
    auto [y, log_det] = couple(k, x, false);
    x = y;
    log_q = log_q - log_det;
  }
  return {x, log_q};
}

torch::Tensor FlowImpl::log_prob(const torch::Tensor& x) {
  TORCH_CHECK(x.size(-1) == dim_, "Flow::log_prob: points have ", x.size(-1), " coordinates, the flow ", dim_);
  auto lead = x.sizes().vec();
  lead.pop_back();
  auto u = x.reshape({-1, dim_});
  auto log_det_inverse = torch::zeros({u.size(0)}, u.options());
  for (int64_t k = options_.layers() - 1; k >= 0; --k) {
    auto [v, log_det] = couple(k, u, true);
    u = v;
    log_det_inverse = log_det_inverse + log_det;
  }
  return (standard_normal_log_prob(u) + log_det_inverse).reshape(lead);
}

FlowMixtureSamples sample_flow_mixture(Flow& flow, int64_t from_base, int64_t from_flow, double a,
                                       at::Generator& generator, const BatchShard* share) {
  torch::NoGradGuard no_grad;
  const auto options = flow->parameters().front().options();
  // The noise of all from_base + from_flow samples, in the order one process draws it; a
  // share keeps its rows [lo, hi) of them, of the base's first and then of the flow's.
  const int64_t lo = share ? share->begin : 0, hi = share ? share->begin + share->size : from_base + from_flow;
  std::vector<torch::Tensor> zs, log_qs;
  if (from_base > 0) {
    auto z = torch::randn({from_base, flow->dim()}, generator, options);
    if (share) z = z.narrow(0, std::min(lo, from_base), std::max<int64_t>(0, std::min(hi, from_base) - lo));
    log_qs.push_back(flow->log_prob(z));
    zs.push_back(z);
  }
  if (from_flow > 0) {
    auto u = torch::randn({from_flow, flow->dim()}, generator, options);
    if (share) {
      const int64_t begin = std::max(lo, from_base) - from_base;
      u = u.narrow(0, begin, std::max<int64_t>(0, hi - from_base - begin));
    }
    auto [z, log_q] = flow->push(u);
    zs.push_back(z);
    log_qs.push_back(log_q);
  }
  auto z = torch::cat(zs);
  return {z, flow_mixture_log_correction(z, torch::cat(log_qs), a)};
}

torch::Tensor flow_mixture_log_correction(const torch::Tensor& z, const torch::Tensor& log_q, double a) {
  auto log_p0 = standard_normal_log_prob(z);
  auto log_r = a > 0 ? torch::logaddexp(std::log1p(-a) + log_q, std::log(a) + log_p0) : log_q;
  return log_p0 - log_r;
}

torch::Tensor reverse_kl_gap(Flow& flow, const std::function<torch::Tensor(const torch::Tensor&)>& energy, int64_t n,
                             at::Generator& generator, const BatchShard* share) {
  auto [z, log_q] = share ? flow->sample_with_log_prob(*share, generator) : flow->sample_with_log_prob(n, generator);
  auto gap = log_q + energy(z) - standard_normal_log_prob(z);
  return share ? gap.sum() / static_cast<double>(n) : gap.mean();
}

void step_flow(Flow& flow, torch::optim::Optimizer& optimizer, const torch::Tensor& loss, Distributed* dist) {
  auto params = flow->parameters();
  auto grads = torch::autograd::grad({loss}, params);
  if (dist) dist->all_reduce_sum(grads, "the all-reduce of a trained flow's gradients");
  for (size_t i = 0; i < params.size(); ++i) params[i].mutable_grad() = grads[i];
  optimizer.step();
}

void TrainedFlow::make(int64_t dim, torch::Device device) {
  flow_ = Flow(dim);
  flow_->to(device);
  optimizer_ = std::make_unique<torch::optim::Adam>(flow_->parameters(), torch::optim::AdamOptions(lr_));
}

Flow& TrainedFlow::get(int64_t dim, torch::Device device, at::Generator& generator) {
  if (!flow_) {
    make(dim, device);
    flow_->reset_parameters(generator);
  }
  return flow_;
}

void TrainedFlow::save(torch::serialize::OutputArchive& archive) const {
  if (!flow_) return;
  archive.write(kDimKey, torch::tensor(flow_->dim()));
  torch::serialize::OutputArchive flow, optimizer;
  flow_->save(flow);
  optimizer_->save(optimizer);
  archive.write(kFlowKey, flow);
  archive.write(kOptimizerKey, optimizer);
}

void TrainedFlow::load(torch::serialize::InputArchive& archive) {
  torch::Tensor dim;
  if (!archive.try_read(kDimKey, dim)) return;
  make(dim.item<int64_t>(), dim.device());
  torch::serialize::InputArchive flow, optimizer;
  archive.read(kFlowKey, flow);
  flow_->load(flow);
  archive.read(kOptimizerKey, optimizer);
  optimizer_->load(optimizer);
}

FlowPrior::FlowPrior(int64_t latent_dim, const FlowOptions& options) : Prior("FlowPrior") {
  flow = register_module("flow", Flow(latent_dim, options));
}

torch::Tensor FlowPrior::sample(int64_t n, at::Generator& generator) {
  torch::NoGradGuard no_grad;
  return flow->sample_with_log_prob(n, generator).first;
}

}  // namespace vae_ebm
