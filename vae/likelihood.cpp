#include <torch/torch.h>

#include "vae/likelihood.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <sstream>

#include "common/error.h"
#include "common/registry.h"
#include "data/error.h"
#include "vae/networks.h"

namespace vae_ebm {

namespace {

// [..., M P] -> [..., M, P]
torch::Tensor split_params(const torch::Tensor& params, int64_t m) {
  auto sizes = params.sizes().vec();
  const int64_t p = sizes.back() / m;
  sizes.back() = m;
  sizes.push_back(p);
  return params.reshape(sizes);
}

std::string number(double v) {
  std::ostringstream out;
  out << v;
  return out.str();
}

class BernoulliLikelihood : public Likelihood {
 public:
  BernoulliLikelihood() : Likelihood("BernoulliLikelihood") {}
  int64_t outputs_per_value() const override { return 1; }
  torch::Tensor log_prob(const torch::Tensor& params, const torch::Tensor& x) override {
    return bernoulli_log_likelihood(params, x);
  }
  torch::Tensor mean(const torch::Tensor& params) override { return torch::sigmoid(params); }
  torch::Tensor sample(const torch::Tensor& params, at::Generator& generator) override {
    return torch::bernoulli(torch::sigmoid(params), generator);
  }
  bool probability_mass() const override { return true; }
  std::string check_data(const std::string& dataset, const torch::Tensor&, bool binary) const override {
    if (binary) return "";
    return "the bernoulli likelihood on " + dataset +
           ", whose values are not all 0 or 1: the grey values are targets of a cross-entropy, and the bounds are "
           "not bounds on the likelihood of these images (the logistic likelihood models 8-bit levels, the gaussian "
           "continuous values)";
  }
  std::string describe() const override { return "bernoulli"; }
};

class GaussianLikelihood : public Likelihood {
 public:
  GaussianLikelihood(const LikelihoodOptions& o, int64_t values)
      : Likelihood("GaussianLikelihood"), options_(o), scale_(o.range() == "-1,1" ? 2.0 : 1.0),
        shift_(o.range() == "-1,1" ? -1.0 : 0.0) {
    if (o.variance() == "learned") {
      // sigma = min_sigma + softplus(raw), starting at a fifth of the range's width.
      const double start = 0.2 * scale_ - o.min_sigma();
      const double raw = start > 0 ? std::log(std::expm1(start)) : -5.0;
      sigma_raw_ = register_parameter("sigma_raw", torch::full({values}, raw));
    }
  }
  int64_t outputs_per_value() const override { return 1; }
  torch::Tensor sigma() const {
    if (!sigma_raw_.defined()) return torch::tensor(options_.sigma());
    return options_.min_sigma() + torch::softplus(sigma_raw_);
  }
  torch::Tensor log_prob(const torch::Tensor& params, const torch::Tensor& x) override {
    auto y = x * scale_ + shift_;
    auto s = sigma().to(params.device(), params.scalar_type());
    auto r = (y - params) / s;
    const double half_log_2pi = 0.5 * std::log(2.0 * M_PI);
    return (-0.5 * r * r - torch::log(s) - half_log_2pi).sum(-1);
  }
  torch::Tensor mean(const torch::Tensor& params) override { return ((params - shift_) / scale_).clamp(0.0, 1.0); }
  torch::Tensor sample(const torch::Tensor& params, at::Generator& generator) override {
    auto s = sigma().to(params.device(), params.scalar_type());
    auto eps = at::normal(0.0, 1.0, params.sizes(), generator, params.options());
    return ((params + s * eps - shift_) / scale_).clamp(0.0, 1.0);
  }
  bool probability_mass() const override { return false; }
  std::string check_data(const std::string&, const torch::Tensor&, bool) const override { return ""; }
  std::string describe() const override {
    const std::string range = scale_ == 2.0 ? "[-1, 1] (2x - 1)" : "[0, 1]";
    return "gaussian (" +
           (sigma_raw_.defined() ? "learned sigma per value, at least " + number(options_.min_sigma())
                                 : "fixed sigma " + number(options_.sigma())) +
           "; a density of the data in " + range + ")";
  }

