#include <torch/torch.h>

#include "estimators/quality.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

namespace vae_ebm {
namespace {

torch::Tensor as_features(const torch::Tensor& x, const char* what) {
  TORCH_CHECK(x.defined() && x.dim() == 2, what, " features must be [N, d], got ",
              x.defined() ? x.sizes() : torch::IntArrayRef{});
  TORCH_CHECK(x.is_floating_point(), what, " features must be floating point, got ", x.dtype());
  auto out = x.detach().to(torch::kCPU, torch::kDouble).contiguous();
  TORCH_CHECK(torch::isfinite(out).all().item<bool>(), what, " features contain NaN or infinite values");
  return out;
}

void check_same_dim(const torch::Tensor& real, const torch::Tensor& fake) {
  TORCH_CHECK(real.size(1) == fake.size(1), "real and fake features differ in dimension: ", real.size(1), " vs ",
              fake.size(1));
}

// Rows per chunk so that a [rows, cols] float64 block stays within `elements`.
int64_t rows_per_chunk(int64_t cols, int64_t elements) { return std::max<int64_t>(1, elements / std::max<int64_t>(cols, 1)); }

}  // namespace

FeatureStatistics feature_statistics(const torch::Tensor& features) {
  auto x = as_features(features, "feature_statistics:");
  TORCH_CHECK(x.size(0) >= 2, "feature statistics need N >= 2 rows, got ", x.size(0));
  FeatureStatistics s;
  s.count = x.size(0);
  s.mean = x.mean(0);
  auto centred = x - s.mean;
  s.covariance = centred.t().matmul(centred) / static_cast<double>(s.count - 1);
  return s;
}

double frechet_distance_from_stats(const torch::Tensor& mu1, const torch::Tensor& s1, const torch::Tensor& mu2,
                                   const torch::Tensor& s2) {
  TORCH_CHECK(mu1.dim() == 1 && mu2.dim() == 1 && mu1.size(0) == mu2.size(0),
              "Frechet distance: means must be [d] of one size, got ", mu1.sizes(), " and ", mu2.sizes());
  const int64_t d = mu1.size(0);
  TORCH_CHECK(s1.dim() == 2 && s1.size(0) == d && s1.size(1) == d && s2.dim() == 2 && s2.size(0) == d &&
                  s2.size(1) == d,
              "Frechet distance: covariances must be [", d, ", ", d, "], got ", s1.sizes(), " and ", s2.sizes());
  auto m1 = mu1.to(torch::kCPU, torch::kDouble), m2 = mu2.to(torch::kCPU, torch::kDouble);
  auto c1 = s1.to(torch::kCPU, torch::kDouble), c2 = s2.to(torch::kCPU, torch::kDouble);
  // S1^{1/2} from the symmetric eigendecomposition; tiny negative eigenvalues (rounding, or a
  // rank-deficient covariance with N <= d) are clamped so the root stays real.
  auto eig = torch::linalg_eigh(0.5 * (c1 + c1.t()));
  auto values = std::get<0>(eig).clamp_min(0).sqrt();
  auto vectors = std::get<1>(eig);
  auto root1 = (vectors * values.unsqueeze(0)).matmul(vectors.t());
  // S1^{1/2} S2 S1^{1/2} is symmetric positive semi-definite and has the eigenvalues of S1 S2.
  auto middle = root1.matmul(c2).matmul(root1);
  middle = 0.5 * (middle + middle.t());
  auto trace_root = torch::linalg_eigvalsh(middle).clamp_min(0).sqrt().sum();
  auto diff = m1 - m2;
  return (diff.dot(diff) + c1.trace() + c2.trace() - 2 * trace_root).item<double>();
}

FrechetDistance frechet_distance(const FeatureStatistics& real, const FeatureStatistics& fake) {
  FrechetDistance out;
  out.value = frechet_distance_from_stats(real.mean, real.covariance, fake.mean, fake.covariance);
  out.real_count = real.count;
  out.fake_count = fake.count;
  out.dim = real.mean.size(0);
  return out;
}

FrechetDistance frechet_distance(const torch::Tensor& real, const torch::Tensor& fake) {
  TORCH_CHECK(real.dim() == 2 && fake.dim() == 2, "Frechet distance: features must be [N, d], got ", real.sizes(),
              " and ", fake.sizes());
  check_same_dim(real, fake);
  return frechet_distance(feature_statistics(real), feature_statistics(fake));
}

Json FrechetDistance::to_json() const {
  Json j = Json::object();
  j.set("estimator", "FD").set("value", value).set("real_count", real_count).set("fake_count", fake_count);
  j.set("dim", dim);
  return j;
}

void KidOptions::validate() const {
  if (subsets_ < 1) throw std::invalid_argument("KID subsets must be >= 1, got " + std::to_string(subsets_));
  if (subset_size_ < 2) throw std::invalid_argument("KID subset size must be >= 2, got " + std::to_string(subset_size_));
}

namespace {

// Unbiased MMD^2 from float64 [m, d] and [n, d] with k(x, y) = (x.y / d + 1)^3.
double mmd2_unbiased(const torch::Tensor& x, const torch::Tensor& y) {
  const double d = static_cast<double>(x.size(1));
  const double m = static_cast<double>(x.size(0)), n = static_cast<double>(y.size(0));
  auto kxx = (x.matmul(x.t()) / d + 1).pow(3);
  auto kyy = (y.matmul(y.t()) / d + 1).pow(3);
  auto kxy = (x.matmul(y.t()) / d + 1).pow(3);
  auto within_x = (kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1));
  auto within_y = (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1));
  return (within_x + within_y - 2 * kxy.sum() / (m * n)).item<double>();
}

}  // namespace

