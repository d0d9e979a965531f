// Estimators of section 5 and 6 of MATH.md against closed forms: AIS (forward and reverse)
// on a quadratic energy, Frechet distance, KID, precision / recall / density / coverage,
// SHA-256 test vectors, and the feature classifier's determinism and file format.
#include <cmath>
#include <fstream>
#include <vector>

#include "data/archive.h"
#include "data/error.h"
#include "data/files.h"
#include "data/seed.h"
#include "estimators/ais.h"
#include "estimators/classifier.h"
#include "estimators/log_z.h"
#include "estimators/quality.h"
#include "data/sha256.h"
#include "tests/support.h"

namespace vae_ebm::test {

// ---------------------------------------------------------------------------------------
// SHA-256

class Sha256Test : public SeedingFixture {};

TEST_F(Sha256Test, FipsTestVectors) {
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(sha256_hex(std::string(1000000, 'a')), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST_F(Sha256Test, IncrementalUpdatesEqualOneShot) {
  std::string text;
  for (int i = 0; i < 300; ++i) text.push_back(static_cast<char>((i * 37) & 0xff));
  for (size_t piece : {1, 7, 55, 56, 63, 64, 65, 200}) {
    Sha256 hash;
    for (size_t at = 0; at < text.size(); at += piece) hash.update(text.substr(at, piece));
    EXPECT_EQ(hash.hex_digest(), sha256_hex(text)) << "piece " << piece;
  }
  Sha256 once;
  once.hex_digest();
  EXPECT_THROW(once.hex_digest(), std::logic_error);
}

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

// ---------------------------------------------------------------------------------------
// Frechet distance, KID, precision / recall / density / coverage.

class QualityTest : public SeedingFixture {};

torch::Tensor random_spd(int64_t d, at::Generator& gen) {
  auto m = torch::randn({d, d}, gen, torch::kDouble);
  return m.matmul(m.t()) / d + 0.1 * torch::eye(d, torch::kDouble);
}

TEST_F(QualityTest, FrechetDistanceOfIdenticalStatisticsIsZero) {
  auto gen = make_generator(1);
  auto mu = torch::randn({8}, gen, torch::kDouble);
  auto s = random_spd(8, gen);
  EXPECT_NEAR(frechet_distance_from_stats(mu, s, mu, s), 0.0, 1e-10);
  auto x = torch::randn({50, 8}, gen);
  auto fd = frechet_distance(x, x);
  EXPECT_NEAR(fd.value, 0.0, 1e-8);
  EXPECT_EQ(fd.real_count, 50);
  EXPECT_EQ(fd.fake_count, 50);
  EXPECT_EQ(fd.dim, 8);
}

// S1 = I, S2 = s^2 I: FD = |mu1 - mu2|^2 + d (1 - s)^2 exactly.
TEST_F(QualityTest, FrechetDistanceOfIsotropicGaussiansIsExact) {
  const int64_t d = 6;
  auto mu1 = torch::tensor({0.0, 1.0, -2.0, 0.5, 0.0, 3.0}, torch::kDouble);
  auto mu2 = torch::tensor({1.0, 1.0, 0.0, 0.5, -1.0, 2.0}, torch::kDouble);
  const double dmu2 = (mu1 - mu2).pow(2).sum().item<double>();
  for (double s : {0.1, 0.5, 1.0, 2.0, 7.0}) {
    auto eye = torch::eye(d, torch::kDouble);
    EXPECT_NEAR(frechet_distance_from_stats(mu1, eye, mu2, s * s * eye), dmu2 + d * (1 - s) * (1 - s), 1e-10)
        << "s = " << s;
  }
  // Statistics from features approach it for large N.
  auto gen = make_generator(2);
  const int64_t n = 40000;
  auto x = torch::randn({n, d}, gen, torch::kDouble) + mu1;
  auto y = 2.0 * torch::randn({n, d}, gen, torch::kDouble) + mu2;
  EXPECT_NEAR(frechet_distance(x, y).value, dmu2 + d * 1.0, 0.25);
}

// The symmetric route (eigenvalues of S1^{1/2} S2 S1^{1/2}) agrees with the general one
// (eigenvalues of the non-symmetric S1 S2).
TEST_F(QualityTest, SymmetricSquareRootAgreesWithGeneralEigenvalues) {
  auto gen = make_generator(3);
  for (int trial = 0; trial < 5; ++trial) {
    const int64_t d = 3 + 4 * trial;
    auto s1 = random_spd(d, gen), s2 = random_spd(d, gen);
    auto mu1 = torch::randn({d}, gen, torch::kDouble), mu2 = torch::randn({d}, gen, torch::kDouble);
    auto eig = torch::real(torch::linalg_eigvals(s1.matmul(s2)));
    const double trace_root = eig.clamp_min(0).sqrt().sum().item<double>();
    const double general =
        ((mu1 - mu2).pow(2).sum() + s1.trace() + s2.trace()).item<double>() - 2 * trace_root;
    EXPECT_NEAR(frechet_distance_from_stats(mu1, s1, mu2, s2), general, 1e-8 * (1 + std::abs(general))) << "d = " << d;
  }
  // A rank-deficient covariance (N <= d) still gives a finite, non-negative distance.
  auto few = torch::randn({5, 12}, gen, torch::kDouble);
  auto fd = frechet_distance(few, torch::randn({5, 12}, gen, torch::kDouble));
  EXPECT_TRUE(std::isfinite(fd.value));
  EXPECT_GT(fd.value, -1e-8);
  EXPECT_THROW(frechet_distance(torch::zeros({4, 3}), torch::zeros({4, 2})), c10::Error);
}

// The unbiased MMD^2 against a direct double loop on tiny data.
TEST_F(QualityTest, UnbiasedMmdMatchesTheDefinition) {
  auto gen = make_generator(4);
  auto x = torch::randn({5, 3}, gen, torch::kDouble), y = torch::randn({4, 3}, gen, torch::kDouble) + 0.5;
  auto k = [](const torch::Tensor& a, const torch::Tensor& b) { return std::pow(a.dot(b).item<double>() / 3 + 1, 3); };
  double kxx = 0, kyy = 0, kxy = 0;
  for (int i = 0; i < 5; ++i)
    for (int j = 0; j < 5; ++j)
      if (i != j) kxx += k(x[i], x[j]);
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j)
      if (i != j) kyy += k(y[i], y[j]);
  for (int i = 0; i < 5; ++i)
    for (int j = 0; j < 4; ++j) kxy += k(x[i], y[j]);
  EXPECT_NEAR(polynomial_mmd2_unbiased(x, y), kxx / 20 + kyy / 12 - 2 * kxy / 20, 1e-10);
}

TEST_F(QualityTest, KidIsNearZeroForOneDistributionAndGrowsWithAShift) {
  auto gen = make_generator(5);
  const int64_t d = 16;
  auto real = torch::randn({3000, d}, gen);
  auto same = torch::randn({3000, d}, gen);
  auto options = KidOptions().subsets(50).subset_size(500);
  auto k0 = kid(real, same, options, gen);
  EXPECT_EQ(k0.subset_size, 500);
  EXPECT_EQ(k0.subsets, 50);
  EXPECT_LT(std::abs(k0.mean), std::max(3 * k0.std / std::sqrt(50.0), 1e-3)) << k0.mean << " std " << k0.std;
  double previous = k0.mean;
  for (double shift : {0.25, 0.5, 1.0}) {
    auto k = kid(real, same + shift, options, gen);
    EXPECT_GT(k.mean, previous + 3 * k.std / std::sqrt(50.0)) << "shift " << shift;
    previous = k.mean;
  }
  // The subset size is capped at the smaller sample; the same seed gives the same value.
  auto g1 = make_generator(9), g2 = make_generator(9);
  auto capped = kid(real.slice(0, 0, 300), same, KidOptions().subsets(3), g1);
  EXPECT_EQ(capped.subset_size, 300);
  EXPECT_EQ(capped.mean, kid(real.slice(0, 0, 300), same, KidOptions().subsets(3), g2).mean);
}

// 1-D points checked by hand with k = 1. Real 0, 1, 3: radii 1, 1, 2. Fake 0.5, 10: radii 9.5, 9.5.
TEST_F(QualityTest, PrecisionRecallDensityCoverageByHand) {
  auto real = torch::tensor({0.0, 1.0, 3.0}, torch::kDouble).unsqueeze(1);
  auto fake = torch::tensor({0.5, 10.0}, torch::kDouble).unsqueeze(1);
  EXPECT_TRUE(torch::allclose(knn_radii(real, 1), torch::tensor({1.0, 1.0, 2.0}, torch::kDouble)));
  for (int64_t chunk : {int64_t{1} << 20, int64_t{2}}) {
    auto r = precision_recall_density_coverage(
        real, fake, PrdcOptions().precision_recall_k(1).density_coverage_k(1).chunk_elements(chunk));
    EXPECT_DOUBLE_EQ(r.precision, 0.5) << chunk;  // 0.5 lies in the balls of 0 and 1; 10 in none
    EXPECT_DOUBLE_EQ(r.recall, 1.0) << chunk;     // every real point is within 9.5 of 0.5
    EXPECT_DOUBLE_EQ(r.density, 1.0) << chunk;    // (2 + 0) / (1 * 2)
    EXPECT_NEAR(r.coverage, 2.0 / 3.0, 1e-12) << chunk;  // 3's nearest fake is 2.5 > 2 away
  }
  EXPECT_THROW(precision_recall_density_coverage(real, fake), c10::Error);  // k = 5 needs > 5 real rows
}

TEST_F(QualityTest, PrecisionRecallDensityCoverageOfOneGaussian) {
  auto gen = make_generator(6);
  const int64_t n = 4000, d = 8;
  auto real = torch::randn({n, d}, gen), fake = torch::randn({n, d}, gen);
  auto chunked = knn_radii(real, 3, 1000);
  EXPECT_TRUE(torch::allclose(chunked, knn_radii(real, 3), 0, 1e-9));
  auto r = precision_recall_density_coverage(real, fake, PrdcOptions().chunk_elements(1 << 20));
  std::cout << "same Gaussian, N = " << n << ", d = " << d << ": precision " << r.precision << " recall " << r.recall
            << " density " << r.density << " coverage " << r.coverage << "\n";
  EXPECT_GT(r.precision, 0.85);
  EXPECT_GT(r.recall, 0.85);
  EXPECT_NEAR(r.density, 1.0, 0.1);
  EXPECT_NEAR(r.coverage, 1.0 - std::pow(0.5, 5), 0.03);
  EXPECT_EQ(r.real_count, n);
  EXPECT_EQ(r.precision_recall_k, 3);
  EXPECT_EQ(r.density_coverage_k, 5);
  // A fake sample far away lies in no real ball, and covers no real point.
  auto far = precision_recall_density_coverage(real, fake + 10.0);
  EXPECT_LT(far.precision, 0.01);
  EXPECT_LT(far.density, 0.01);
  EXPECT_LT(far.coverage, 0.01);
  EXPECT_LT(far.recall, 0.01);
}

TEST_F(QualityTest, SampleQualityReportHasEveryScore) {
  auto gen = make_generator(7);
  auto real = torch::randn({300, 4}, gen), fake = torch::randn({200, 4}, gen) + 0.3;
  auto report = sample_quality(real, fake, QualityOptions().kid(KidOptions().subsets(5)), gen);
  report.feature_network_sha256 = "abc";
  EXPECT_EQ(report.kid.subset_size, 200);
  EXPECT_GT(report.frechet.value, 0.2);
  const auto json = report.to_json().dump();
  for (const char* key : {"feature_network_sha256", "frechet_distance", "kid", "prdc", "coverage", "real_count"})
    EXPECT_NE(json.find(key), std::string::npos) << key << " in " << json;
}

// ---------------------------------------------------------------------------------------
// The feature classifier.

class ClassifierTest : public SeedingFixture {};

// Two classes a conv net separates at once: bright blobs in the top or the bottom half.
void toy_images(int64_t n, at::Generator& gen, torch::Tensor& images, torch::Tensor& labels) {
  labels = torch::randint(0, 2, {n}, gen, torch::kLong);
  auto noise = 0.3 * torch::rand({n, 28, 28}, gen);
  auto rows = torch::arange(28).view({1, 28, 1});
  auto top = (rows < 14).to(torch::kFloat);
  auto mask = torch::where(labels.view({n, 1, 1}) == 0, top, 1 - top);
  images = (noise + 0.7 * mask * torch::rand({n, 28, 28}, gen)).reshape({n, 784});
}

TEST_F(ClassifierTest, TrainingIsDeterministicAndLearns) {
  auto gen = make_generator(8);
  torch::Tensor images, labels;
  toy_images(384, gen, images, labels);
  auto options =
      ClassifierTrainOptions().epochs(1).batch_size(64).seed(3).binarize(true).network(ClassifierOptions().num_classes(2));
  std::vector<ClassifierEpoch> epochs;
  auto logged = options;
  logged.on_epoch([&epochs](const ClassifierEpoch& e) { epochs.push_back(e); });
  torch::manual_seed(123);  // the global generator's state must not matter
  auto a = train_classifier(images, labels, logged);
  torch::manual_seed(456);
  auto b = train_classifier(images, labels, options);
  EXPECT_EQ(a->weights_sha256(), b->weights_sha256());
  EXPECT_EQ(a->weights_sha256().size(), 64u);
  EXPECT_NE(a->weights_sha256(), train_classifier(images, labels, options.seed(4))->weights_sha256());
  ASSERT_EQ(epochs.size(), 1u);
  EXPECT_TRUE(std::isfinite(epochs[0].loss));
  torch::Tensor test_images, test_labels;
  toy_images(200, gen, test_images, test_labels);
  auto accuracy = classifier_accuracy(a, test_images, test_labels);
  EXPECT_GT(accuracy.value, 0.9) << "train loss " << epochs[0].loss;
  EXPECT_EQ(accuracy.count, 200);
  auto features = a->features(test_images, 64);
  EXPECT_EQ(features.sizes(), (torch::IntArrayRef{200, 128}));
  EXPECT_EQ(features.scalar_type(), torch::kFloat);
  EXPECT_TRUE((features >= 0).all().item<bool>());
  EXPECT_EQ(a->predict(test_images).sizes(), (torch::IntArrayRef{200}));
  EXPECT_THROW(train_classifier(images, labels + 1, options), c10::Error);  // label 2 with 2 classes
  EXPECT_THROW(a->features(torch::zeros({3, 100})), c10::Error);
}

TEST_F(ClassifierTest, SaveAndLoadRoundTripAndRefuseForeignFiles) {
  TempDir dir;
  torch::manual_seed(1);
  FeatureClassifier model(ClassifierOptions().num_classes(3).conv1_channels(4).conv2_channels(8).feature_dim(16));
  auto gen = make_generator(2);
  auto x = torch::rand({10, 784}, gen);
  save_classifier(model, dir.file("classifier.pt"));
  auto loaded = load_classifier(dir.file("classifier.pt"));
  EXPECT_EQ(loaded->weights_sha256(), model->weights_sha256());
  EXPECT_EQ(loaded->options().feature_dim(), 16);
  EXPECT_TRUE(torch::equal(loaded->features(x), model->features(x)));
  // Truncated, foreign and missing files are refused with the file's name.
  const auto bytes = read_file(dir.file("classifier.pt"));
  { std::ofstream(dir.file("truncated.pt"), std::ios::binary) << bytes.substr(0, bytes.size() / 2); }
  { std::ofstream(dir.file("foreign.pt"), std::ios::binary) << "not a model"; }
  for (const char* name : {"truncated.pt", "foreign.pt", "missing.pt"}) {
    try {
      load_classifier(dir.file(name));
      ADD_FAILURE() << name << " was accepted";
    } catch (const DataError& e) {
      EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
    }
  }
}

TEST_F(ClassifierTest, TheMnistNetworkIsUnchangedAndItsFormerFilesLoad) {
  FeatureClassifier model;
  std::vector<std::string> names;
  for (const auto& p : model->named_parameters()) names.push_back(p.key() + c10::str(p.value().sizes()));
  EXPECT_EQ(names, (std::vector<std::string>{"conv1.weight[32, 1, 5, 5]", "conv1.bias[32]", "conv2.weight[64, 32, 5, 5]",
                                             "conv2.bias[64]", "fc1.weight[128, 1024]", "fc1.bias[128]",
                                             "fc2.weight[10, 128]", "fc2.bias[10]"}));
  // A file as train-classifier wrote it before the image shape was recorded (format 1).
  TempDir dir;
  const auto& o = model->options();
  torch::serialize::OutputArchive archive, network;
  archive.write("format", torch::tensor(int64_t{1}));
  archive.write("options", torch::tensor({o.num_classes(), o.conv1_channels(), o.conv2_channels(), o.feature_dim()}));
  archive.write("dropout", torch::tensor({o.conv_dropout(), o.feature_dropout()}, torch::kDouble));
  archive.write("weights_sha256", c10::IValue(model->weights_sha256()));
  model->save(network);
  archive.write("network", network);
  atomic_write(dir.file("format1.pt"), sealed_archive_bytes(archive));
  auto loaded = load_classifier(dir.file("format1.pt"));
  EXPECT_EQ(loaded->options().image_shape(), (std::vector<int64_t>{1, 28, 28}));
  EXPECT_EQ(loaded->weights_sha256(), model->weights_sha256());
  auto x = torch::rand({4, 784});
  EXPECT_TRUE(torch::equal(loaded->features(x), model->features(x)));
  EXPECT_TRUE(torch::equal(model->features(x.view({4, 28, 28})), model->features(x)));
}

// Two colour classes a conv net separates at once: a red or a blue square on grey noise.
void colour_toy_images(int64_t n, at::Generator& gen, torch::Tensor& images, torch::Tensor& labels) {
  labels = torch::randint(0, 2, {n}, gen, torch::kLong);
  auto square = torch::zeros({1, 1, 32, 32});
  square.narrow(2, 8, 16).narrow(3, 8, 16).fill_(1.0);
  auto red = torch::tensor({1.0f, 0.0f, 0.0f}).view({1, 3, 1, 1}), blue = torch::tensor({0.0f, 0.0f, 1.0f}).view({1, 3, 1, 1});
  auto colour = torch::where(labels.view({n, 1, 1, 1}) == 0, red, blue);
  images = (0.3 * torch::rand({n, 3, 32, 32}, gen) + 0.7 * colour * square).reshape({n, 3 * 32 * 32});
}

TEST_F(ClassifierTest, ShapeGenericNetworkLearnsColourImagesAndRefusesOtherShapes) {
  const auto network =
      ClassifierOptions().image_shape({3, 32, 32}).num_classes(2).conv1_channels(8).conv2_channels(8).feature_dim(16);
  EXPECT_EQ(network.stages(), 3);
  EXPECT_EQ(network.final_side(), (std::vector<int64_t>{4, 4}));
  EXPECT_EQ(ClassifierOptions().image_shape({3, 20, 24}).stages(), 2);
  EXPECT_EQ(ClassifierOptions().image_shape({3, 20, 24}).final_side(), (std::vector<int64_t>{5, 6}));
  EXPECT_EQ(ClassifierOptions().image_shape({1, 8, 8}).stages(), 1);
  auto gen = make_generator(9);
  torch::Tensor images, labels;
  colour_toy_images(128, gen, images, labels);
  auto model = train_classifier(images, labels, ClassifierTrainOptions().network(network).epochs(3).batch_size(16).lr(5e-3).seed(1));
  auto params = model->named_parameters();
  EXPECT_EQ(params["conv1.weight"].sizes(), (std::vector<int64_t>{8, 3, 3, 3}));
  EXPECT_EQ(params["conv3.weight"].sizes(), (std::vector<int64_t>{8, 8, 3, 3}));
  EXPECT_EQ(params["fc1.weight"].sizes(), (std::vector<int64_t>{16, 8 * 4 * 4}));
  torch::Tensor test_images, test_labels;
  colour_toy_images(100, gen, test_images, test_labels);
  EXPECT_GT(classifier_accuracy(model, test_images, test_labels).value, 0.9);
  auto features = model->features(test_images);
  EXPECT_EQ(features.sizes(), (torch::IntArrayRef{100, 16}));
  EXPECT_TRUE(torch::equal(model->features(test_images.view({100, 3, 32, 32})), features));
  // The file records the shape; images of another shape are refused, naming it.
  TempDir dir;
  save_classifier(model, dir.file("colour.pt"));
  auto loaded = load_classifier(dir.file("colour.pt"));
  EXPECT_EQ(loaded->options().image_shape(), (std::vector<int64_t>{3, 32, 32}));
  EXPECT_TRUE(torch::equal(loaded->features(test_images), features));
  EXPECT_THROW_WITH(loaded->features(torch::rand({4, 784})), "3x32x32");
  EXPECT_THROW_WITH(loaded->features(torch::rand({4, 1, 48, 64})), "3x32x32");
  EXPECT_THROW_WITH(train_classifier(torch::rand({4, 784}), torch::zeros({4}, torch::kLong),
                                     ClassifierTrainOptions().network(network).epochs(1)),
                    "3x32x32");
  EXPECT_THROW(ClassifierOptions().image_shape({784}).validate(), std::invalid_argument);
  EXPECT_THROW(ClassifierOptions().image_shape({3, 2, 32}).validate(), std::invalid_argument);
}

TEST_F(ClassifierTest, ClassifierScoreAndLabelHistogram) {
  // Uniform predictions: every p(y|x) equals p(y), score 1. Confident predictions spread
  // evenly over C classes: KL = log C, score C.
  EXPECT_NEAR(classifier_score(torch::full({6, 4}, 0.25, torch::kDouble)).value, 1.0, 1e-12);
  auto one_hot = torch::eye(4, torch::kDouble).repeat({3, 1});
  auto score = classifier_score(one_hot);
  EXPECT_NEAR(score.value, 4.0, 1e-12);
  EXPECT_NEAR(score.std_error, 0.0, 1e-12);
  EXPECT_EQ(score.count, 12);
  // Confident but all one class: score 1.
  auto collapsed = torch::zeros({5, 4}, torch::kDouble);
  collapsed.select(1, 2).fill_(1.0);
  EXPECT_NEAR(classifier_score(collapsed).value, 1.0, 1e-12);
  EXPECT_THROW(classifier_score(torch::full({2, 2}, 0.7, torch::kDouble)), c10::Error);

  auto histogram = label_histogram(torch::tensor({0, 2, 2, 3, 2}, torch::kLong), 5);
  EXPECT_TRUE(torch::equal(histogram, torch::tensor({1, 0, 3, 1, 0}, torch::kLong))) << histogram;
  EXPECT_THROW(label_histogram(torch::tensor({0, 5}, torch::kLong), 5), c10::Error);
}

}  // namespace vae_ebm::test