 private:
  LikelihoodOptions options_;
  double scale_, shift_;
  torch::Tensor sigma_raw_;
};

class LogisticLikelihood : public Likelihood {
 public:
  explicit LogisticLikelihood(const LikelihoodOptions& o) : Likelihood("LogisticLikelihood"), k_(o.mixture()) {}
  int64_t outputs_per_value() const override { return k_ == 1 ? 2 : 3 * k_; }
  struct Parts {
    torch::Tensor weights, means, log_scales;  // [..., K, P]
  };
  Parts parts(const torch::Tensor& params) const {
    auto p = split_params(params, outputs_per_value());
    if (k_ == 1) return {torch::Tensor(), p.narrow(-2, 0, 1), p.narrow(-2, 1, 1)};
    return {p.narrow(-2, 0, k_), p.narrow(-2, k_, k_), p.narrow(-2, 2 * k_, k_)};
  }
  torch::Tensor log_prob(const torch::Tensor& params, const torch::Tensor& x) override {
    const auto q = parts(params);
    return discretised_logistic_log_prob(q.weights, q.means, q.log_scales, x);
  }
  torch::Tensor mean(const torch::Tensor& params) override {
    const auto q = parts(params);
    auto loc = q.means.clamp(-1.0, 1.0);
    auto m = k_ == 1 ? loc.squeeze(-2) : (torch::softmax(q.weights, -2) * loc).sum(-2);
    return (m + 1.0) / 2.0;
  }
  torch::Tensor sample(const torch::Tensor& params, at::Generator& generator) override {
    const auto q = parts(params);
    auto means = q.means, log_scales = q.log_scales;
    if (k_ > 1) {  // the component by Gumbel-max
      auto u = at::empty(q.weights.sizes(), q.weights.options()).uniform_(1e-6, 1.0 - 1e-6, generator);
      auto pick = (q.weights - torch::log(-torch::log(u))).argmax(-2, true);
      means = means.gather(-2, pick);
      log_scales = log_scales.gather(-2, pick);
    }
    means = means.squeeze(-2);
    log_scales = log_scales.squeeze(-2).clamp_min(kMinLogScale);
    auto u = at::empty(means.sizes(), means.options()).uniform_(1e-6, 1.0 - 1e-6, generator);
    auto y = (means + torch::exp(log_scales) * (torch::log(u) - torch::log1p(-u))).clamp(-1.0, 1.0);
    return torch::round((y + 1.0) * 127.5) / 255.0;
  }
  bool probability_mass() const override { return true; }
  std::string check_data(const std::string& dataset, const torch::Tensor& images, bool) const override {
    torch::NoGradGuard no_grad;
    double off = 0;
    for (int64_t start = 0; start < images.size(0); start += 4096) {
      auto levels = images.narrow(0, start, std::min<int64_t>(4096, images.size(0) - start)) * 255.0;
      off = std::max(off, (levels - levels.round()).abs().max().item<double>());
    }
    if (off > 1e-3)
      throw DataError("the logistic likelihood needs 8-bit data (every value k/255 for an integer k, as uint8 images "
                      "are read), but " + dataset + " has values up to " + number(off) +
                      " levels away from one: the gaussian likelihood models continuous data");
    return "";
  }
  std::string describe() const override {
    return k_ == 1 ? "logistic (discretised, 256 levels)"
                   : "logistic (a mixture of " + std::to_string(k_) + " discretised logistics per value, 256 levels)";
  }
  static constexpr double kMinLogScale = -7.0;

