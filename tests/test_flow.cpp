// The flow over the latent space (prior/flow.h) and log Z by importance sampling from a flow
// fitted to the energy (estimators/flow_log_z.h), against closed forms.
#include <cmath>

#include "data/seed.h"
#include "estimators/flow_log_z.h"
#include "estimators/log_z_methods.h"
#include "prior/energy.h"
#include "prior/flow.h"
#include "tests/support.h"

namespace vae_ebm::test {

namespace {

constexpr double kLog2Pi = 1.8378770664093453;

// Moves every parameter away from the identity initialisation.
void randomise(Flow& flow, double scale) {
  torch::NoGradGuard no_grad;
  for (auto& p : flow->parameters()) p.add_(torch::randn_like(p) * scale);
}

}  // namespace

class FlowTest : public SeedingFixture {};

TEST_F(FlowTest, ANewFlowIsTheStandardNormal) {
  Flow flow(5);
  auto x = torch::randn({64, 5}) * 2;
  auto expected = -0.5 * (x * x).sum(-1) - 2.5 * kLog2Pi;
  EXPECT_TRUE(torch::allclose(flow->log_prob(x), expected, 1e-5, 1e-5));
  auto gen = make_generator(3);
  auto [z, log_q] = flow->sample_with_log_prob(20000, gen);
  EXPECT_LT(z.mean(0).abs().max().item<double>(), 0.05);
  EXPECT_LT((z.var(0) - 1).abs().max().item<double>(), 0.05);
  EXPECT_TRUE(torch::allclose(log_q, -0.5 * (z * z).sum(-1) - 2.5 * kLog2Pi, 1e-5, 1e-4));
}

TEST_F(FlowTest, InTwoDimensionsTheDensityIntegratesToOne) {
  // The change-of-variables density, integrated numerically over a grid wide enough to hold
  // its mass: 1 within the quadrature's error.
  Flow flow(2, FlowOptions().layers(4).hidden(16));
  randomise(flow, 0.3);
  const int64_t n = 601;
  const double lo = -12, hi = 12, h = (hi - lo) / (n - 1);
  auto axis = torch::linspace(lo, hi, n);
  auto grid = torch::stack(torch::meshgrid({axis, axis}, "ij"), -1).reshape({-1, 2});
  double mass, moved;
  {
    torch::NoGradGuard no_grad;
    auto log_q = flow->log_prob(grid);
    mass = torch::exp(log_q).sum().item<double>() * h * h;
    auto near = (grid * grid).sum(-1) < 9;  // where N(0, I) has its mass
    moved = (log_q - (-0.5 * (grid * grid).sum(-1) - kLog2Pi)).masked_select(near).abs().max().item<double>();
  }
  EXPECT_NEAR(mass, 1.0, 1e-2);
  EXPECT_GT(moved, 0.1) << "the randomised flow should be far from the standard normal";
}

TEST_F(FlowTest, SamplingThenEvaluatingRoundTrips) {
  Flow flow(7, FlowOptions().layers(5));
  randomise(flow, 0.2);
  auto gen = make_generator(11);
  torch::NoGradGuard no_grad;
  auto [z, log_q] = flow->sample_with_log_prob(256, gen);
  EXPECT_TRUE(torch::allclose(flow->log_prob(z), log_q, 1e-4, 1e-4)) << (flow->log_prob(z) - log_q).abs().max();
}

TEST_F(FlowTest, AFlowFittedToTheLinearTiltRecoversLogZ) {
  // f(z) = c.z: p(z) = N(z; -c, I) and log Z = |c|^2 / 2. The flow learns the shift by reverse
  // KL; importance sampling from it then has nearly equal weights.
  const int64_t d = 4;
  auto c = torch::tensor({0.8, -0.5, 1.2, 0.3});
  const double log_z = 0.5 * (c * c).sum().item<double>();
  EnergyFn energy = [c](const torch::Tensor& z) { return torch::matmul(z, c.to(z.dtype())); };
  Flow flow(d, FlowOptions().layers(4).hidden(32));
  auto gen = make_generator(5);
  const double gap = fit_flow_reverse_kl(flow, energy, FlowFitOptions().steps(600).batch(256).lr(3e-3), gen);
  EXPECT_NEAR(-gap, log_z, 0.1) << "the reverse-KL objective's bound on log Z";
  const int64_t s = 20000;
  for (double base_fraction : {0.0, 0.1}) {
    auto e = log_z_flow_importance(flow, energy, s, base_fraction, gen);
    EXPECT_NEAR(e.value, log_z, 3 * e.std_error + 1e-3) << e.estimator << " " << e.value << " +- " << e.std_error;
    EXPECT_GT(e.ess, s / 2.0) << e.estimator;
  }
  // The base alone sees far fewer effective samples here.
  auto base = log_z_importance(energy, d, s, gen);
  auto flow_estimate = log_z_flow_importance(flow, energy, s, 0.1, gen);
  EXPECT_GT(flow_estimate.ess, 2 * base.ess);
}

// The linear tilt f(z) = c.z of N(0, I): p = N(-c, I), log Z = |c|^2 / 2.
struct LinearTilt {
  torch::Tensor c = torch::tensor({1.2, -0.9, 1.5, 0.6});
  double log_z() const { return 0.5 * (c * c).sum().item<double>(); }
  EnergyFn energy() const {
    auto cc = c;
    return [cc](const torch::Tensor& z) { return torch::matmul(z, cc.to(z.dtype())); };
  }
};

TEST_F(FlowTest, AisFromTheTargetItselfHasEqualWeightsOfLogZ) {
  // Started from exact samples of p, with g = log p0 - log p = c.z + log Z, every chain's weight
  // is exp(sum_t (beta_t - beta_{t-1}) log Z) = Z whatever its moves: the estimate is log Z exactly.
  LinearTilt tilt;
  AisStart start;
  auto c = tilt.c;
  const double log_z = tilt.log_z();
  start.sample = [c](int64_t n, at::Generator& g) { return torch::randn({n, 4}, g) - c; };
  start.relative_energy = [c, log_z](const torch::Tensor& z) { return torch::matmul(z, c) + log_z; };
  start.name = "the target";
  auto gen = make_generator(3);
  auto r = ais_log_z(tilt.energy(), start, AisOptions().temperatures(20).chains(50), gen);
  EXPECT_NEAR(r.log_z.value, log_z, 1e-4);
  EXPECT_NEAR(r.log_z.ess, 50, 1e-3);
  EXPECT_NE(r.log_z.estimator.find("forward from the target"), std::string::npos) << r.log_z.estimator;
}

TEST_F(FlowTest, AisFromAWideGaussianRecoversTheTiltsLogZ) {
  // From q = N(0, 4 I), g = log p0 - log q = -|z|^2 (1 - 1/4) / 2 + D log 2: far from p, so the
  // transitions and the path's weights carry the estimate.
  LinearTilt tilt;
  AisStart start;
  start.sample = [](int64_t n, at::Generator& g) { return 2 * torch::randn({n, 4}, g); };
  start.relative_energy = [](const torch::Tensor& z) { return -0.375 * (z * z).sum(-1) + 4 * std::log(2.0); };
  start.name = "N(0, 4 I)";
  auto gen = make_generator(4);
  auto r = ais_log_z(tilt.energy(), start, AisOptions().temperatures(200).chains(400).step_size(0.5), gen);
  EXPECT_NEAR(r.log_z.value, tilt.log_z(), 3 * r.log_z.std_error + 0.02) << r.log_z.value << " +- " << r.log_z.std_error;
  EXPECT_GT(r.log_z.ess, 200);
}

TEST_F(FlowTest, TheRefinementCoversATargetTheFlowMissed) {
  // The identity flow (the base) sees the tilt's mass N(-c, I), |c|^2 = 4.86, with a small ESS;
  // the importance-weighted forward-KL refinement alone moves it there.
  LinearTilt tilt;
  Flow flow(4, FlowOptions().layers(4).hidden(32));
  auto gen = make_generator(6);
  const int64_t s = 20000;
  auto before = log_z_flow_importance(flow, tilt.energy(), s, 0.1, gen);
  refine_flow_forward_kl(flow, tilt.energy(), FlowFitOptions().steps(0).refine_steps(200).refine_batch(1024).batch(256).lr(3e-3), 0.1,
                         gen);
  auto after = log_z_flow_importance(flow, tilt.energy(), s, 0.1, gen);
  EXPECT_LT(before.ess, 0.1 * s) << before.ess;
  EXPECT_GT(after.ess, 0.5 * s) << after.ess;
  EXPECT_NEAR(after.value, tilt.log_z(), 3 * after.std_error + 1e-3) << after.value << " +- " << after.std_error;
  // AIS from the refined flow: the chains start where the mass is.
  auto r = ais_log_z(tilt.energy(), flow_ais_start(flow), AisOptions().temperatures(50).chains(200), gen);
  EXPECT_NEAR(r.log_z.value, tilt.log_z(), 3 * r.log_z.std_error + 0.01) << r.log_z.value << " +- " << r.log_z.std_error;
  EXPECT_GT(r.log_z.ess, 150);
}

// evaluate's auto log-Z method tries the flow training left before fitting one: on an energy
// prior whose base importance sampling has ESS below 10% (the linear tilt, as an energy MLP
// with no hidden layer), a trained flow that fits is used, named as such, and kept for the next
// estimate; one that does not fit (the identity, i.e. the base) is passed over for a fitted flow.
TEST_F(FlowTest, AutoLogZUsesTheTrainedFlowWhenItFitsAndElseFitsOne) {
  LinearTilt tilt;
  EnergyPrior prior(4, {}, 0.2);
  {
    torch::NoGradGuard no_grad;
    prior.f->parameters()[0].copy_(tilt.c.view({1, 4}));
  }
  auto gen = make_generator(7);
  Flow trained(4, FlowOptions().layers(4).hidden(32));
  trained->reset_parameters(gen);
  fit_flow_reverse_kl(trained, tilt.energy(), FlowFitOptions().steps(600).batch(256).lr(3e-3), gen);
  for (auto& p : trained->parameters()) p.set_requires_grad(false);
  LogZSettings settings;
  settings.samples = 20000;
  settings.flow = FlowFitOptions().steps(300).batch(256).lr(3e-3).refine_steps(100).refine_batch(1024);
  settings.flow.flow().layers(4).hidden(32);
  int loads = 0;
  settings.trained_flow = [&]() {
    ++loads;
    return trained;
  };
  const auto method = log_z_method("auto", settings);
  EXPECT_NE(method.how.find("trained alongside"), std::string::npos) << method.how;
  const auto first = method.estimate(prior, gen);
  EXPECT_EQ(first.estimator.rfind("IS(trained flow + 0.1 base", 0), 0u) << first.estimator;
  EXPECT_NEAR(first.value, tilt.log_z(), 3 * first.std_error + 1e-3) << first.value << " +- " << first.std_error;
  EXPECT_GT(first.ess, 0.5 * settings.samples);
  const auto second = method.estimate(prior, gen);
  EXPECT_EQ(second.estimator, first.estimator) << "the first estimate decides";
  EXPECT_EQ(loads, 2);

  Flow identity(4, FlowOptions().layers(4).hidden(32));  // the base: ESS below 10% here
  settings.trained_flow = [identity]() { return identity; };
  const auto fitted = log_z_method("auto", settings).estimate(prior, gen);
  EXPECT_EQ(fitted.estimator.rfind("IS(flow + 0.1 base", 0), 0u) << fitted.estimator;
  EXPECT_NEAR(fitted.value, tilt.log_z(), 3 * fitted.std_error + 1e-3);
  settings.trained_flow = [] { return Flow(nullptr); };  // a checkpoint without a flow
  EXPECT_EQ(log_z_method("auto", settings).estimate(prior, gen).estimator.rfind("IS(flow + 0.1 base", 0), 0u);
}

TEST_F(FlowTest, BadOptionsNameTheOption) {
  EXPECT_THROW_WITH(Flow(3, FlowOptions().layers(0)), "flow-layers");
  EXPECT_THROW_WITH(FlowFitOptions().steps(-1).validate(), "flow-steps");
  EXPECT_THROW_WITH(FlowFitOptions().refine_steps(-1).validate(), "flow-refine-steps");
  Flow flow(2);
  auto gen = make_generator(1);
  EnergyFn zero = [](const torch::Tensor& z) { return torch::zeros({z.size(0)}); };
  EXPECT_THROW_WITH(log_z_flow_importance(flow, zero, 10, 1.0, gen), "flow-base-fraction");
}

}  // namespace vae_ebm::test
