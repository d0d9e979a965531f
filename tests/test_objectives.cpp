// The contract every registered prior objective must keep (prior/objective.h), run over
// the whole registry.
#include <cmath>

#include "data/seed.h"
#include "estimators/log_z.h"
#include "prior/energy.h"
#include "prior/flow.h"
#include "prior/langevin.h"
#include "prior/mixture.h"
#include "prior/objective.h"
#include "tests/support.h"

namespace vae_ebm::test {

namespace {

// Options that keep the MCMC objectives quick; each objective reads only its own.
// A contract case: an objective's name, or NAME/VARIANT for an objective with a flow
// (snelbo/flow: the flow proposal; nce/flow: the flow noise; exact/flow: the flow prior).
std::string objective_of(const std::string& name) { return name.substr(0, name.find('/')); }
bool flow_variant(const std::string& name) { return name.find("/flow") != std::string::npos; }

std::vector<std::string> contract_cases() {
  auto cases = objective_names();
  for (const auto* variant : {"snelbo/flow", "nce/flow", "exact/flow", "long-run-mcmc/hmc"}) cases.push_back(variant);
  return cases;
}

OptionValues quick_options(const std::string& name) {
  if (name == "snelbo/flow") return OptionValues().set("base-samples", 256).set("proposal", "flow").set("flow-fit", "reverse-kl");
  if (name == "nce/flow") return OptionValues().set("nce-noise", "flow");
  auto o = OptionValues().set("base-samples", 256).set("mcmc-steps", 30).set("negatives", 128);
  if (name == "long-run-mcmc" || name == "long-run-mcmc/hmc")
    o.set("persistent", true).set("buffer-size", 512).set("mcmc-step-size", 0.2);
  if (name == "long-run-mcmc/hmc") o.set("mcmc-sampler", "hmc").set("mcmc-leapfrog", 5);
  // The reference step 0.4 made short-run learning diverge on this toy target (clusters
  // of width 0.3; the chains ran away to squared distance ~27 from the data): 0.2 here.
  if (name == "short-run-mcmc") o.set("mcmc-step-size", 0.2);
  return o;
}

std::shared_ptr<Prior> prior_for(const std::string& name, int64_t dim) {
  torch::manual_seed(1);
  if (name == "exact") return std::make_shared<MixturePrior>(dim, 2, 3);
  if (name == "exact/flow") {
    // Away from the identity, where the conditioners' zero last layers block every other
    // layer's gradient.
    auto flow = std::make_shared<FlowPrior>(dim, FlowOptions().layers(4).hidden(32));
    torch::NoGradGuard no_grad;
    for (auto& p : flow->parameters()) p.add_(0.05 * torch::randn(p.sizes()));
    return flow;
  }
  return std::make_shared<EnergyPrior>(dim, std::vector<int64_t>{32, 32}, 0.2);
}

// Two clusters in 2-D: the toy target.
torch::Tensor toy_data(int64_t n, at::Generator& gen) {
  auto sign = torch::randint(2, {n, 1}, gen).to(torch::kFloat) * 2 - 1;
  return sign * torch::tensor({1.5f, 1.0f}) + 0.3 * torch::randn({n, 2}, gen);
}

// Mean log-density of the data under the prior; log Z by importance sampling for the EBM.
double log_likelihood(Prior& prior, const torch::Tensor& data) {
  torch::NoGradGuard no_grad;
  if (auto* ebm = dynamic_cast<EnergyPrior*>(&prior)) {
    auto gen = make_generator(123);
    auto log_z = log_z_importance(*ebm, 200000, gen);
    return (ebm->log_prob_unnormalised(data).mean() - log_z.value).item<double>();
  }
  return prior.log_prob_bound(data).mean().item<double>();
}

// Mean squared distance from short-run Langevin samples of the prior to the nearest
// cluster centre of the toy target.
double short_run_sample_error(EnergyPrior& prior, const LangevinOptions& options) {
  auto gen = make_generator(77);
  auto z = langevin([&prior](const torch::Tensor& x) { return prior.potential(x); }, torch::randn({2000, 2}, gen),
                    options, gen).z;
  auto centre = torch::tensor({1.5f, 1.0f});
  auto d1 = (z - centre).pow(2).sum(1), d2 = (z + centre).pow(2).sum(1);
  return torch::minimum(d1, d2).mean().item<double>();
}

}  // namespace

class ObjectiveContract : public SeedingFixture, public ::testing::WithParamInterface<std::string> {};

TEST_P(ObjectiveContract, LossIsFiniteAndGradientsReachTheRightParameters) {
  const auto name = GetParam();
  auto objective = make_objective(objective_of(name), quick_options(name));
  auto prior = prior_for(name, 3);
  ASSERT_NO_THROW(objective->check(*prior));
  auto mu = torch::randn({8, 3}).requires_grad_(true);          // stands in for the encoder
  auto logvar = (0.1 * torch::randn({8, 3})).requires_grad_(true);
  DiagonalGaussian q{mu, logvar};
  auto gen = make_generator(5);
  auto z = q.rsample(2, gen);
  auto term = objective->prior_term(*prior, q, z, gen);
  ASSERT_EQ(term.log_prior.sizes(), (std::vector<int64_t>{8}));
  ASSERT_TRUE(torch::isfinite(term.log_prior).all().item<bool>());
  for (const auto& [key, value] : term.diagnostics) EXPECT_TRUE(std::isfinite(value)) << key;
  term.log_prior.mean().backward();
  ASSERT_TRUE(mu.grad().defined());
  EXPECT_GT(mu.grad().abs().sum().item<double>(), 0) << "the encoder must receive gradient";
  for (const auto& p : prior->named_parameters()) {
    const bool is_b = p.key() == "b";
    const bool has_grad = p.value().grad().defined() && p.value().grad().abs().sum().item<double>() > 0;
    if (is_b) {
      EXPECT_EQ(has_grad, objective->trains_b_in_its_bound() || objective_of(name) == "nce" || objective_of(name) == "fce") << name << ": " << p.key();
    } else if (p.key().find("bias") == std::string::npos) {
      EXPECT_TRUE(has_grad) << name << ": " << p.key() << " gets no gradient";
    }
  }
}

TEST_P(ObjectiveContract, SaveLoadRoundTrips) {
  const auto name = GetParam();
  auto prior = prior_for(name, 2);
  auto a = make_objective(objective_of(name), quick_options(name));
  DiagonalGaussian q{torch::randn({8, 2}), torch::zeros({8, 2})};
  auto gen = make_generator(9);
  a->prior_term(*prior, q, q.rsample(1, gen), gen);  // creates any state (persistent chains)
  torch::serialize::OutputArchive out;
  a->save(out);
  std::ostringstream bytes;
  out.save_to(bytes);
  auto b = make_objective(objective_of(name), quick_options(name));
  torch::serialize::InputArchive in;
  std::istringstream stream(bytes.str());
  in.load_from(stream);
  b->load(in);
  auto z = q.rsample(1, gen);
  auto state = generator_state(gen);
  auto ta = a->prior_term(*prior, q, z, gen).log_prior;
  set_generator_state(gen, state);
  auto tb = b->prior_term(*prior, q, z, gen).log_prior;
  EXPECT_TRUE(torch::allclose(ta, tb)) << name << ta << tb;
}

TEST_P(ObjectiveContract, AFewStepsFitATwoDimensionalTarget) {
  const auto name = GetParam();
  auto prior = prior_for(name, 2);
  auto objective = make_objective(objective_of(name), quick_options(name));
  auto gen = make_generator(31);
  auto held_out = toy_data(2000, gen);
  const double before = log_likelihood(*prior, held_out);
  // Short non-persistent chains make learning moment matching, not maximum likelihood
  // (Nijkamp et al. 2019): the energy need not be a good density, but its short-run
  // sampler should move towards the data. That is what is checked for short-run-mcmc.
  const auto short_run = LangevinOptions().steps(30).step_size(0.2);
  const bool moment_matching = name == "short-run-mcmc";
  const double sample_error_before =
      moment_matching ? short_run_sample_error(static_cast<EnergyPrior&>(*prior), short_run) : 0;
  // MCMC learning is unstable at large learning rates (the chains chase the energy's
  // steepest regions), so those objectives take smaller, more numerous steps.
  const bool mcmc = name.find("mcmc") != std::string::npos;
  torch::optim::Adam optimizer(prior->parameters(), torch::optim::AdamOptions(mcmc ? 2e-3 : 1e-2));
  for (int step = 0; step < (mcmc ? 300 : 150); ++step) {
    auto x = toy_data(128, gen);
    DiagonalGaussian q{x, torch::full({128, 2}, -9.0f)};  // nearly the data points themselves
    auto term = objective->prior_term(*prior, q, q.rsample(1, gen), gen);
    optimizer.zero_grad();
    (-term.log_prior.mean()).backward();
    optimizer.step();
  }
  if (moment_matching) {
    const double sample_error = short_run_sample_error(static_cast<EnergyPrior&>(*prior), short_run);
    EXPECT_LT(sample_error, 0.5 * sample_error_before)
        << name << ": short-run samples' squared distance to the data " << sample_error_before << " -> " << sample_error;
    return;
  }
  const double after = log_likelihood(*prior, held_out);
  EXPECT_GT(after, before + 0.3) << name << ": held-out log-likelihood " << before << " -> " << after;
}

INSTANTIATE_TEST_SUITE_P(AllRegistered, ObjectiveContract, ::testing::ValuesIn(contract_cases()),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (auto& c : n)
                             if (c == '-' || c == '/') c = '_';
                           return n;
                         });