 private:
  int64_t k_;
};

struct LikelihoodKind {
  std::function<std::shared_ptr<Likelihood>(const LikelihoodOptions&, int64_t)> make;
};

const Registry<LikelihoodKind>& likelihood_registry() {
  static const auto registry =
      Registry<LikelihoodKind>("likelihood")
          .add("bernoulli", {[](const LikelihoodOptions&, int64_t) { return std::make_shared<BernoulliLikelihood>(); }})
          .add("gaussian", {[](const LikelihoodOptions& o, int64_t values) {
                 return std::make_shared<GaussianLikelihood>(o, values);
               }})
          .add("logistic",
               {[](const LikelihoodOptions& o, int64_t) { return std::make_shared<LogisticLikelihood>(o); }});
  return registry;
}

}  // namespace

std::vector<std::string> likelihood_kinds() { return likelihood_registry().names(); }

void LikelihoodOptions::validate() const {
  likelihood_registry().at(kind_);  // throws on an unknown name, listing the valid ones
  if (variance_ != "fixed" && variance_ != "learned")
    throw OptionError("likelihood-variance", "must be fixed or learned, got '" + variance_ + "'");
  if (!(sigma_ > 0) || !std::isfinite(sigma_))
    throw OptionError("likelihood-sigma", "must be a positive number, got " + number(sigma_));
  if (!(min_sigma_ > 0) || !std::isfinite(min_sigma_))
    throw OptionError("likelihood-min-sigma", "must be a positive number, got " + number(min_sigma_));
  if (range_ != "0,1" && range_ != "-1,1")
    throw OptionError("likelihood-range", "must be 0,1 or -1,1, got '" + range_ + "'");
  if (mixture_ < 1 || mixture_ > 100)
    throw OptionError("likelihood-mixture", "must be between 1 and 100, got " + std::to_string(mixture_));
}

std::shared_ptr<Likelihood> make_likelihood(const LikelihoodOptions& options, int64_t values) {
  options.validate();
  return likelihood_registry().at(options.kind()).make(options, values);
}

torch::Tensor discretised_logistic_log_prob(const torch::Tensor& logit_weights, const torch::Tensor& means,
                                            const torch::Tensor& log_scales, const torch::Tensor& x) {
  constexpr double kHalfBin = 1.0 / 255.0;  // half a level's width in the units of 2x - 1
  auto y = (x * 2.0 - 1.0).unsqueeze(-2);   // [..., 1, P]
  auto log_s = log_scales.clamp_min(-7.0);
  auto inv_s = torch::exp(-log_s);
  auto centred = y - means;
  auto plus_in = inv_s * (centred + kHalfBin);
  auto min_in = inv_s * (centred - kHalfBin);
  auto mid_in = inv_s * centred;
  // The bin's mass: a difference of two sigmoids, taken on the side where both are small.
  auto delta = torch::where(mid_in > 0, torch::sigmoid(-min_in) - torch::sigmoid(-plus_in),
                            torch::sigmoid(plus_in) - torch::sigmoid(min_in));
  // Where the mass underflows, the density at the bin's centre times its width 2/255.
  auto log_pdf_mid = mid_in - log_s - 2.0 * torch::softplus(mid_in);
  auto log_mid = torch::where(delta > 1e-5, torch::log(delta.clamp_min(1e-12)), log_pdf_mid - std::log(127.5));
  auto log_first = plus_in - torch::softplus(plus_in);  // x = 0: the CDF up to the bin's top
  auto log_last = -torch::softplus(min_in);             // x = 1: 1 - the CDF at the bin's bottom
  auto log_p = torch::where(y < -0.999, log_first, torch::where(y > 0.999, log_last, log_mid));  // [..., K, P]
  if (logit_weights.defined()) log_p = torch::logsumexp(log_p + torch::log_softmax(logit_weights, -2), -2);
  else log_p = log_p.squeeze(-2);
  return log_p.sum(-1);
}

double bits_per_dim(double nats, int64_t values) { return -nats / (static_cast<double>(values) * std::log(2.0)); }

}  // namespace vae_ebm