double polynomial_mmd2_unbiased(const torch::Tensor& x, const torch::Tensor& y) {
  auto a = as_features(x, "MMD x:"), b = as_features(y, "MMD y:");
  check_same_dim(a, b);
  TORCH_CHECK(a.size(0) >= 2 && b.size(0) >= 2, "unbiased MMD^2 needs >= 2 rows on each side, got ", a.size(0),
              " and ", b.size(0));
  return mmd2_unbiased(a, b);
}

KidResult kid(const torch::Tensor& real, const torch::Tensor& fake, const KidOptions& options,
              at::Generator& generator) {
  options.validate();
  auto x = as_features(real, "KID real"), y = as_features(fake, "KID fake");
  check_same_dim(x, y);
  KidResult out;
  out.real_count = x.size(0);
  out.fake_count = y.size(0);
  out.subsets = options.subsets();
  out.subset_size = std::min({options.subset_size(), out.real_count, out.fake_count});
  TORCH_CHECK(out.subset_size >= 2, "KID needs >= 2 real and fake rows, got ", out.real_count, " and ",
              out.fake_count);
  auto index_options = torch::TensorOptions().dtype(torch::kLong);
  std::vector<double> values;
  values.reserve(options.subsets());
  for (int64_t s = 0; s < options.subsets(); ++s) {
    auto ix = torch::randperm(out.real_count, generator, index_options).slice(0, 0, out.subset_size);
    auto iy = torch::randperm(out.fake_count, generator, index_options).slice(0, 0, out.subset_size);
    values.push_back(mmd2_unbiased(x.index_select(0, ix), y.index_select(0, iy)));
  }
  auto v = torch::tensor(values, torch::kDouble);
  out.mean = v.mean().item<double>();
  out.std = v.std(/*unbiased=*/false).item<double>();
  return out;
}

Json KidResult::to_json() const {
  Json j = Json::object();
  j.set("estimator", "KID").set("value", mean).set("std", std).set("subsets", subsets);
  j.set("subset_size", subset_size).set("real_count", real_count).set("fake_count", fake_count);
  return j;
}

void PrdcOptions::validate() const {
  if (precision_recall_k_ < 1)
    throw std::invalid_argument("precision/recall k must be >= 1, got " + std::to_string(precision_recall_k_));
  if (density_coverage_k_ < 1)
    throw std::invalid_argument("density/coverage k must be >= 1, got " + std::to_string(density_coverage_k_));
  if (chunk_elements_ < 1)
    throw std::invalid_argument("PRDC chunk elements must be >= 1, got " + std::to_string(chunk_elements_));
}