// Denoising score matching of a linear score -P y on samples of N(0, diag(4, 1/4)) recovers
// the precision of the data blurred by the noise: P = (Sigma + sigma^2 I)^-1.
class ScoreMatchingTest : public SeedingFixture {};

TEST_F(ScoreMatchingTest, DenoisingScoreMatchingRecoversAGaussiansPrecision) {
  auto gen = make_generator(12);
  const double sigma = 0.3;
  auto scale = torch::tensor({2.0f, 0.5f});
  auto log_p = torch::zeros({2}, torch::requires_grad());  // P = diag(exp(log_p))
  torch::optim::Adam optimizer({log_p}, torch::optim::AdamOptions(0.05));
  for (int step = 0; step < 600; ++step) {
    auto x = torch::randn({4096, 2}, gen) * scale;
    auto loss = denoising_score_matching_loss([&](const torch::Tensor& y) { return -y * torch::exp(log_p); }, x, sigma,
                                              gen);
    optimizer.zero_grad();
    loss.backward();
    optimizer.step();
  }
  auto precision = torch::exp(log_p).detach();
  EXPECT_NEAR(precision[0].item<double>(), 1.0 / (4.0 + sigma * sigma), 0.01) << precision;
  EXPECT_NEAR(precision[1].item<double>(), 1.0 / (0.25 + sigma * sigma), 0.05) << precision;
}

