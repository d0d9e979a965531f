// Sample-quality estimators (estimators/quality.h, MATH.md section 6) against closed forms:
// Frechet distance, KID, precision / recall / density / coverage, colour coverage.

#include <cmath>
#include <vector>

#include "estimators/colour.h"
#include "estimators/quality.h"
#include "tests/support.h"

namespace vae_ebm::test {

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
// Colour coverage (estimators/colour.h).

// n images 3x8x8 of background `bg` with a 3x3 block of `fg` in the middle (9 of 64 pixels, so
// the 6 pixels farthest from the background are all foreground).
torch::Tensor two_colour_images(int64_t n, std::vector<double> bg, std::vector<double> fg) {
  auto images = torch::tensor(bg, torch::kDouble).view({1, 3, 1, 1}).expand({n, 3, 8, 8}).clone();
  images.narrow(2, 3, 3).narrow(3, 3, 3).copy_(torch::tensor(fg, torch::kDouble).view({1, 3, 1, 1}).expand({n, 3, 3, 3}));
  return images;
}

TEST_F(QualityTest, ColourHistogramsFindTheBackgroundAndTheDigitColours) {
  // Background (0.9, 0.1, 0.5) -> levels (3, 0, 2) -> bin 3*16 + 0*4 + 2 = 50; digit
  // (0.2, 0.6, 1.0) -> (0, 2, 3) -> bin 11 (1.0 is capped at the last level).
  auto h = colour_histograms(two_colour_images(7, {0.9, 0.1, 0.5}, {0.2, 0.6, 1.0}), 4, 2);
  EXPECT_EQ(h.count, 7);
  EXPECT_EQ(h.background.size(0), 64);
  EXPECT_EQ(h.background[50].item<int64_t>(), 7);
  EXPECT_EQ(h.foreground[11].item<int64_t>(), 7);
  EXPECT_EQ(h.background.sum().item<int64_t>(), 7);
  EXPECT_EQ(h.foreground.sum().item<int64_t>(), 7);
  EXPECT_THROW(colour_histograms(torch::zeros({2, 1, 8, 8})), c10::Error);
  EXPECT_THROW(colour_histograms(torch::zeros({2, 3, 4, 4}), 4, 2), c10::Error);
}

TEST_F(QualityTest, ColourCoverageIsZeroDistanceForOneSetAndNamesTheMissedFamily) {
  auto real = colour_histograms(torch::cat({two_colour_images(50, {0.9, 0.1, 0.5}, {0.2, 0.6, 1.0}),
                                            two_colour_images(50, {0.1, 0.1, 0.1}, {0.9, 0.9, 0.1})}));
  auto same = colour_coverage(real, real);
  EXPECT_DOUBLE_EQ(same.background_tv, 0.0);
  EXPECT_DOUBLE_EQ(same.foreground_coverage, 1.0);
  EXPECT_EQ(same.real_background_bins, 2);
  // Draws that show only the first family: half the mass moved, half the bins missed.
  auto one = colour_coverage(real, colour_histograms(two_colour_images(30, {0.9, 0.1, 0.5}, {0.2, 0.6, 1.0})));
  EXPECT_NEAR(one.background_tv, 0.5, 1e-12);
  EXPECT_NEAR(one.foreground_tv, 0.5, 1e-12);
  EXPECT_NEAR(one.background_coverage, 0.5, 1e-12);
  EXPECT_EQ(one.fake_foreground_bins, 1);
  // A colour the data never has: disjoint.
  auto other = colour_coverage(real, colour_histograms(two_colour_images(30, {0.5, 0.9, 0.9}, {0.0, 0.0, 0.6})));
  EXPECT_NEAR(other.background_tv, 1.0, 1e-12);
  EXPECT_DOUBLE_EQ(other.foreground_coverage, 0.0);
  EXPECT_THROW(colour_coverage(real, colour_histograms(two_colour_images(3, {0, 0, 0}, {1, 1, 1}), 3)), c10::Error);
}

}  // namespace vae_ebm::test
