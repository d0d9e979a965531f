// Estimators against closed forms: log Z of a quadratic energy, IWAE on a model whose
// log-likelihood is computed by quadrature.
#include <cmath>

#include "data/seed.h"
#include "data/error.h"
#include "data/files.h"
#include "estimators/bounds.h"
#include "estimators/feature_network.h"
#include "data/sha256.h"

#include <torch/script.h>
#include "estimators/log_z.h"
#include "prior/gaussian.h"
#include "tests/support.h"

namespace vae_ebm::test {

class EstimatorTest : public SeedingFixture {};

TEST_F(EstimatorTest, MeanEstimateHasTheTextbookError) {
  auto e = mean_estimate(torch::tensor({1.0, 2.0, 3.0, 4.0}), "x");
  EXPECT_DOUBLE_EQ(e.value, 2.5);
  EXPECT_NEAR(e.std_error, std::sqrt(5.0 / 3.0) / 2.0, 1e-12);
  EXPECT_EQ(e.count, 4);
}

// f(z) = 1/2 z^T A z + c^T z: log Z = -1/2 log det(I + A) + 1/2 c^T (I + A)^{-1} c.
TEST_F(EstimatorTest, ImportanceSamplingLogZMatchesTheClosedForm) {
  auto a = torch::tensor({{0.5, 0.2}, {0.2, -0.3}}, torch::kDouble);
  auto c = torch::tensor({0.4, -0.6}, torch::kDouble);
  auto m = torch::eye(2, torch::kDouble) + a;
  double log_z = (-0.5 * torch::logdet(m) + 0.5 * c.dot(torch::linalg_solve(m, c))).item<double>();
  auto energy = [&](const torch::Tensor& z) { return 0.5 * (z.matmul(a) * z).sum(-1) + z.matmul(c); };
  auto gen = make_generator(17);
  auto e = log_z_importance(energy, 2, 200000, gen, torch::kDouble);
  EXPECT_NEAR(e.value, log_z, 4 * e.std_error) << "se " << e.std_error;
  EXPECT_LT(e.std_error, 0.01);
  EXPECT_GT(e.ess, 1000);
  EXPECT_LE(e.ess, 200000);
  // Equal weights give ESS = S exactly and no error.
  auto flat = log_z_from_log_weights(torch::zeros({50}), "flat");
  EXPECT_NEAR(flat.ess, 50, 1e-9);
  EXPECT_NEAR(flat.value, 0, 1e-12);
}

// A one-dimensional latent and a linear Bernoulli decoder: log p(x) by quadrature.
TEST_F(EstimatorTest, IwaeIncreasesWithKTowardsTheExactLogLikelihood) {
  auto options = NetworkOptions().hidden({}).latent_dim(1).image_shape({4});
  auto encoder = make_encoder(options);
  auto decoder = make_decoder(options);
  {
    torch::NoGradGuard no_grad;
    for (auto& p : decoder->parameters()) p.copy_(torch::tensor({1.5f, -2.0f, 0.5f, 1.0f}).reshape(p.sizes()) * (p.dim() == 2 ? 1.0 : 0.3));
    for (auto& p : encoder->parameters()) p.mul_(0.3);
  }
  GaussianPrior prior(1);
  auto x = torch::tensor({{1.f, 0.f, 1.f, 1.f}, {0.f, 1.f, 0.f, 1.f}});
  // Exact: integrate N(z; 0, 1) p(x|z) on a fine grid.
  auto grid = torch::linspace(-10, 10, 20001, torch::kDouble).unsqueeze(1);
  auto log_joint = bernoulli_log_likelihood(decoder->params(grid.to(torch::kFloat)).to(torch::kDouble).unsqueeze(1),
                                            x.to(torch::kDouble)) +
                   standard_normal_log_prob(grid).unsqueeze(1);  // [G, B]
  auto exact = (torch::logsumexp(log_joint, 0) + std::log(20.0 / 20000)).detach();
  double previous = -1e9;
  for (int64_t k : {1, 10, 100, 2000}) {
    auto gen = make_generator(3);
    auto bernoulli = make_likelihood(LikelihoodOptions(), 1);
    auto report = evaluate_bounds(*encoder, *decoder, *bernoulli, prior, x.repeat({200, 1}), BoundOptions().samples(k), gen);
    auto iwae = report.per_image_iwae.reshape({200, 2}).mean(0);
    EXPECT_GT(iwae.mean().item<double>(), previous) << "K = " << k;
    previous = iwae.mean().item<double>();
    EXPECT_TRUE((iwae <= exact + 0.01).all().item<bool>()) << "K = " << k << " " << iwae << exact;
    if (k == 2000) EXPECT_TRUE(torch::allclose(iwae, exact, 0, 0.01)) << iwae << exact;
    if (k == 1) EXPECT_NEAR(report.bound.value, report.iwae.value, 0.1);  // both estimate the ELBO
  }
}

TEST_F(EstimatorTest, TorchScriptFeatureNetworkIsLoadedAndHashed) {
  TempDir tmp;
  torch::jit::Module module("Features");
  module.define(R"(
def forward(self, x):
    return x.flatten(1)[:, 0:3] * 2.0
)");
  module.save(tmp.file("net.pt"));
  auto net = load_torchscript_features(tmp.file("net.pt"), {1, 2, 2}, /*batch=*/2);
  EXPECT_EQ(net.kind, "torchscript");
  EXPECT_EQ(net.sha256, sha256_hex(read_file(tmp.file("net.pt"))));
  auto x = torch::arange(20, torch::kFloat).reshape({5, 4}) / 20;
  auto f = net.features(x);
  ASSERT_EQ(f.sizes(), (std::vector<int64_t>{5, 3}));
  EXPECT_TRUE(torch::allclose(f, x.narrow(1, 0, 3) * 2));
  // Any image shape: colour images reach the network as [B, C, H, W].
  torch::jit::Module colour("ColourFeatures");
  colour.define(R"(
def forward(self, x):
    assert x.dim() == 4 and x.size(1) == 3 and x.size(2) == 4 and x.size(3) == 5
    return x.mean(dim=[2, 3])
)");
  colour.save(tmp.file("colour.pt"));
  auto colour_net = load_torchscript_features(tmp.file("colour.pt"), {3, 4, 5}, /*batch=*/4);
  EXPECT_EQ(colour_net.image_shape, (std::vector<int64_t>{3, 4, 5}));
  auto images = torch::rand({6, 3 * 4 * 5});
  auto means = colour_net.features(images);
  EXPECT_TRUE(torch::allclose(means, images.view({6, 3, 20}).mean(2)));
  atomic_write(tmp.file("bad.pt"), "not a module");
  try {
    load_torchscript_features(tmp.file("bad.pt"), {1, 2, 2});
    FAIL() << "expected DataError";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("bad.pt"), std::string::npos) << e.what();
  }
}

}  // namespace vae_ebm::test