torch::Tensor knn_radii(const torch::Tensor& x, int64_t k, int64_t chunk_elements) {
  auto a = as_features(x, "kNN");
  TORCH_CHECK(k >= 1, "kNN radii need k >= 1, got ", k);
  TORCH_CHECK(a.size(0) > k, "kNN radii with k = ", k, " need more than ", k, " rows, got ", a.size(0));
  const int64_t n = a.size(0);
  const int64_t rows = rows_per_chunk(n, chunk_elements);
  auto radii = torch::empty({n}, torch::kDouble);
  for (int64_t start = 0; start < n; start += rows) {
    const int64_t end = std::min(n, start + rows);
    auto d = torch::cdist(a.slice(0, start, end), a);  // [rows, n]
    // The k + 1 smallest include the point itself (distance ~0): the last is the k-th neighbour.
    auto smallest = std::get<0>(d.topk(k + 1, /*dim=*/1, /*largest=*/false, /*sorted=*/true));
    radii.slice(0, start, end).copy_(smallest.select(1, k));
  }
  return radii;
}

PrdcResult precision_recall_density_coverage(const torch::Tensor& real, const torch::Tensor& fake,
                                             const PrdcOptions& options) {
  options.validate();
  auto x = as_features(real, "PRDC real"), y = as_features(fake, "PRDC fake");
  check_same_dim(x, y);
  const int64_t n = x.size(0), m = y.size(0);
  const int64_t k_pr = options.precision_recall_k(), k_dc = options.density_coverage_k();
  TORCH_CHECK(n > std::max(k_pr, k_dc), "PRDC needs more than ", std::max(k_pr, k_dc), " real rows, got ", n);
  TORCH_CHECK(m > k_pr, "PRDC needs more than ", k_pr, " fake rows, got ", m);
  auto real_pr = knn_radii(x, k_pr, options.chunk_elements());
  auto real_dc = k_dc == k_pr ? real_pr : knn_radii(x, k_dc, options.chunk_elements());
  auto fake_pr = knn_radii(y, k_pr, options.chunk_elements());

  // One pass over [fake chunk, all real] distance blocks.
  int64_t precise = 0;
  double in_balls = 0;
  auto recalled = torch::zeros({n}, torch::kBool);
  auto nearest_fake = torch::full({n}, std::numeric_limits<double>::infinity(), torch::kDouble);
  const int64_t rows = rows_per_chunk(n, options.chunk_elements());
  for (int64_t start = 0; start < m; start += rows) {
    const int64_t end = std::min(m, start + rows);
    auto d = torch::cdist(y.slice(0, start, end), x);  // [rows, n]: fake j, real i
    precise += (d < real_pr.unsqueeze(0)).any(1).sum().item<int64_t>();
    in_balls += (d < real_dc.unsqueeze(0)).sum().item<int64_t>();
    recalled |= (d < fake_pr.slice(0, start, end).unsqueeze(1)).any(0);
    nearest_fake = torch::minimum(nearest_fake, std::get<0>(d.min(0)));
  }
  PrdcResult out;
  out.precision = static_cast<double>(precise) / static_cast<double>(m);
  out.recall = recalled.to(torch::kDouble).mean().item<double>();
  out.density = in_balls / (static_cast<double>(k_dc) * static_cast<double>(m));
  out.coverage = (nearest_fake < real_dc).to(torch::kDouble).mean().item<double>();
  out.precision_recall_k = k_pr;
  out.density_coverage_k = k_dc;
  out.real_count = n;
  out.fake_count = m;
  return out;
}

Json PrdcResult::to_json() const {
  Json j = Json::object();
  j.set("precision", precision).set("recall", recall).set("density", density).set("coverage", coverage);
  j.set("precision_recall_k", precision_recall_k).set("density_coverage_k", density_coverage_k);
  j.set("real_count", real_count).set("fake_count", fake_count);
  return j;
}

QualityReport sample_quality(const torch::Tensor& real, const torch::Tensor& fake, const QualityOptions& options,
                             at::Generator& generator) {
  QualityReport report;
  report.frechet = frechet_distance(real, fake);
  report.kid = kid(real, fake, options.kid(), generator);
  report.prdc = precision_recall_density_coverage(real, fake, options.prdc());
  return report;
}

Json QualityReport::to_json() const {
  Json j = Json::object();
  j.set("feature_network_sha256", feature_network_sha256);
  j.set("frechet_distance", frechet.to_json()).set("kid", kid.to_json()).set("prdc", prdc.to_json());
  return j;
}

}  // namespace vae_ebm
