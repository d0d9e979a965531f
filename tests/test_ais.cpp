// AIS, forward and reverse (estimators/ais.h, MATH.md section 5), against the closed form of a
// quadratic energy, and against importance sampling on an energy prior.

#include <cmath>
#include <vector>

#include "data/seed.h"
#include "estimators/ais.h"
#include "estimators/log_z.h"
#include "tests/support.h"

namespace vae_ebm::test {

// ---------------------------------------------------------------------------------------
// AIS on f(z) = 1/2 z^T A z + c^T z: log Z = -1/2 log det(I + A) + 1/2 c^T (I + A)^{-1} c and
// the target is N(-(I + A)^{-1} c, (I + A)^{-1}).

struct Quadratic {
  torch::Tensor a, c, precision;  // precision = I + A
  double log_z = 0;
  int64_t dim() const { return c.size(0); }
  EnergyFn energy() const {
    auto aa = a, cc = c;
    return [aa, cc](const torch::Tensor& z) { return 0.5 * (z.matmul(aa) * z).sum(-1) + z.matmul(cc); };
  }
  torch::Tensor exact_samples(int64_t n, at::Generator& gen) const {
    auto cov = torch::linalg_inv(precision);
    auto mean = -cov.matmul(c);
    auto chol = torch::linalg_cholesky(cov);
    return mean + torch::randn({n, dim()}, gen, torch::kDouble).matmul(chol.t());
  }
};

// I + A = Q diag(eig) Q^T with a fixed rotation: anisotropic and correlated, and a target
// whose mean is far enough from 0 that the path has work to do.
Quadratic make_quadratic() {
  Quadratic q;
  auto gen = make_generator(5);
  auto rotation = std::get<0>(torch::linalg_qr(torch::randn({4, 4}, gen, torch::kDouble)));
  auto eig = torch::tensor({0.4, 0.8, 1.5, 3.0}, torch::kDouble);
  q.precision = rotation.matmul(torch::diag(eig)).matmul(rotation.t());
  q.precision = 0.5 * (q.precision + q.precision.t());
  q.a = q.precision - torch::eye(4, torch::kDouble);
  q.c = torch::tensor({0.5, -1.0, 0.3, 0.8}, torch::kDouble);
  q.log_z = (-0.5 * torch::logdet(q.precision) + 0.5 * q.c.dot(torch::linalg_solve(q.precision, q.c))).item<double>();
  return q;
}

class AisTest : public SeedingFixture {};

TEST_F(AisTest, SchedulesRunFromZeroToOneAndIncrease) {
  for (const char* name : {"linear", "sigmoid"}) {
    auto beta = ais_schedule(AisOptions().temperatures(50).schedule(name));
    ASSERT_EQ(beta.size(0), 51) << name;
    EXPECT_EQ(beta[0].item<double>(), 0.0) << name;
    EXPECT_EQ(beta[50].item<double>(), 1.0) << name;
    EXPECT_TRUE((beta.diff() > 0).all().item<bool>()) << name << beta;
  }
  auto linear = ais_schedule(AisOptions().temperatures(4).schedule("linear"));
  EXPECT_TRUE(torch::allclose(linear, torch::tensor({0.0, 0.25, 0.5, 0.75, 1.0}, torch::kDouble)));
  // The sigmoidal schedule is symmetric about the middle and denser at both ends.
  auto sigmoid = ais_schedule(AisOptions().temperatures(10).schedule("sigmoid"));
  EXPECT_TRUE(torch::allclose(sigmoid + sigmoid.flip(0), torch::ones({11}, torch::kDouble), 0, 1e-12));
  EXPECT_LT(sigmoid[1].item<double>(), 0.1);
  EXPECT_THROW(ais_schedule(AisOptions().schedule("cosine")), std::invalid_argument);
  EXPECT_THROW(ais_schedule(AisOptions().temperatures(0)), std::invalid_argument);
  EXPECT_THROW(ais_schedule(AisOptions().step_size(0)), std::invalid_argument);
}

// Two routes to one answer: importance sampling, forward AIS and reverse AIS all agree with
// the closed form within a few standard errors.
TEST_F(AisTest, ImportanceSamplingAndAisAgreeWithTheClosedForm) {
  auto q = make_quadratic();
  auto energy = q.energy();
  auto gen = make_generator(11);
  auto is = log_z_importance(energy, q.dim(), 200000, gen, torch::kDouble);
  auto options = AisOptions().temperatures(1000).chains(400).steps(1).step_size(0.5);
  auto forward = ais_log_z(energy, q.dim(), options, gen, torch::kDouble);
  auto reverse = reverse_ais_log_z(energy, q.exact_samples(400, gen), options, gen);
  std::cout << "closed form " << q.log_z << "  IS " << is.value << " +- " << is.std_error << " (ESS " << is.ess
            << ")  forward AIS " << forward.log_z.value << " +- " << forward.log_z.std_error << " (ESS "
            << forward.log_z.ess << ", acceptance " << forward.acceptance_rate << ")  reverse AIS "
            << reverse.log_z.value << " +- " << reverse.log_z.std_error << " (ESS " << reverse.log_z.ess
            << ", acceptance " << reverse.acceptance_rate << ")\n";
  EXPECT_NEAR(is.value, q.log_z, 4 * is.std_error);
  EXPECT_NEAR(forward.log_z.value, q.log_z, 4 * forward.log_z.std_error + 1e-3);
  EXPECT_NEAR(reverse.log_z.value, q.log_z, 4 * reverse.log_z.std_error + 1e-3);
  // A long path makes AIS far more efficient than plain importance sampling of the base.
  EXPECT_LT(forward.log_z.std_error, 0.02);
  EXPECT_LT(reverse.log_z.std_error, 0.02);
  EXPECT_GT(forward.log_z.ess, 0.8 * 400);
  EXPECT_GT(forward.acceptance_rate, 0.5);
  EXPECT_LT(forward.acceptance_rate, 1.0);
  EXPECT_EQ(forward.log_z.count, 400);
  EXPECT_EQ(forward.log_weights.scalar_type(), torch::kDouble);
  EXPECT_EQ(forward.samples.sizes(), (torch::IntArrayRef{400, 4}));
  // The forward chains end near the target: their mean is the target mean, within 4 standard
  // errors of a mean of 400 draws (sd from the target's covariance, the precision's inverse).
  auto target_mean = -torch::linalg_solve(q.precision, q.c);
  auto standard_error = torch::linalg_inv(q.precision).diagonal().sqrt() / std::sqrt(400.0);
  EXPECT_TRUE(((forward.samples.mean(0) - target_mean).abs() < 4 * standard_error).all().item<bool>())
      << forward.samples.mean(0) << target_mean << standard_error;
}

// Started far too small or far too large, the MALA step size moves to where about 60% of the
// proposals are accepted, the same place from either side; with target 0 it stays put.
TEST_F(AisTest, TheStepSizeAdaptsTowardsTheTargetAcceptance) {
  auto q = make_quadratic();
  auto energy = q.energy();
  auto gen = make_generator(12);
  auto options = AisOptions().temperatures(300).chains(200);
  auto small = ais_log_z(energy, q.dim(), AisOptions(options).step_size(0.01), gen, torch::kDouble);
  auto large = ais_log_z(energy, q.dim(), AisOptions(options).step_size(5.0), gen, torch::kDouble);
  EXPECT_GT(small.last_step_size, 0.3);
  EXPECT_LT(large.last_step_size, 3.0);
  EXPECT_NEAR(std::log(small.last_step_size / large.last_step_size), 0.0, std::log(1.5))
      << small.last_step_size << " " << large.last_step_size;
  auto fixed = ais_log_z(energy, q.dim(), AisOptions(options).step_size(0.01).target_acceptance(0), gen, torch::kDouble);
  EXPECT_EQ(fixed.last_step_size, 0.01);
  EXPECT_GT(fixed.acceptance_rate, 0.95);
  EXPECT_THROW(AisOptions().target_acceptance(1.0).validate(), std::invalid_argument);
}

// A short path: forward AIS falls below log Z and reverse AIS lands above it, on average
// over independent runs (E[log Zhat_fwd] <= log Z <= E[log Zhat_rev]), and the per-chain
// bounds E[log w] = log Z - KL and E[-log w_rev] = log Z + KL' sandwich it too.
TEST_F(AisTest, ForwardIsBelowAndReverseAboveOnAverage) {
  auto q = make_quadratic();
  auto energy = q.energy();
  auto options = AisOptions().temperatures(5).schedule("linear").chains(5).steps(1).step_size(0.5);
  std::vector<double> forward, reverse;
  std::vector<torch::Tensor> forward_w, reverse_w;
  const int64_t runs = 400;
  for (int64_t seed = 0; seed < runs; ++seed) {
    auto gen = make_generator(mix_seed(static_cast<uint64_t>(seed), 0xa15));
    auto f = ais_log_z(energy, q.dim(), options, gen, torch::kDouble);
    auto r = reverse_ais_log_z(energy, q.exact_samples(options.chains(), gen), options, gen);
    forward.push_back(f.log_z.value);
    reverse.push_back(r.log_z.value);
    forward_w.push_back(f.log_weights);
    reverse_w.push_back(-r.log_weights);
  }
  auto fwd = torch::tensor(forward, torch::kDouble), rev = torch::tensor(reverse, torch::kDouble);
  const double fwd_mean = fwd.mean().item<double>(), rev_mean = rev.mean().item<double>();
  const double fwd_se = fwd.std().item<double>() / std::sqrt(double(runs));
  const double rev_se = rev.std().item<double>() / std::sqrt(double(runs));
  auto chain_f = torch::cat(forward_w), chain_r = torch::cat(reverse_w);
  const double chain_f_mean = chain_f.mean().item<double>(), chain_r_mean = chain_r.mean().item<double>();
  const double chain_f_se = chain_f.std().item<double>() / std::sqrt(double(chain_f.numel()));
  const double chain_r_se = chain_r.std().item<double>() / std::sqrt(double(chain_r.numel()));
  std::cout << "closed form " << q.log_z << "  forward " << fwd_mean << " +- " << fwd_se << "  reverse " << rev_mean
            << " +- " << rev_se << "  per chain: forward " << chain_f_mean << " +- " << chain_f_se << ", reverse "
            << chain_r_mean << " +- " << chain_r_se << "\n";
  EXPECT_LT(fwd_mean + 3 * fwd_se, q.log_z);
  EXPECT_GT(rev_mean - 3 * rev_se, q.log_z);
  EXPECT_LT(chain_f_mean + 3 * chain_f_se, q.log_z);
  EXPECT_GT(chain_r_mean - 3 * chain_r_se, q.log_z);
}

TEST_F(AisTest, EnergyPriorOverloadsRunAndAgreeWithImportanceSampling) {
  EnergyPrior prior(2, {16}, 0.2);
  {
    torch::NoGradGuard no_grad;
    for (auto& p : prior.f->parameters()) p.mul_(0.5);
  }
  auto gen = make_generator(3);
  auto is = log_z_importance(prior, 100000, gen);
  auto forward = ais_log_z(prior, AisOptions().temperatures(100).chains(200).step_size(0.5), gen);
  EXPECT_NEAR(forward.log_z.value, is.value, 4 * std::hypot(forward.log_z.std_error, is.std_error) + 1e-3)
      << forward.log_z.estimator;
  EXPECT_EQ(forward.samples.scalar_type(), torch::kFloat);
  // The parameters of f get no gradient from the sampler.
  for (auto& p : prior.parameters()) EXPECT_FALSE(p.grad().defined());
  // Reverse AIS runs from [N, D] samples (approximate ones here: no bound is claimed).
  auto reverse = reverse_ais_log_z(prior, forward.samples, AisOptions().temperatures(20).step_size(0.5), gen);
  EXPECT_EQ(reverse.log_z.count, 200);
  EXPECT_TRUE(std::isfinite(reverse.log_z.value));
  EXPECT_THROW(reverse_ais_log_z(prior, torch::zeros({5, 3}), AisOptions(), gen), c10::Error);
}

}  // namespace vae_ebm::test
