// The samplers of energy priors (estimators/samplers.h) against closed forms: a linear energy
// f(z) = -a.z makes p(z) = N(z; a, I), and f = 0 makes p the base N(0, I).
#include <cmath>

#include "data/seed.h"
#include "estimators/samplers.h"
#include "tests/support.h"

namespace vae_ebm::test {

namespace {

// p = N(a, I) in D = 2: f(z) = -a.z, a linear layer without bias.
std::shared_ptr<EnergyPrior> tilted(double a0, double a1) {
  auto prior = std::make_shared<EnergyPrior>(2, std::vector<int64_t>{}, 0.2);
  torch::NoGradGuard no_grad;
  prior->f->parameters()[0].copy_(torch::tensor({{-a0, -a1}}));
  return prior;
}

// A flow that is not the identity: its conditioners' last layers drawn at random too, so that
// its draws are far from N(0, I).
Flow distorted_flow(int64_t dim, uint64_t seed, double scale = 0.3) {
  Flow flow(dim, FlowOptions().layers(4).hidden(16));
  auto gen = make_generator(seed);
  flow->reset_parameters(gen);
  torch::NoGradGuard no_grad;
  for (auto& p : flow->parameters()) p.add_(scale * torch::randn(p.sizes(), gen));
  return flow;
}

FlowSource source(Flow flow) {
  return [flow] { return flow; };
}

// Mean and variance of each coordinate, and the standard error of the means.
struct Moments {
  torch::Tensor mean, var, se;
};
Moments moments(const torch::Tensor& z) {
  auto zd = z.to(torch::kDouble);
  return {zd.mean(0), zd.var(0), (zd.var(0) / static_cast<double>(z.size(0))).sqrt()};
}

}  // namespace

class SamplersTest : public SeedingFixture {};

TEST_F(SamplersTest, FlowSirReproducesTheMeanOfALinearTilt) {
  auto prior = tilted(0.6, -0.4);
  Flow identity(2, FlowOptions().layers(2).hidden(8));  // N(0, I): the resampling alone must move the mean to a
  for (double base_fraction : {0.0, 0.2}) {
    auto gen = make_generator(11);
    auto draws = flow_sir(identity, [&](const torch::Tensor& z) { return prior->energy(z); }, 2000, 200,
                          base_fraction, gen);
    auto m = moments(draws.z);
    EXPECT_LT(std::abs(m.mean[0].item<double>() - 0.6), 3 * m.se[0].item<double>()) << m.mean;
    EXPECT_LT(std::abs(m.mean[1].item<double>() + 0.4), 3 * m.se[1].item<double>()) << m.mean;
    // Each draw's candidates are N(0, I) (the mixture is N(0, I) too): ESS/M -> exp(-|a|^2).
    EXPECT_NEAR(draws.resampling_ess, std::exp(-(0.36 + 0.16)), 0.02);
  }
}

TEST_F(SamplersTest, MalaAndHmcReproduceTheTargetWhereUnadjustedLangevinDoesNot) {
  auto prior = tilted(0.5, 1.0);
  auto gen = make_generator(3);
  // s = 1.2: unadjusted Langevin's chain on N(a, I) has variance 1 / (1 - s^2 / 4) = 1.56.
  auto options = SamplerOptions().steps(300).step_size(1.2);
  auto ula = draw_samples("langevin", *prior, nullptr, 4000, options, gen);
  EXPECT_GT(moments(ula.z).var.min().item<double>(), 1.3);
  for (const std::string name : {"mala", "hmc"}) {
    auto o = name == "hmc" ? SamplerOptions().trajectories(60).step_size(0.3).leapfrog(5) : options;
    auto draws = draw_samples(name, *prior, nullptr, 4000, o, gen);
    auto m = moments(draws.z);
    EXPECT_LT(std::abs(m.mean[0].item<double>() - 0.5), 4 * m.se[0].item<double>()) << name << m.mean;
    EXPECT_LT(std::abs(m.mean[1].item<double>() - 1.0), 4 * m.se[1].item<double>()) << name << m.mean;
    // Var of a sample variance of n normals: 2 / (n - 1); 4 standard errors is 0.09.
    EXPECT_NEAR(m.var[0].item<double>(), 1.0, 0.09) << name;
    EXPECT_NEAR(m.var[1].item<double>(), 1.0, 0.09) << name;
    auto cov = (draws.z - draws.z.mean(0)).t().mm(draws.z - draws.z.mean(0)) / 3999.0;
    EXPECT_NEAR(cov[0][1].item<double>(), 0.0, 0.07) << name;
    EXPECT_GT(draws.acceptance, 0.2) << name;
    EXPECT_LT(draws.acceptance, 1.0) << name;
  }
}

// flow-mala corrects a flow that is far off in the target's own coordinates; transport corrects
// one that is somewhat off in the flow's (a pull-back through a badly wrong flow is itself far
// from N(0, I), and MALA there mixes slowly: what the flow does not know, transport cannot add).
TEST_F(SamplersTest, TransportAndFlowMalaCorrectAFlowThatIsWrong) {
  auto prior = tilted(0.0, 0.0);  // p = N(0, I)
  for (const auto& [name, scale] : {std::pair<std::string, double>{"flow-mala", 0.3}, {"transport", 0.1}}) {
    auto flow = distorted_flow(2, 5, scale);
    auto gen = make_generator(8);
    auto raw = draw_samples("flow", *prior, source(flow), 4000, SamplerOptions(), gen);
    const auto raw_m = moments(raw.z);
    const double raw_error = (raw_m.var - 1).abs().max().item<double>() + raw_m.mean.abs().max().item<double>();
    ASSERT_GT(raw_error, 0.2) << name << ": the flow must be wrong for this test to say anything: " << raw_m.mean
                              << raw_m.var;
    auto draws = draw_samples(name, *prior, source(flow), 4000, SamplerOptions().flow_steps(200).flow_step_size(0.5),
                              gen);
    auto m = moments(draws.z);
    EXPECT_LT(m.mean.abs().max().item<double>(), 4 * m.se.max().item<double>()) << name << m.mean << draws.acceptance;
    EXPECT_LT((m.var - 1).abs().max().item<double>(), 0.1) << name << m.var << draws.acceptance;
  }
}

TEST_F(SamplersTest, FlowLangevinStartedAtExactSamplesStaysAtTheTarget) {
  auto prior = tilted(0.0, 0.0);
  Flow identity(2);  // its draws are exact samples of p = N(0, I)
  auto gen = make_generator(2);
  auto draws = draw_samples("flow-langevin", *prior, source(identity), 6000,
                            SamplerOptions().flow_steps(50).flow_step_size(0.1), gen);
  auto m = moments(draws.z);
  EXPECT_LT(m.mean.abs().max().item<double>(), 3.5 * m.se.max().item<double>()) << m.mean;
  EXPECT_LT((m.var - 1).abs().max().item<double>(), 0.08) << m.var;
}

// The registry's contract: every sampler gives [n, D] on the prior's device, the same draws for
// the same seed and others for another, and a finite diagnostic where it has one.
TEST_F(SamplersTest, EverySamplerKeepsTheContract) {
  auto prior = std::make_shared<EnergyPrior>(3, std::vector<int64_t>{8}, 0.2);
  auto flow = distorted_flow(3, 1);
  const auto small = SamplerOptions().steps(4).flow_steps(4).trajectories(3).leapfrog(2).candidates(3);
  ASSERT_GE(sampler_names().size(), 8u);
  for (const auto& name : sampler_names()) {
    auto draw = [&](uint64_t seed) {
      auto gen = make_generator(seed);
      return draw_samples(name, *prior, source(flow), 7, small, gen);
    };
    auto a = draw(1), b = draw(1), c = draw(2);
    EXPECT_EQ(a.z.sizes(), (std::vector<int64_t>{7, 3})) << name;
    EXPECT_EQ(a.z.device(), prior->b.device()) << name;
    EXPECT_FALSE(a.z.requires_grad()) << name;
    EXPECT_TRUE(torch::equal(a.z, b.z)) << name << ": not reproducible for a seed";
    EXPECT_FALSE(torch::equal(a.z, c.z)) << name << ": the same draws for another seed";
    EXPECT_TRUE(torch::isfinite(a.z).all().item<bool>()) << name;
    if (!std::isnan(a.acceptance)) EXPECT_TRUE(a.acceptance >= 0 && a.acceptance <= 1) << name;
    if (!std::isnan(a.resampling_ess)) EXPECT_TRUE(a.resampling_ess > 0 && a.resampling_ess <= 1) << name;
    EXPECT_FALSE(describe_sampler(name, small).empty());
  }
  EXPECT_TRUE(sampler_registry().contains(default_sampler()));
  EXPECT_FALSE(sampler_registry().at(default_sampler()).needs_flow) << "report draws the default with no flow";
  auto gen = make_generator(0);
  EXPECT_THROW_WITH(draw_samples("nuts", *prior, source(flow), 2, small, gen), "unknown sampler 'nuts'");
  EXPECT_THROW_WITH(SamplerOptions().candidates(0).validate(), "sir-candidates: must be >= 1");
}

}  // namespace vae_ebm::test
