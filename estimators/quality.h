#pragma once
// Sample-quality metrics on feature matrices (MATH.md section 6): Frechet distance, KID,
// precision / recall and density / coverage. Features are [N, d] of any floating dtype
// on any device; all arithmetic is float64 on the CPU. "real" are the reference features
// (e.g. the test split through the feature classifier), "fake" the model's samples.
#include <torch/torch.h>

#include <cstdint>
#include <string>

#include "data/json.h"

namespace vae_ebm {

// Mean [d] and covariance [d, d] (divisor N - 1) of features [N, d], N >= 2, float64.
// Worth caching for a fixed reference set.
struct FeatureStatistics {
  torch::Tensor mean;
  torch::Tensor covariance;
  int64_t count = 0;
};
FeatureStatistics feature_statistics(const torch::Tensor& features);

// |mu1 - mu2|^2 + Tr S1 + Tr S2 - 2 Tr (S1 S2)^{1/2}, with
// Tr (S1 S2)^{1/2} = sum_i sqrt(max(lambda_i, 0)), lambda the eigenvalues of the symmetric
// S1^{1/2} S2 S1^{1/2} (S1^{1/2} from the symmetric eigendecomposition of S1, its negative
// eigenvalues clamped at 0). mu [d], S [d, d] (symmetric); float64 arithmetic.
double frechet_distance_from_stats(const torch::Tensor& mu1, const torch::Tensor& s1, const torch::Tensor& mu2,
                                   const torch::Tensor& s2);

struct FrechetDistance {
  double value = 0;  // squared feature units; no standard error (it is a plug-in statistic)
  int64_t real_count = 0;
  int64_t fake_count = 0;
  int64_t dim = 0;
  Json to_json() const;  // {"estimator": "FD", "value", "real_count", "fake_count", "dim"}
};
FrechetDistance frechet_distance(const FeatureStatistics& real, const FeatureStatistics& fake);
FrechetDistance frechet_distance(const torch::Tensor& real, const torch::Tensor& fake);  // [N, d], [M, d]

// Kernel distance (KID; Binkowski et al. 2018): the unbiased MMD^2 with the kernel
// k(x, y) = (x.y / d + 1)^3 on `subsets` random subsets, each of min(subset_size, N, M) real
// and as many fake rows drawn without replacement.
struct KidOptions {
  TORCH_ARG(int64_t, subsets) = 100;
  TORCH_ARG(int64_t, subset_size) = 1000;  // capped at min(N, M)

 public:
  void validate() const;  // throws std::invalid_argument naming the bad value
};

struct KidResult {
  double mean = 0;  // mean of the subsets' unbiased MMD^2
  double std = 0;   // their standard deviation (divisor `subsets`, as Binkowski et al. and
                    // torch-fidelity report it); the subsets overlap, so std / sqrt(subsets)
                    // understates the error of the mean
  int64_t subsets = 0;
  int64_t subset_size = 0;  // after the cap
  int64_t real_count = 0;
  int64_t fake_count = 0;
  Json to_json() const;  // {"estimator": "KID", "value": mean, "std", ...}
};
KidResult kid(const torch::Tensor& real, const torch::Tensor& fake, const KidOptions& options,
              at::Generator& generator);

// The unbiased MMD^2 with the cubic polynomial kernel over all of x [m, d] and y [n, d],
// m, n >= 2 (the statistic KID averages).
double polynomial_mmd2_unbiased(const torch::Tensor& x, const torch::Tensor& y);

// Precision / recall and density / coverage on k-nearest-neighbour balls (Kynkaanniemi et
// al. 2019; Naeem et al. 2020, whose `prdc` code these follow, strict < included).
// r_i is the distance from real_i to its k-th nearest other real point; B(real_i, r_i) its ball.
//   precision = (1/M) sum_j 1[fake_j in some B(real_i, r_i)]                (k = pr_k)
//   recall    = (1/N) sum_i 1[real_i in some B(fake_j, r'_j)], r' the fake kNN radii (k = pr_k)
//   density   = 1/(k M) sum_j sum_i 1[fake_j in B(real_i, r_i)]           (k = dc_k)
//   coverage  = (1/N) sum_i 1[some fake_j in B(real_i, r_i)]               (k = dc_k)
// For two large samples of one distribution: E[density] = 1, coverage ~ 1 - 2^-k.
struct PrdcOptions {
  TORCH_ARG(int64_t, precision_recall_k) = 3;
  TORCH_ARG(int64_t, density_coverage_k) = 5;
  TORCH_ARG(int64_t, chunk_elements) = int64_t{1} << 23;  // distances held at once (float64)

 public:
  void validate() const;  // throws std::invalid_argument naming the bad value
};

struct PrdcResult {
  double precision = 0, recall = 0, density = 0, coverage = 0;
  int64_t precision_recall_k = 0, density_coverage_k = 0;
  int64_t real_count = 0, fake_count = 0;
  Json to_json() const;
};
// real [N, d] with N > max k, fake [M, d] with M > precision_recall_k.
PrdcResult precision_recall_density_coverage(const torch::Tensor& real, const torch::Tensor& fake,
                                             const PrdcOptions& options = {});

// Distance from each row of x [N, d] to its k-th nearest other row: [N] float64 (N > k).
torch::Tensor knn_radii(const torch::Tensor& x, int64_t k, int64_t chunk_elements = int64_t{1} << 23);

// All of the above on one pair of feature sets.
struct QualityOptions {
  TORCH_ARG(KidOptions, kid) = KidOptions();
  TORCH_ARG(PrdcOptions, prdc) = PrdcOptions();
};

struct QualityReport {
  FrechetDistance frechet;
  KidResult kid;
  PrdcResult prdc;
  // Scores are comparable only for one feature network: the caller records its
  // FeatureClassifier::weights_sha256() here (written as "feature_network_sha256").
  std::string feature_network_sha256;
  Json to_json() const;
};
QualityReport sample_quality(const torch::Tensor& real, const torch::Tensor& fake, const QualityOptions& options,
                             at::Generator& generator);

}  // namespace vae_ebm
