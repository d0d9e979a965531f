// Priors, the SNL bound, the Langevin sampler and the objective registry.
#include <cmath>

#include "data/seed.h"
#include "prior/energy.h"
#include "prior/energy_gradient.h"
#include "prior/gaussian.h"
#include "prior/langevin.h"
#include "prior/mixture.h"
#include "prior/objective.h"
#include "common/parallel.h"
#include "tests/support.h"

namespace vae_ebm::test {

class PriorTest : public SeedingFixture {};

// f(z) = c^T z (an energy MLP with no hidden layer): the prior is N(-c, I) and
// log Z = |c|^2 / 2 in closed form.
static std::shared_ptr<EnergyPrior> linear_energy_prior(const std::vector<float>& c) {
  auto prior = std::make_shared<EnergyPrior>(static_cast<int64_t>(c.size()), std::vector<int64_t>{}, 0.2);
  torch::NoGradGuard no_grad;
  prior->f->ptr<torch::nn::LinearImpl>(0)->weight.copy_(torch::tensor(c).unsqueeze(0));
  return prior;
}

TEST_F(PriorTest, MixtureLogDensityMatchesDirectSum) {
  MixturePrior prior(2, 3, /*init_seed=*/5);
  {
    torch::NoGradGuard no_grad;
    prior.logits.copy_(torch::tensor({0.3, -1.0, 0.7}));
    prior.log_vars.copy_(torch::tensor({{0.0, 0.5}, {-0.4, 0.2}, {1.0, -1.0}}));
  }
  auto z = torch::tensor({{0.1, -0.7}, {2.0, 1.5}});
  auto got = prior.log_prob_bound(z);
  auto logits = prior.logits.detach().to(torch::kDouble);
  auto weights = torch::softmax(logits, 0);
  for (int64_t i = 0; i < 2; ++i) {
    double total = 0;
    for (int64_t k = 0; k < 3; ++k) {
      double density = weights[k].item<double>();
      for (int64_t d = 0; d < 2; ++d) {
        double m = prior.means[k][d].item<double>(), v = std::exp(prior.log_vars[k][d].item<double>());
        double x = z[i][d].item<double>();
        density *= std::exp(-0.5 * (x - m) * (x - m) / v) / std::sqrt(2 * M_PI * v);
      }
      total += density;
    }
    EXPECT_NEAR(got[i].item<double>(), std::log(total), 1e-5);
  }
}

TEST_F(PriorTest, MixtureSamplesHaveTheMixtureMean) {
  MixturePrior prior(2, 3, 1);
  auto gen = make_generator(3);
  auto z = prior.sample(200000, gen);
  auto expected = (torch::softmax(prior.logits, 0).unsqueeze(1) * prior.means).sum(0);
  EXPECT_TRUE(torch::allclose(z.mean(0), expected.detach(), 0, 0.02)) << z.mean(0) << expected;
}

TEST_F(PriorTest, SnlBoundIsTightExactlyAtTheTrueLogZ) {
  auto prior = linear_energy_prior({0.5f, -1.0f});
  const double log_z = 0.5 * (0.25 + 1.0);
  auto z = torch::tensor({{0.3f, 0.2f}, {-1.0f, 2.0f}});
  auto exact = (standard_normal_log_prob(z) - prior->energy(z) - log_z).detach();
  auto log_z_t = torch::full({}, log_z);
  {
    torch::NoGradGuard no_grad;
    prior->b.fill_(log_z);
  }
  auto at_true = prior->sn_log_prob(z, log_z_t);
  EXPECT_TRUE(torch::allclose(at_true.detach(), exact, 1e-5, 1e-5));
  // The gradient of the bound with respect to b vanishes at b = log Z.
  at_true.sum().backward();
  EXPECT_NEAR(prior->b.grad().item<double>(), 0.0, 1e-5);
  for (double b : {-1.0, 0.0, 0.3, 2.0}) {
    torch::NoGradGuard no_grad;
    prior->b.fill_(b);
    auto bound = prior->sn_log_prob(z, log_z_t);
    EXPECT_TRUE((bound < exact).all().item<bool>()) << "b = " << b;
    // -log Z >= 1 - b - exp(-b) Z, with the gap exp(log Z - b) - 1 - (log Z - b).
    double gap = std::exp(log_z - b) - 1 - (log_z - b);
    EXPECT_NEAR((exact - bound)[0].item<double>(), gap, 1e-5);
  }
}

TEST_F(PriorTest, EnergyPriorNeedsALogZEstimateForItsBound) {
  auto prior = linear_energy_prior({1.0f});
  EXPECT_THROW(prior->log_prob_bound(torch::zeros({1, 1})), c10::Error);
  prior->set_log_z_estimate(0.5);
  EXPECT_NO_THROW(prior->log_prob_bound(torch::zeros({1, 1})));
}

TEST_F(PriorTest, UnknownPriorKindListsTheValidOnes) {
  try {
    make_prior(PriorOptions("student-t", 2));
    FAIL() << "expected an error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("gaussian, mog, ebm, flow"), std::string::npos) << e.what();
  }
}

TEST_F(PriorTest, UnknownObjectiveListsTheValidOnes) {
  try {
    make_objective("contrastive-divergence");
    FAIL() << "expected an error";
  } catch (const std::invalid_argument& e) {
    std::string what = e.what();
    for (const auto& name : objective_names()) EXPECT_NE(what.find(name), std::string::npos) << what;
  }
}

TEST_F(PriorTest, SnelboRejectsABadProposalAndTheWrongPrior) {
  EXPECT_THROW(make_objective("snelbo", OptionValues().set("proposal", "uniform")), std::invalid_argument);
  auto snelbo = make_objective("snelbo");
  GaussianPrior gaussian(2);
  EXPECT_THROW(snelbo->check(gaussian), std::invalid_argument);
  auto exact = make_objective("exact");
  auto ebm = linear_energy_prior({1.0f, 0.0f});
  EXPECT_THROW(exact->check(*ebm), std::invalid_argument);
}

// Each SNELBO proposal gives an unbiased Zhat: averaged over many steps, exp(log Zhat)
// approaches Z = exp(|c|^2 / 2).
TEST_F(PriorTest, SnelboProposalsEstimateZWithoutBias) {
  auto prior = linear_energy_prior({0.6f, -0.3f});
  const double z_true = std::exp(0.5 * (0.36 + 0.09));
  DiagonalGaussian q{torch::tensor({{-0.5f, 0.2f}, {-0.8f, 0.4f}, {-0.2f, 0.1f}}), torch::full({3, 2}, -0.5f)};
  for (const std::string proposal : {"base", "aggregate-gaussian", "batch-posterior", "defensive", "flow"}) {
    auto objective = make_objective("snelbo", OptionValues().set("proposal", proposal).set("base-samples", 2000));
    auto gen = make_generator(11);
    double sum = 0;
    const int reps = 50;
    for (int r = 0; r < reps; ++r) {
      auto z = q.rsample(1, gen);
      auto term = objective->prior_term(*prior, q, z, gen);
      sum += std::exp(term.diagnostics.at("log_z_hat"));
    }
    EXPECT_NEAR(sum / reps, z_true, 0.02 * z_true) << proposal;
  }
}

// With f = 0 (Z = 1) and a batch posterior far from the base: the moment-matched Gaussian
// alone misses the base's mass and Zhat collapses towards 0, the defensive mixture keeps
// every weight below 2 (one over the base's fraction) and Zhat near 1.
TEST_F(PriorTest, DefensiveProposalBoundsTheWeights) {
  auto prior = linear_energy_prior({0.0f, 0.0f});
  DiagonalGaussian q{torch::tensor({{5.0f, 5.0f}, {5.2f, 4.8f}}), torch::full({2, 2}, -3.0f)};
  double defensive_sum = 0, aggregate_sum = 0;
  const int reps = 20;
  for (int r = 0; r < reps; ++r) {
    auto gen = make_generator(40 + r);
    auto z = q.rsample(1, gen);
    auto defensive = make_objective("snelbo", OptionValues().set("proposal", "defensive").set("base-samples", 400));
    auto aggregate = make_objective("snelbo", OptionValues().set("proposal", "aggregate-gaussian").set("base-samples", 400));
    const double zd = std::exp(defensive->prior_term(*prior, q, z, gen).diagnostics.at("log_z_hat"));
    const double za = std::exp(aggregate->prior_term(*prior, q, z, gen).diagnostics.at("log_z_hat"));
    EXPECT_LE(zd, 2.0 + 1e-6);
    defensive_sum += zd;
    aggregate_sum += za;
  }
  EXPECT_NEAR(defensive_sum / reps, 1.0, 0.05);
  EXPECT_LT(aggregate_sum / reps, 0.01);
}

TEST_F(PriorTest, MalaAcceptanceMatchesHandComputation) {
  // U(z) = z^2 / 2 in one dimension, grad U = z.
  const double z = 1.0, zp = 0.5, s = 0.5, eta = 1.0;
  auto t = [](double v) { return torch::full({1, 1}, v, torch::kDouble); };
  auto u = [](double v) { return torch::full({1}, 0.5 * v * v, torch::kDouble); };
  auto got = mala_log_acceptance(t(z), u(z), t(z), t(zp), u(zp), t(zp), s, eta).item<double>();
  const double v = s * s;  // (eta s)^2
  const double forward = std::pow(zp - (z - 0.5 * s * s * z), 2) / (2 * v);  // -log q(z'|z) + const
  const double backward = std::pow(z - (zp - 0.5 * s * s * zp), 2) / (2 * v);
  const double expected = -(0.5 * zp * zp) + 0.5 * z * z - backward + forward;
  EXPECT_NEAR(got, expected, 1e-12);
}

struct GaussianTarget {
  torch::Tensor mean = torch::tensor({1.0, -2.0}, torch::kDouble);
  torch::Tensor cov = torch::tensor({{1.0, 0.5}, {0.5, 2.0}}, torch::kDouble);
  torch::Tensor precision = torch::inverse(cov);
  torch::Tensor operator()(const torch::Tensor& z) const {
    auto d = z - mean;
    return 0.5 * (d.matmul(precision) * d).sum(-1);
  }
};

TEST_F(PriorTest, MalaRecoversAGaussianTarget) {
  GaussianTarget target;
  auto gen = make_generator(21);
  auto z0 = torch::randn({4000, 2}, gen, torch::kDouble);
  auto result = langevin(target, z0, LangevinOptions().steps(300).step_size(0.6).metropolis(true).trace(true), gen);
  auto mean = result.z.mean(0);
  auto centred = result.z - mean;
  auto cov = centred.t().matmul(centred) / (result.z.size(0) - 1);
  // Tolerance: about 4 standard errors of 4000 samples (sd <= 1.5 -> se ~0.024).
  EXPECT_TRUE(torch::allclose(mean, target.mean, 0, 0.1)) << mean;
  EXPECT_TRUE(torch::allclose(cov, target.cov, 0, 0.15)) << cov;
  EXPECT_GT(result.acceptance_rate, 0.3);
  EXPECT_LT(result.acceptance_rate, 1.0);
  EXPECT_EQ(result.trace.energy.size(), 300u);
}

TEST_F(PriorTest, NoiselessLangevinDescendsToTheMinimum) {
  GaussianTarget target;
  auto gen = make_generator(2);
  auto z0 = torch::randn({10, 2}, gen, torch::kDouble) * 3;
  auto result = langevin(target, z0, LangevinOptions().steps(500).step_size(0.5).noise(0.0).trace(true), gen);
  EXPECT_TRUE(torch::allclose(result.z, target.mean.expand({10, 2}), 0, 1e-4)) << result.z;
  EXPECT_LT(result.trace.energy.back(), result.trace.energy.front());
}

TEST_F(PriorTest, LangevinRunsUnderANoGradGuard) {
  // The sample command and evaluation run without gradients; Langevin still needs them.
  torch::NoGradGuard no_grad;
  GaussianTarget target;
  auto gen = make_generator(2);
  auto result = langevin(target, torch::zeros({4, 2}, torch::kDouble), LangevinOptions().steps(3).noise(0), gen);
  EXPECT_FALSE(torch::equal(result.z, torch::zeros({4, 2}, torch::kDouble)));
}

TEST_F(PriorTest, LangevinOptionsAreValidated) {
  EXPECT_THROW(LangevinOptions().step_size(0).validate(), std::invalid_argument);
  EXPECT_THROW(LangevinOptions().noise(0).metropolis(true).validate(), std::invalid_argument);
  EXPECT_THROW(LangevinOptions().steps(-1).validate(), std::invalid_argument);
}

TEST_F(PriorTest, EnergyPriorSamplesFollowTheLinearTilt) {
  // p(z) ∝ N(0, I) exp(-c^T z) = N(-c, I).
  auto prior = linear_energy_prior({1.0f, -0.5f});
  prior->sampling_options() = LangevinOptions().steps(200).step_size(0.5).metropolis(true);
  auto gen = make_generator(4);
  auto z = prior->sample(4000, gen);
  EXPECT_TRUE(torch::allclose(z.mean(0), torch::tensor({-1.0f, 0.5f}), 0, 0.08)) << z.mean(0);
  EXPECT_NEAR(z.var(0).mean().item<double>(), 1.0, 0.1);
}

TEST_F(PriorTest, HandDerivedPotentialGradientMatchesAutograd) {
  // Every case: LeakyReLU slopes (0 included), hidden layers or none, an unbounded and a
  // bounded energy (bound 1.5 with z large enough that tanh saturates for some chains).
  for (std::vector<int64_t> hidden : {std::vector<int64_t>{7, 5}, std::vector<int64_t>{}})
    for (double slope : {0.2, 0.0})
      for (double bound : {0.0, 1.5}) {
        EnergyPrior prior(3, hidden, slope, bound);
        prior.to(torch::kDouble);
        auto gen = make_generator(8);
        auto z = 2.0 * torch::randn({9, 3}, gen, torch::kDouble);
        for (double beta : {1.0, 0.37}) {
          const auto where = ::testing::Message() << "hidden " << hidden.size() << " slope " << slope << " bound "
                                                  << bound << " beta " << beta;
          auto zz = z.clone().requires_grad_(true);
          auto u = beta * prior.energy(zz) + 0.5 * (zz * zz).sum(-1);
          auto grad = torch::autograd::grad({u.sum()}, {zz})[0];
          MlpPotentialGradient hand(prior.f, beta, prior.bound());
          auto out = hand(z, /*need_value=*/true);
          EXPECT_TRUE(torch::allclose(out.u, u.detach(), 1e-12, 1e-12)) << where;
          EXPECT_TRUE(torch::allclose(out.grad, grad, 1e-12, 1e-12)) << where;
          EXPECT_FALSE(hand(z, /*need_value=*/false).u.defined()) << where;
          EXPECT_TRUE(torch::allclose(hand(z, /*need_value=*/false).grad, grad, 1e-12, 1e-12)) << where;
        }
      }
}

TEST_F(PriorTest, BoundedEnergyStaysWithinItsBound) {
  // f = B tanh(g / B): |f| <= B however far z goes (g, the same network initialised from
  // the same seed, grows linearly there).
  torch::manual_seed(3);
  EnergyPrior bounded(4, {16, 16}, 0.2, 2.0);
  torch::manual_seed(3);
  EnergyPrior free(4, {16, 16}, 0.2);
  auto gen = make_generator(5);
  auto z = 1000.0 * torch::randn({256, 4}, gen);
  auto g = free.energy(z);
  auto f = bounded.energy(z);
  EXPECT_GT(g.abs().max().item<double>(), 20.0);
  EXPECT_LE(f.abs().max().item<double>(), 2.0);
  EXPECT_TRUE(torch::allclose(f, 2.0 * torch::tanh(g / 2.0), 1e-5, 1e-5));
  EXPECT_THROW_WITH(EnergyPrior(4, {16}, 0.2, -1.0), "energy bound");
}

TEST_F(PriorTest, HandDerivedGradientRejectsOtherNetworks) {
  torch::nn::Sequential f(torch::nn::Linear(2, 4), torch::nn::Tanh(), torch::nn::Linear(4, 1));
  EXPECT_THROW_WITH(MlpPotentialGradient(f, 1.0), "Linear and LeakyReLU");
}

// The chains must not depend on how they are computed: by autograd or by the hand-derived
// gradient, on one thread or split into groups (the noise is drawn on the calling thread).
TEST_F(PriorTest, LangevinChainsDoNotDependOnThreadsOrGradient) {
  EnergyPrior prior(4, {16, 16}, 0.2);
  prior.to(torch::kDouble);
  auto z0 = torch::randn({300, 4}, torch::kDouble);
  auto potential = [&prior](const torch::Tensor& z) { return prior.potential(z); };
  for (bool mala : {true, false}) {
    auto options = LangevinOptions().steps(40).step_size(0.3).metropolis(mala).trace(mala);
    auto gen_a = make_generator(3), gen_b = make_generator(3), gen_c = make_generator(3);
    auto by_autograd = langevin(potential, z0, options, gen_a);
    auto one_thread = prior.run_langevin(z0, LangevinOptions(options).threads(1), gen_b);
    auto three_threads = prior.run_langevin(z0, LangevinOptions(options).threads(3), gen_c);
    EXPECT_TRUE(torch::allclose(by_autograd.z, one_thread.z, 1e-9, 1e-9)) << "MALA " << mala;
    EXPECT_TRUE(torch::allclose(one_thread.z, three_threads.z, 1e-9, 1e-9)) << "MALA " << mala;
    EXPECT_FALSE(torch::allclose(z0, three_threads.z, 1e-3, 1e-3));
    EXPECT_DOUBLE_EQ(one_thread.acceptance_rate, three_threads.acceptance_rate);
    EXPECT_DOUBLE_EQ(by_autograd.acceptance_rate, one_thread.acceptance_rate);
    if (mala) {
      EXPECT_GT(one_thread.acceptance_rate, 0.2);
      EXPECT_LT(one_thread.acceptance_rate, 1.0);
      ASSERT_EQ(three_threads.trace.energy.size(), 40u);
      for (size_t i = 0; i < 40; ++i) {
        EXPECT_NEAR(one_thread.trace.energy[i], three_threads.trace.energy[i], 1e-9);
        EXPECT_NEAR(by_autograd.trace.grad_norm[i], three_threads.trace.grad_norm[i], 1e-9);
        EXPECT_DOUBLE_EQ(one_thread.trace.acceptance[i], three_threads.trace.acceptance[i]);
      }
    }
  }
}

TEST_F(PriorTest, ParallelRunRunsEveryIndexAndRethrows) {
  std::vector<int> ran(3, 0);
  parallel_run(3, [&](int i) { ran[i] = 1; });
  EXPECT_EQ(ran, std::vector<int>({1, 1, 1}));
  EXPECT_THROW_WITH(parallel_run(3,
                                 [](int i) {
                                   if (i == 2) throw std::runtime_error("worker 2 failed");
                                 }),
                    "worker 2 failed");
}

}  // namespace vae_ebm::test