TEST(ObjectiveOptionsTest, BadOptionsAreRefusedWithTheirName) {
  EXPECT_THROW(make_objective("short-run-mcmc", OptionValues().set("persistent", true)), std::invalid_argument);
  EXPECT_THROW(make_objective("long-run-mcmc", OptionValues().set("persistent", true).set("buffer-size", 0)), std::invalid_argument);
  EXPECT_THROW(make_objective("long-run-mcmc", OptionValues().set("mcmc-noise", 0.0).set("mcmc-metropolis", true)), std::invalid_argument);
  EXPECT_THROW(make_objective("nce", OptionValues().set("nce-noise", "uniform")), std::invalid_argument);
  EXPECT_THROW(make_objective("nce", OptionValues().set("nce-ratio", 0.0)), std::invalid_argument);
  EXPECT_THROW(make_objective("snelbo", OptionValues().set("proposal-flow-steps", 0)), std::invalid_argument);
  EXPECT_THROW(make_objective("snelbo", OptionValues().set("energy-l2", -1.0)), std::invalid_argument);
  EXPECT_THROW_WITH(make_objective("long-run-mcmc", OptionValues().set("mcmc-sampler", "nuts")),
                    "must be one of langevin, mala, hmc, got 'nuts'");
  EXPECT_THROW_WITH(make_objective("long-run-mcmc", OptionValues().set("mcmc-sampler", "hmc").set("mcmc-metropolis", true)),
                    "do not apply to it");
  EXPECT_THROW_WITH(make_objective("short-run-mcmc", OptionValues().set("mcmc-sampler", "hmc").set("mcmc-leapfrog", 61)),
                    "longer than the 60 steps");
}

// The MCMC objectives' negative phase by each sampler, on the linear tilt f(z) = w.z of N(0, I),
// whose normalised density is N(-w, I): the negatives' mean energy is E_p[f] = -|w|^2, within
// three standard errors (|w| / sqrt(n)), and HMC's and MALA's acceptance is reported.
TEST(ObjectiveOptionsTest, EachMcmcSamplerDrawsTheNegativesOfALinearTilt) {
  auto prior = std::make_shared<EnergyPrior>(2, std::vector<int64_t>{}, 0.2);
  {
    torch::NoGradGuard no_grad;
    for (auto& p : prior->f->parameters()) p.copy_(torch::tensor({{1.0f, -0.5f}}));
  }
  const double expected = -1.25, n = 4000, se = std::sqrt(1.25 / n);
  // Langevin's reference step 0.1 moves a chain's mean by 1 - 0.995^200 = 63% of the way in 200
  // steps: 0.5 here. HMC's reference, 20 trajectories of 10 leapfrog steps of 0.1, gets there.
  for (const auto* sampler : {"langevin", "mala", "hmc"}) {
    const double step = std::string(sampler) == "hmc" ? 0.0 : 0.5;
    auto objective = make_objective(
        "long-run-mcmc",
        OptionValues().set("mcmc-sampler", sampler).set("negatives", 4000).set("mcmc-step-size", step));
    auto gen = make_generator(5);
    DiagonalGaussian q{torch::zeros({8, 2}), torch::zeros({8, 2})};
    auto term = objective->prior_term(*prior, q, q.rsample(1, gen), gen);
    EXPECT_NEAR(term.diagnostics.at("energy_negative"), expected, 3 * se) << sampler;
    if (std::string(sampler) != "langevin") EXPECT_GT(term.diagnostics.at("acceptance"), 0.8) << sampler;
  }
}

// snelbo's --energy-l2 alpha subtracts alpha (mean f(z_post)^2 + mean f(z_proposal)^2): the same
// shift for every image, linear in alpha, and nothing else changes (the same draws).
TEST(ObjectiveOptionsTest, SnelboEnergyPenaltyIsAConstantShiftLinearInAlpha) {
  auto prior = prior_for("snelbo", 3);
  auto mu = torch::randn({8, 3});
  DiagonalGaussian q{mu, 0.1 * torch::randn({8, 3})};
  auto term = [&](double alpha) {
    auto objective = make_objective("snelbo", OptionValues().set("base-samples", 64).set("energy-l2", alpha));
    auto gen = make_generator(5);
    auto z = q.rsample(2, gen);
    return objective->prior_term(*prior, q, z, gen).log_prior.detach();
  };
  auto none = term(0), one = term(1), two = term(2);
  auto shift = none - one;
  EXPECT_GT(shift.min().item<double>(), 0);
  EXPECT_NEAR((shift.max() - shift.min()).item<double>(), 0, 1e-4);
  EXPECT_TRUE(torch::allclose(none - two, 2 * shift, 1e-4, 1e-5));
}

// snelbo's annealed proposal (--proposal-anneal T): AIS from the flow mixture to the prior keeps
// Zhat unbiased. On the linear tilt f(z) = w.z, Z = exp(|w|^2 / 2) exactly; the mean of Zhat over
// 8 steps (S = 1,000 each) is Z within three standard errors, and the path's MALA steps (8
// temperatures) raise the ESS 1.5-fold over plain importance sampling's from the same
// (untrained, identity) flow.
TEST(ObjectiveOptionsTest, SnelboAnnealedProposalKeepsZhatUnbiased) {
  auto prior = std::make_shared<EnergyPrior>(2, std::vector<int64_t>{}, 0.2);
  {
    torch::NoGradGuard no_grad;
    for (auto& p : prior->f->parameters()) p.copy_(torch::tensor({{1.5f, -1.0f}}));
  }
  const double z_exact = std::exp(0.5 * (1.5 * 1.5 + 1.0));
  constexpr int kSteps = 8;
  auto run = [&](int64_t temperatures) {
    auto objective = make_objective("snelbo", OptionValues()
                                                  .set("base-samples", 1000)
                                                  .set("proposal", "flow")
                                                  .set("flow-fit", "ml")
                                                  .set("flow-lr", 1e-12)
                                                  .set("proposal-anneal", temperatures)
                                                  .set("proposal-anneal-step", 0.8));
    auto gen = make_generator(9);
    DiagonalGaussian q{torch::zeros({8, 2}), torch::zeros({8, 2})};
    std::vector<double> ratio, ess;
    double acceptance = 0;
    for (int i = 0; i < kSteps; ++i) {
      auto term = objective->prior_term(*prior, q, q.rsample(1, gen), gen);
      ratio.push_back(std::exp(term.diagnostics.at("log_z_hat")) / z_exact);
      ess.push_back(term.diagnostics.at("ess_fraction"));
      if (temperatures > 1) acceptance += term.diagnostics.at("anneal_acceptance") / kSteps;
    }
    auto r = torch::tensor(ratio, torch::kDouble), e = torch::tensor(ess, torch::kDouble);
    return std::make_tuple(r.mean().item<double>(), (r.std() / std::sqrt(double{kSteps})).item<double>(), e.mean().item<double>(),
                           acceptance);
  };
  const auto plain = run(1);
  const auto [mean, se, ess, acceptance] = run(8);
  const double plain_mean = std::get<0>(plain), plain_se = std::get<1>(plain), plain_ess = std::get<2>(plain);
  EXPECT_NEAR(plain_mean, 1.0, 3 * plain_se);
  EXPECT_NEAR(mean, 1.0, 3 * se);
  EXPECT_LT(se, 0.1);
  EXPECT_GT(ess, 1.5 * plain_ess) << "plain IS " << plain_ess;
  EXPECT_GT(acceptance, 0.5);
  std::printf("Zhat / Z: plain IS %.3f +- %.3f (ESS %.3f); annealed %.3f +- %.3f (ESS %.3f, acceptance %.2f)\n", plain_mean,
              plain_se, plain_ess, mean, se, ess, acceptance);
  EXPECT_THROW_WITH(make_objective("snelbo", OptionValues().set("proposal-anneal", 4)), "needs the flow proposal");
  EXPECT_THROW_WITH(make_objective("snelbo", OptionValues().set("proposal", "flow").set("proposal-anneal", 0)),
                    "must be >= 1");
}

}  // namespace vae_ebm::test
