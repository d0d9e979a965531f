// The ELBO's terms against hand computations and closed forms.
#include <limits>
#include <cmath>
#include <sstream>

#include "data/seed.h"
#include "prior/energy.h"
#include "common/error.h"
#include "common/fused_mlp.h"
#include "prior/gaussian.h"
#include "prior/mixture.h"
#include "prior/objective.h"
#include "common/parallel.h"
#include "vae/conv_transpose.h"
#include "tests/support.h"
#include "vae/fused_adam.h"
#include "vae/model.h"

namespace vae_ebm::test {

class VaeTest : public SeedingFixture {};

TEST_F(VaeTest, BernoulliLogLikelihoodByHand) {
  auto logits = torch::tensor({{0.0, 2.0, -1.0}}, torch::kDouble);
  auto x = torch::tensor({{1.0, 0.0, 1.0}}, torch::kDouble);
  // log sigmoid(0) + log(1 - sigmoid(2)) + log sigmoid(-1)
  double expected = -std::log(2.0) - std::log1p(std::exp(2.0)) - std::log1p(std::exp(1.0));
  EXPECT_NEAR(bernoulli_log_likelihood(logits, x).item<double>(), expected, 1e-12);
  // K samples broadcast against one image.
  auto k = bernoulli_log_likelihood(logits.expand({4, 1, 3}), x);
  EXPECT_EQ(k.sizes(), (std::vector<int64_t>{4, 1}));
}

TEST_F(VaeTest, BernoulliLogLikelihoodIsStableAndHasTheClosedFormGradient) {
  auto logits = torch::tensor({{40.0, -40.0, 0.3, -2.0}}, torch::kDouble).requires_grad_(true);
  auto x = torch::tensor({{1.0, 1.0, 0.25, 0.0}}, torch::kDouble);  // grey targets are allowed
  auto ll = bernoulli_log_likelihood(logits, x);
  // x l - softplus(l) per pixel; softplus(40) = 40 + log1p(exp(-40)).
  const double expected = (40.0 - (40.0 + std::log1p(std::exp(-40.0)))) + (-40.0 - std::log1p(std::exp(-40.0))) +
                          (0.25 * 0.3 - std::log1p(std::exp(0.3))) + (0.0 - std::log1p(std::exp(-2.0)));
  EXPECT_NEAR(ll.item<double>(), expected, 1e-12);
  ll.sum().backward();
  EXPECT_TRUE(torch::allclose(logits.grad(), x - torch::sigmoid(logits.detach()), 1e-12, 1e-12)) << logits.grad();
}

// Sets the process's thread count for one test.
struct ThreadCount {
  explicit ThreadCount(int n) : before(num_threads()) { set_num_threads(n); }
  ~ThreadCount() { set_num_threads(before); }
  int before;
};

TEST_F(VaeTest, BernoulliLogLikelihoodSplitOverThreadsMatchesTheExpression) {
  // Float32 takes the fused autograd function, split over the threads along the longest
  // leading dimension; each broadcast of x must give the plain expression's value and gradient.
  ThreadCount threads(2);
  torch::manual_seed(5);
  auto logits0 = torch::randn({3, 200, 784}) * 4;
  for (auto x : {torch::bernoulli(torch::full({200, 784}, 0.3)), torch::bernoulli(torch::full({3, 200, 784}, 0.3)),
                 torch::bernoulli(torch::full({1, 784}, 0.3)), torch::rand({3, 1, 784})}) {
    auto a = logits0.clone().requires_grad_(true), b = logits0.clone().requires_grad_(true);
    auto weights = torch::randn({3, 200});
    auto fused = bernoulli_log_likelihood(a, x);
    auto plain = (b * x).sum(-1) - at::softplus(b).sum(-1);
    ASSERT_EQ(fused.sizes(), plain.sizes());
    EXPECT_TRUE(torch::allclose(fused, plain, 1e-5, 1e-3)) << (fused - plain).abs().max();
    (fused * weights).sum().backward();
    (plain * weights).sum().backward();
    EXPECT_TRUE(torch::allclose(a.grad(), b.grad(), 1e-5, 1e-6)) << (a.grad() - b.grad()).abs().max();
  }
  // A longest dimension shorter than the threads, and data that needs a gradient, also work.
  auto l = torch::randn({1, 1, 784}, torch::requires_grad());
  auto x = torch::rand({1, 1, 784}, torch::requires_grad());
  auto ll = bernoulli_log_likelihood(l, x);
  ll.sum().backward();
  EXPECT_TRUE(torch::allclose(x.grad(), l.detach(), 1e-6, 1e-6));
}

TEST_F(VaeTest, FusedAdamGivesTheSameParametersOnOneAndTwoThreads) {
  auto run = [](int n) {
    ThreadCount threads(n);
    torch::manual_seed(9);
    std::vector<torch::Tensor> params{torch::randn({300, 500}).requires_grad_(true), torch::randn({500}).requires_grad_(true)};
    FusedAdam adam(params, torch::optim::AdamOptions(1e-3));
    for (int step = 0; step < 5; ++step) {
      for (auto& p : params) p.mutable_grad() = torch::randn_like(p);
      adam.step();
    }
    return params;
  };
  auto one = run(1), two = run(2);  // 150k elements: split at 2 threads
  for (size_t i = 0; i < one.size(); ++i) EXPECT_TRUE(torch::equal(one[i], two[i]));
}

TEST_F(VaeTest, FusedAdamMatchesTorchAdamAndSharesItsCheckpoints) {
  auto make = [] {
    torch::manual_seed(3);
    return std::vector<torch::Tensor>{torch::randn({37, 5}).requires_grad_(true), torch::randn({7}).requires_grad_(true)};
  };
  auto a = make(), b = make();
  auto options = torch::optim::AdamOptions(1e-2).betas(std::make_tuple(0.5, 0.999)).eps(1e-6);
  torch::optim::Adam reference(a, options);
  FusedAdam fused(b, options);
  for (int step = 0; step < 25; ++step) {
    torch::manual_seed(100 + step);
    auto g0 = torch::randn({37, 5}), g1 = torch::randn({7}) * 1e-3;
    for (auto* params : {&a, &b}) {
      (*params)[0].mutable_grad() = g0.clone();
      (*params)[1].mutable_grad() = g1.clone();
    }
    reference.step();
    fused.step();
    // The fused step zeroes the gradients it read, in its own pass, and keeps them.
    for (auto& p : b) EXPECT_TRUE(p.grad().defined() && p.grad().eq(0).all().item<bool>());
  }
  for (size_t i = 0; i < a.size(); ++i)
    EXPECT_TRUE(torch::allclose(a[i], b[i], 1e-5, 1e-6)) << (a[i] - b[i]).abs().max();
  // The fused optimiser's state loads into torch's Adam and continues identically.
  std::stringstream buffer;
  {
    torch::serialize::OutputArchive archive;
    fused.save(archive);
    archive.save_to(buffer);
  }
  auto c = std::vector<torch::Tensor>{b[0].detach().clone().requires_grad_(true), b[1].detach().clone().requires_grad_(true)};
  torch::optim::Adam resumed(c, options);
  {
    torch::serialize::InputArchive archive;
    archive.load_from(buffer);
    resumed.load(archive);
  }
  for (auto* params : {&b, &c}) {
    (*params)[0].mutable_grad() = torch::ones({37, 5});
    (*params)[1].mutable_grad() = torch::ones({7});
  }
  fused.step();
  resumed.step();
  for (size_t i = 0; i < b.size(); ++i) EXPECT_TRUE(torch::allclose(b[i], c[i], 1e-5, 1e-6));
}

TEST_F(VaeTest, FusedAdamFlushesDenormalMomentsOnlyInsideItsUpdate) {
  // A parameter whose gradient stays zero (a dead unit): m halves every step and would reach
  // the denormal range after about 130 steps. The fused update flushes it to zero; the
  // parameters still match LibTorch's Adam, and the caller's arithmetic keeps its denormals.
  auto a = std::vector<torch::Tensor>{torch::randn({64, 9}).requires_grad_(true)};
  auto b = std::vector<torch::Tensor>{a[0].detach().clone().requires_grad_(true)};
  auto options = torch::optim::AdamOptions(1e-3).betas(std::make_tuple(0.5, 0.999));
  torch::optim::Adam reference(a, options);
  FusedAdam fused(b, options);
  for (int step = 0; step < 140; ++step) {  // 0.5^137: denormal unless flushed
    auto g = step < 3 ? torch::randn({64, 9}) : torch::zeros({64, 9});
    a[0].mutable_grad() = g.clone();
    b[0].mutable_grad() = g.clone();
    reference.step();
    fused.step();
  }
  EXPECT_TRUE(torch::allclose(a[0], b[0], 1e-6, 1e-7)) << (a[0] - b[0]).abs().max();
  auto denormals = [](const torch::Tensor& t) {
    auto m = t.abs();
    return (m.gt(0) & m.lt(std::numeric_limits<float>::min())).sum().item<int64_t>();
  };
  auto& ref_state = static_cast<torch::optim::AdamParamState&>(*reference.state().begin()->second);
  ASSERT_GT(denormals(ref_state.exp_avg()), 0) << "LibTorch's m should be denormal here";
  auto& state = static_cast<torch::optim::AdamParamState&>(*fused.state().begin()->second);
  EXPECT_EQ(denormals(state.exp_avg()), 0) << "m should have been flushed to zero";
  EXPECT_GT(state.exp_avg_sq().abs().min().item<float>(), 0.0f) << "v (beta2 0.999) is still normal";
  volatile float tiny = 1e-38f;
  EXPECT_GT(tiny / 16.0f, 0.0f) << "flush-to-zero leaked out of the update";
}

TEST_F(VaeTest, ChannelsLastTransposedConvolutionMatchesLibTorch) {
  struct Case {
    int64_t n, h, cin, cout, k, stride, padding;
    bool bias;
  };
  // The reference decoder's four layers, then a batch of several chunks, no bias, and padding
  // that cuts taps on both sides.
  for (const auto& c : std::vector<Case>{{3, 1, 16, 512, 4, 1, 0, true},
                                         {3, 4, 512, 256, 3, 2, 1, true},
                                         {2, 7, 256, 128, 4, 2, 1, true},
                                         {5, 14, 128, 1, 4, 2, 1, true},
                                         {150, 4, 64, 200, 3, 2, 1, true},
                                         {4, 5, 6, 7, 5, 3, 2, false}}) {
    SCOPED_TRACE("n=" + std::to_string(c.n) + " h=" + std::to_string(c.h) + " cin=" + std::to_string(c.cin) +
                 " cout=" + std::to_string(c.cout) + " k=" + std::to_string(c.k));
    auto x = torch::randn({c.n, c.cin, c.h, c.h}, torch::requires_grad());
    auto w = (torch::randn({c.cin, c.cout, c.k, c.k}) / std::sqrt(double(c.cin))).requires_grad_(true);
    auto b = c.bias ? torch::randn({c.cout}, torch::requires_grad()) : torch::Tensor();
    auto expected = torch::conv_transpose2d(x, w, b, c.stride, c.padding);
    auto x2 = x.detach().permute({0, 2, 3, 1}).contiguous().requires_grad_(true);
    auto w2 = w.detach().clone().requires_grad_(true);
    auto b2 = c.bias ? b.detach().clone().requires_grad_(true) : torch::Tensor();
    auto got = conv_transpose2d_nhwc(x2, w2, b2, c.stride, c.padding);
    ASSERT_EQ(got.permute({0, 3, 1, 2}).sizes(), expected.sizes());
    EXPECT_TRUE(torch::allclose(got.permute({0, 3, 1, 2}), expected, 1e-4, 1e-4))
        << (got.permute({0, 3, 1, 2}) - expected).abs().max();
    auto weights = torch::randn_like(expected);
    (expected * weights).sum().backward();
    (got * weights.permute({0, 2, 3, 1})).sum().backward();
    EXPECT_TRUE(torch::allclose(x2.grad().permute({0, 3, 1, 2}), x.grad(), 1e-4, 1e-3))
        << (x2.grad().permute({0, 3, 1, 2}) - x.grad()).abs().max();
    EXPECT_TRUE(torch::allclose(w2.grad(), w.grad(), 1e-4, 1e-2)) << (w2.grad() - w.grad()).abs().max();
    if (c.bias) EXPECT_TRUE(torch::allclose(b2.grad(), b.grad(), 1e-4, 1e-2)) << (b2.grad() - b.grad()).abs().max();
  }
}

TEST_F(VaeTest, ConvDecoderGivesLibTorchsLogits) {
  auto decoder = make_decoder(NetworkOptions().architecture("conv").latent_dim(5));
  auto z = torch::randn({2, 3, 5});
  auto logits = decoder->params(z);
  ASSERT_EQ(logits.sizes(), torch::IntArrayRef({2, 3, 784}));
  // The same modules run as LibTorch runs them, NCHW.
  auto net = decoder->children().at(0)->as<torch::nn::Sequential>();
  ASSERT_NE(net, nullptr);
  auto expected = net->forward(z.reshape({-1, 5, 1, 1})).reshape({2, 3, 784});
  EXPECT_TRUE(torch::allclose(logits, expected, 1e-4, 1e-4)) << (logits - expected).abs().max();
}

// An MLP with every kind of layer the fused forward knows, and one it does not.
static torch::nn::Sequential fused_test_mlp(int64_t in, int64_t hidden) {
  namespace nn = torch::nn;
  return nn::Sequential(nn::Linear(in, hidden), nn::ReLU(), nn::Linear(hidden, hidden),
                        nn::LeakyReLU(nn::LeakyReLUOptions().negative_slope(0.2)), nn::Linear(hidden, hidden),
                        nn::LeakyReLU(nn::LeakyReLUOptions().negative_slope(-0.5)), nn::Linear(hidden, hidden), nn::Tanh(),
                        nn::Linear(nn::LinearOptions(hidden, 3).bias(false)));
}

static std::vector<torch::Tensor> copy_parameters(torch::nn::Sequential& from, torch::nn::Sequential& to) {
  torch::NoGradGuard no_grad;
  auto a = from->parameters(), b = to->parameters();
  for (size_t i = 0; i < a.size(); ++i) b[i].copy_(a[i]);
  return b;
}

TEST_F(VaeTest, FusedMlpMatchesAutogradOnOneAndTwoThreads) {
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    // 8,192 rows of 300: enough values for the backward pass to split at 2 threads.
    for (int64_t rows : {5, 8192}) {
      auto plain = fused_test_mlp(7, 300), fused = fused_test_mlp(7, 300);
      copy_parameters(plain, fused);
      auto x = torch::randn({rows, 7});
      auto weights = torch::randn({rows, 3});
      auto xa = x.clone().requires_grad_(true), xb = x.clone().requires_grad_(true);
      auto ya = plain->forward(xa), yb = fused_mlp_forward(fused, xb);
      EXPECT_TRUE(torch::allclose(ya, yb, 1e-5, 1e-5)) << (ya - yb).abs().max();
      (ya * weights).sum().backward();
      // Pre-set gradients: the fused backward adds into them in place, as autograd does.
      auto pa = plain->parameters(), pb = fused->parameters();
      std::vector<void*> where;
      for (size_t i = 0; i < pb.size(); ++i) {
        pb[i].mutable_grad() = torch::ones_like(pb[i]);
        where.push_back(pb[i].grad().data_ptr());
      }
      (yb * weights).sum().backward();
      EXPECT_TRUE(torch::allclose(xa.grad(), xb.grad(), 1e-4, 1e-5)) << (xa.grad() - xb.grad()).abs().max();
      for (size_t i = 0; i < pa.size(); ++i) {
        auto expected = pa[i].grad() + 1;
        EXPECT_TRUE(torch::allclose(pb[i].grad(), expected, 1e-4, 1e-3))
            << "parameter " << i << " at " << threads << " threads, " << rows << " rows: "
            << (pb[i].grad() - expected).abs().max();
        EXPECT_EQ(pb[i].grad().data_ptr(), where[i]) << "parameter " << i << " got a new gradient tensor";
      }
      // Without gradients the forward is the same.
      torch::NoGradGuard no_grad;
      EXPECT_TRUE(torch::allclose(plain->forward(x), fused_mlp_forward(fused, x), 1e-5, 1e-5));
    }
  }
  set_num_threads(1);
}

TEST_F(VaeTest, FusedMlpUnderAutogradGradLeavesParameterGradientsAlone) {
  auto plain = fused_test_mlp(4, 16), fused = fused_test_mlp(4, 16);
  auto pb = copy_parameters(plain, fused);
  auto x = torch::randn({6, 4});
  auto xa = x.clone().requires_grad_(true), xb = x.clone().requires_grad_(true);
  auto pa = plain->parameters();
  // With respect to the input (as Langevin asks), and with respect to a weight.
  auto ga = torch::autograd::grad({plain->forward(xa).sum()}, {xa, pa[2]});
  auto gb = torch::autograd::grad({fused_mlp_forward(fused, xb).sum()}, {xb, pb[2]});
  EXPECT_TRUE(torch::allclose(ga[0], gb[0], 1e-5, 1e-5));
  EXPECT_TRUE(torch::allclose(ga[1], gb[1], 1e-5, 1e-5));
  for (const auto& p : pb) EXPECT_FALSE(p.grad().defined());
}

TEST_F(VaeTest, EntropyAndLogProbByHand) {
  DiagonalGaussian q{torch::tensor({{0.5, -1.0}}, torch::kDouble), torch::tensor({{0.0, std::log(4.0)}}, torch::kDouble)};
  const double l2pi = std::log(2 * M_PI);
  EXPECT_NEAR(q.entropy().item<double>(), 0.5 * (1 + l2pi) + 0.5 * (std::log(4.0) + 1 + l2pi), 1e-12);
  auto z = torch::tensor({{1.5, 1.0}}, torch::kDouble);
  double expected = -0.5 * (l2pi + 1.0) - 0.5 * (l2pi + std::log(4.0) + 4.0 / 4.0);
  EXPECT_NEAR(q.log_prob(z).item<double>(), expected, 1e-12);
}

TEST_F(VaeTest, AnalyticKlMatchesMonteCarlo) {
  DiagonalGaussian q{torch::tensor({{0.5, -1.0, 2.0}}, torch::kDouble),
                     torch::tensor({{0.0, -1.0, 0.7}}, torch::kDouble)};
  GaussianPrior prior(3);
  auto gen = make_generator(5);
  auto z = q.rsample(400000, gen);
  auto analytic = -(q.entropy() + prior.expected_log_prob(q, z)).item<double>();
  // Closed form of KL(N(mu, s^2) || N(0, 1)) summed over dimensions.
  auto mu = q.mu, lv = q.logvar;
  double closed = (0.5 * (mu * mu + torch::exp(lv) - 1 - lv)).sum().item<double>();
  EXPECT_NEAR(analytic, closed, 1e-10);
  auto mc = (q.log_prob(z) - standard_normal_log_prob(z)).mean().item<double>();
  EXPECT_NEAR(mc, closed, 0.01);
}

TEST_F(VaeTest, ElboTermsAddUp) {
  VaeModel model(NetworkOptions().hidden({8}).latent_dim(2).image_shape({1, 2, 3}), PriorOptions("gaussian", 2));
  auto objective = make_objective("exact");
  auto x = torch::tensor({{1.f, 0.f, 1.f, 1.f, 0.f, 0.f}, {0.f, 0.f, 1.f, 0.f, 1.f, 1.f}});
  auto gen = make_generator(1);
  auto terms = elbo_terms(model, *objective, x, 3, gen);
  EXPECT_EQ(terms.total.sizes(), (std::vector<int64_t>{2}));
  EXPECT_TRUE(torch::allclose(terms.total, terms.reconstruction - terms.kl));
  // With a Gaussian prior, kl is the closed form KL(q || N(0, I)).
  auto q = model.encoder->forward(x);
  auto closed = (0.5 * (q.mu * q.mu + torch::exp(q.logvar) - 1 - q.logvar)).sum(-1);
  EXPECT_TRUE(torch::allclose(terms.kl, closed, 1e-5, 1e-5));
  // The reconstruction is the mean over the same K samples the generator gives.
  auto gen2 = make_generator(1);
  auto z = q.rsample(3, gen2);
  auto recon = bernoulli_log_likelihood(model.decoder->params(z), x).mean(0);
  EXPECT_TRUE(torch::allclose(terms.reconstruction, recon));
}

TEST_F(VaeTest, ConvNetworksHaveTheReferenceShapes) {
  auto options = NetworkOptions().architecture("conv").latent_dim(5);
  auto enc = make_encoder(options);
  auto dec = make_decoder(options);
  auto q = enc->forward(torch::rand({3, 784}));
  EXPECT_EQ(q.mu.sizes(), (std::vector<int64_t>{3, 5}));
  EXPECT_EQ(dec->params(torch::randn({2, 3, 5})).sizes(), (std::vector<int64_t>{2, 3, 784}));
  EXPECT_THROW(make_encoder(NetworkOptions().architecture("conv").image_shape({1, 6, 6})), std::invalid_argument);
  EXPECT_THROW(make_encoder(NetworkOptions().architecture("resnet")), std::invalid_argument);
  EXPECT_THROW(make_encoder(NetworkOptions().activation("gelu")), std::invalid_argument);
}

// ---- M parameters per value and the conv family -------------------------------------------

static int64_t parameter_count(torch::nn::Module& module) {
  int64_t n = 0;
  for (const auto& p : module.parameters()) n += p.numel();
  return n;
}

static int64_t product(const std::vector<int64_t>& sizes) {
  int64_t n = 1;
  for (auto s : sizes) n *= s;
  return n;
}

TEST_F(VaeTest, NetworksGiveMParametersPerValueForEveryShape) {
  struct Case {
    std::string architecture;
    std::vector<int64_t> shape;
    int64_t m, width;
  };
  for (const auto& c : std::vector<Case>{{"conv", {1, 28, 28}, 1, 64},
                                         {"conv", {1, 28, 28}, 2, 64},
                                         {"conv", {3, 32, 32}, 1, 8},
                                         {"conv", {3, 32, 32}, 3, 8},
                                         {"conv", {3, 64, 64}, 1, 4},
                                         {"conv", {3, 20, 24}, 2, 4},
                                         {"conv", {1, 8, 8}, 1, 2},
                                         {"mlp", {3, 32, 32}, 2, 64},
                                         {"mlp", {10}, 3, 64}}) {
    const auto options = NetworkOptions()
                             .architecture(c.architecture)
                             .hidden({32})
                             .latent_dim(5)
                             .image_shape(c.shape)
                             .outputs_per_value(c.m)
                             .conv_width(c.width);
    SCOPED_TRACE(c.architecture + " " + std::to_string(product(c.shape)) + " M=" + std::to_string(c.m));
    auto encoder = make_encoder(options);
    auto decoder = make_decoder(options);
    const int64_t p = product(c.shape);
    auto q = encoder->forward(torch::rand({3, p}));
    EXPECT_EQ(q.mu.sizes(), (std::vector<int64_t>{3, 5}));
    EXPECT_EQ(q.logvar.sizes(), (std::vector<int64_t>{3, 5}));
    EXPECT_EQ(decoder->params(torch::randn({2, 3, 5})).sizes(), (std::vector<int64_t>{2, 3, c.m * p}));
    EXPECT_EQ(decoder->params(torch::randn({4, 5})).sizes(), (std::vector<int64_t>{4, c.m * p}));
    // The memory check's count is the networks' own.
    EXPECT_EQ(network_parameters(options), double(parameter_count(*encoder) + parameter_count(*decoder)));
  }
}

TEST_F(VaeTest, ReferenceConvNetworksAreUnchangedForOneParameterPerValue) {
  auto reference = NetworkOptions().architecture("conv").latent_dim(16);
  ASSERT_TRUE(reference.conv_reference());
  auto encoder = make_encoder(reference);
  auto decoder = make_decoder(reference);
  std::vector<std::string> names;
  for (const auto& p : encoder->named_parameters()) names.push_back(p.key() + c10::str(p.value().sizes()));
  for (const auto& p : decoder->named_parameters()) names.push_back(p.key() + c10::str(p.value().sizes()));
  EXPECT_EQ(names, (std::vector<std::string>{
                       "net.0.weight[32, 1, 5, 5]", "net.0.bias[32]", "net.2.weight[64, 32, 5, 5]", "net.2.bias[64]",
                       "net.4.weight[128, 64, 5, 5]", "net.4.bias[128]", "net.7.weight[32, 2048]", "net.7.bias[32]",
                       "net.0.weight[16, 512, 4, 4]", "net.0.bias[512]", "net.2.weight[512, 256, 3, 3]",
                       "net.2.bias[256]", "net.4.weight[256, 128, 4, 4]", "net.4.bias[128]",
                       "net.6.weight[128, 1, 4, 4]", "net.6.bias[1]"}));
  auto two = make_decoder(NetworkOptions().architecture("conv").latent_dim(16).outputs_per_value(2));
  EXPECT_EQ(two->named_parameters()["net.6.weight"].sizes(), (std::vector<int64_t>{128, 2, 4, 4}));
}

// Parameter j of value p at j P + p, values in C, H, W order: with the last layer's weights
// zero and bias[k] = k, output channel k = j C + c holds k everywhere.
TEST_F(VaeTest, DecoderParametersAreLaidOutParameterMajorThenChannelsRowsColumns) {
  for (const auto& shape : std::vector<std::vector<int64_t>>{{1, 28, 28}, {3, 20, 24}, {2, 16, 16}}) {
    const int64_t m = 3, c = shape[0], p = product(shape);
    auto decoder = make_decoder(
        NetworkOptions().architecture("conv").latent_dim(4).image_shape(shape).outputs_per_value(m).conv_width(4));
    torch::Tensor last_weight, last_bias;
    for (const auto& item : decoder->named_parameters()) {
      if (item.key().find("weight") != std::string::npos) last_weight = item.value();
      if (item.key().find("bias") != std::string::npos) last_bias = item.value();
    }
    ASSERT_EQ(last_bias.numel(), m * c);
    {
      torch::NoGradGuard no_grad;
      last_weight.zero_();
      last_bias.copy_(torch::arange(m * c, torch::kFloat));
    }
    auto params = decoder->params(torch::randn({2, 4}));
    ASSERT_EQ(params.sizes(), (std::vector<int64_t>{2, m * p}));
    auto expected = torch::arange(m * c, torch::kFloat).view({1, m, c, 1}).expand({2, m, c, p / c});
    EXPECT_TRUE(torch::equal(params.view({2, m, c, p / c}), expected)) << "shape " << c10::str(shape);
  }
}

// The channels-last decoders against the same modules run by LibTorch, NCHW, with the
// family's central crop: the values of every parameter, channel, row and column.
TEST_F(VaeTest, ConvDecodersMatchLibTorchNchwWithTheCrop) {
  for (const auto& shape : std::vector<std::vector<int64_t>>{{1, 28, 28}, {3, 20, 24}, {3, 32, 32}}) {
    const int64_t m = 2, c = shape[0], h = shape[1], w = shape[2];
    const auto options =
        NetworkOptions().architecture("conv").latent_dim(5).image_shape(shape).outputs_per_value(m).conv_width(4);
    auto decoder = make_decoder(options);
    auto net = decoder->children().at(0)->as<torch::nn::Sequential>();
    ASSERT_NE(net, nullptr);
    auto z = torch::randn({2, 3, 5});
    auto maps = net->forward(z.reshape({-1, 5, 1, 1}));  // [N, M C, canvas]
    if (!options.conv_reference()) {
      const auto g = conv_family_geometry(options);
      ASSERT_EQ(maps.size(2), g.canvas_h);
      ASSERT_EQ(maps.size(3), g.canvas_w);
      maps = maps.narrow(2, g.top, h).narrow(3, g.left, w);
    }
    auto expected = maps.reshape({2, 3, m * c * h * w});
    auto params = decoder->params(z);
    EXPECT_TRUE(torch::allclose(params, expected, 1e-4, 1e-4)) << (params - expected).abs().max();
    // Other types take LibTorch's transposed convolution.
    decoder->to(torch::kDouble);
    auto doubled = decoder->params(z.to(torch::kDouble));
    EXPECT_TRUE(torch::allclose(doubled.to(torch::kFloat), expected, 1e-4, 1e-4));
  }
}

TEST_F(VaeTest, ConvFamilyHasPangEtAlsShapeAndCropsCentrally) {
  // 3x32x32, w = 64: 512@4x4 -> 256@8x8 -> 128@16x16 -> 3@32x32; the encoder's mirror.
  const auto cifar = NetworkOptions().architecture("conv").image_shape({3, 32, 32}).latent_dim(16);
  EXPECT_FALSE(cifar.conv_reference());
  auto g = conv_family_geometry(cifar);
  EXPECT_EQ(g.stages, 3);
  EXPECT_EQ(g.decoder_channels, (std::vector<int64_t>{512, 256, 128, 3}));
  EXPECT_EQ(g.encoder_channels, (std::vector<int64_t>{3, 64, 128, 256}));
  EXPECT_EQ(std::vector<int64_t>({g.start_h, g.start_w, g.canvas_h, g.canvas_w, g.top, g.left}),
            (std::vector<int64_t>{4, 4, 32, 32, 0, 0}));
  auto decoder = make_decoder(cifar);
  auto params = decoder->named_parameters();
  EXPECT_EQ(params["net.0.weight"].sizes(), (std::vector<int64_t>{16, 512, 4, 4}));
  EXPECT_EQ(params["net.2.weight"].sizes(), (std::vector<int64_t>{512, 256, 4, 4}));
  EXPECT_EQ(params["net.4.weight"].sizes(), (std::vector<int64_t>{256, 128, 4, 4}));
  EXPECT_EQ(params["net.6.weight"].sizes(), (std::vector<int64_t>{128, 3, 4, 4}));
  auto encoder = make_encoder(cifar);
  EXPECT_EQ(encoder->named_parameters()["net.7.weight"].sizes(), (std::vector<int64_t>{32, 256 * 4 * 4}));
  EXPECT_EQ(network_parameters(cifar), 2759555 + 789984) << "the README's count";
  // 64x64: four stages from 4x4, channels halving from 8w; the encoder's stop at 8w.
  g = conv_family_geometry(NetworkOptions().architecture("conv").image_shape({3, 64, 64}).conv_width(2));
  EXPECT_EQ(g.decoder_channels, (std::vector<int64_t>{16, 8, 4, 2, 3}));
  g = conv_family_geometry(NetworkOptions().architecture("conv").image_shape({1, 128, 128}).conv_width(2));
  EXPECT_EQ(g.encoder_channels, (std::vector<int64_t>{1, 2, 4, 8, 16, 16}));
  // 20x24: three stages from 3x3 (24 is nearer 4 2^3 than 4 2^2), a 24x24 canvas cut to 20 rows, 2 off the top.
  g = conv_family_geometry(NetworkOptions().architecture("conv").image_shape({3, 20, 24}));
  EXPECT_EQ(std::vector<int64_t>({g.stages, g.start_h, g.start_w, g.canvas_h, g.canvas_w, g.top, g.left}),
            (std::vector<int64_t>{3, 3, 3, 24, 24, 2, 0}));
  // 3x28x28 (not the reference: three channels): 4x4 to 32x32, cut to 28 (2 off each side).
  g = conv_family_geometry(NetworkOptions().architecture("conv").image_shape({3, 28, 28}));
  EXPECT_EQ(std::vector<int64_t>({g.stages, g.start_h, g.canvas_h, g.top, g.left}),
            (std::vector<int64_t>{3, 4, 32, 2, 2}));
  // 8x8: one stage; 9x9 from 5x5 to 10x10 (the odd row and column off the bottom and right).
  g = conv_family_geometry(NetworkOptions().architecture("conv").image_shape({1, 9, 9}));
  EXPECT_EQ(std::vector<int64_t>({g.stages, g.start_h, g.canvas_h, g.top}), (std::vector<int64_t>{1, 5, 10, 0}));
}

TEST_F(VaeTest, ConvFamilyEncoderPadsCentrally) {
  // A 3x20x24 image padded to the 24x24 canvas, 2 rows of zeros above and below: the encoder
  // sees the image where an NCHW run of its modules on the padded image sees it.
  const auto options = NetworkOptions().architecture("conv").image_shape({3, 20, 24}).latent_dim(3).conv_width(4);
  auto encoder = make_encoder(options);
  auto x = torch::rand({2, 3 * 20 * 24});
  auto padded = torch::zeros({2, 3, 24, 24});
  padded.narrow(2, 2, 20).copy_(x.view({2, 3, 20, 24}));
  auto net = encoder->children().at(0)->as<torch::nn::Sequential>();
  auto expected = net->forward(padded);
  auto q = encoder->forward(x);
  EXPECT_TRUE(torch::allclose(q.mu, expected.narrow(1, 0, 3)));
  EXPECT_TRUE(torch::allclose(q.logvar, expected.narrow(1, 3, 3)));
}

TEST_F(VaeTest, ConvFamilyLearnsToReconstructA32x32ColourBatch) {
  const auto options = NetworkOptions().architecture("conv").image_shape({3, 32, 32}).latent_dim(8).conv_width(8);
  auto encoder = make_encoder(options);
  auto decoder = make_decoder(options);
  auto gen = make_generator(5);
  // Colour blobs: each image lights a quadrant of one channel (of 12 patterns), with noise.
  auto pattern = torch::zeros({12, 3, 32, 32});
  for (int64_t k = 0; k < 12; ++k)
    pattern[k].select(0, k % 3).narrow(0, 16 * (k / 3 % 2), 16).narrow(1, 16 * (k / 6), 16).fill_(1.0);
  auto x = torch::bernoulli(0.02 + 0.9 * pattern.narrow(0, 0, 8).reshape({8, 3 * 32 * 32}), gen);
  std::vector<torch::Tensor> parameters = encoder->parameters();
  for (const auto& p : decoder->parameters()) parameters.push_back(p);
  torch::optim::Adam adam(parameters, torch::optim::AdamOptions(2e-3));
  auto loss = [&] { return -bernoulli_log_likelihood(decoder->params(encoder->forward(x).mu), x).mean(); };
  const double first = loss().item<double>();
  for (int step = 0; step < 15; ++step) {
    adam.zero_grad();
    auto l = loss();
    l.backward();
    adam.step();
  }
  const double last = loss().item<double>();
  EXPECT_LT(last, 0.9 * first) << "first " << first << ", last " << last;
}

TEST_F(VaeTest, ConvValidationNamesTheOptionAndSaysWhy) {
  auto conv = [](std::vector<int64_t> shape) { return NetworkOptions().architecture("conv").image_shape(shape); };
  auto option_of = [](const NetworkOptions& o) {
    try {
      o.validate();
    } catch (const OptionError& e) {
      return e.option;
    }
    return std::string("(none)");
  };
  EXPECT_THROW_WITH(conv({784}).validate(), "flat");
  EXPECT_THROW_WITH(conv({784}).validate(), "use mlp");
  EXPECT_EQ(option_of(conv({784})), "architecture");
  EXPECT_THROW_WITH(conv({3, 6, 32}).validate(), "at least 8x8");
  EXPECT_THROW_WITH(conv({3, 32, 7}).validate(), "3x32x7");
  EXPECT_THROW_WITH(conv({5, 32, 32}).validate(), "1 to 4 channels");
  EXPECT_THROW_WITH(conv({5, 32, 32}).validate(), "PNG");
  EXPECT_EQ(option_of(conv({5, 32, 32})), "architecture");
  EXPECT_EQ(option_of(conv({3, 32, 32}).conv_width(0)), "conv-width");
  EXPECT_EQ(option_of(NetworkOptions().conv_width(0)), "conv-width");
  EXPECT_EQ(option_of(NetworkOptions().outputs_per_value(0)), "outputs-per-value");
  EXPECT_EQ(option_of(conv({4, 8, 8})), "(none)");
  EXPECT_EQ(option_of(NetworkOptions().image_shape({5, 2, 2})), "(none)") << "mlp takes any shape";
  EXPECT_THROW(network_parameters(conv({784})), OptionError);
}

// With f(z) = c^T z the prior is N(-c, I) with log Z = |c|^2 / 2: the SNELBO's prior term
// (with the exact Z) never exceeds E_q[log p(z)], and equals it when b = log Z.
TEST_F(VaeTest, SnelboPriorTermIsBelowTheExactOne) {
  auto prior = std::make_shared<EnergyPrior>(2, std::vector<int64_t>{}, 0.2);
  const std::vector<float> c{0.7f, -0.4f};
  {
    torch::NoGradGuard no_grad;
    prior->f->ptr<torch::nn::LinearImpl>(0)->weight.copy_(torch::tensor(c).unsqueeze(0));
  }
  const double log_z = 0.5 * (0.49 + 0.16);
  prior->set_log_z_estimate(log_z);
  DiagonalGaussian q{torch::tensor({{0.3f, -0.2f}, {-1.0f, 0.5f}}), torch::tensor({{-0.3f, 0.1f}, {0.0f, -1.0f}})};
  auto gen = make_generator(8);
  auto z = q.rsample(5, gen);
  auto exact = (standard_normal_log_prob(z) - prior->energy(z)).mean(0) - log_z;
  // expected_log_prob uses E_q[log p0] in closed form: compare with the same.
  auto exact_closed = GaussianPrior(2).expected_log_prob(q, z) - prior->energy(z).mean(0) - log_z;
  for (double b : {-0.5, log_z, 1.5}) {
    {
      torch::NoGradGuard no_grad;
      prior->b.fill_(b);
    }
    auto bound = prior->expected_log_prob(q, z).detach();
    if (b == log_z) {
      EXPECT_TRUE(torch::allclose(bound, exact_closed.detach(), 1e-5, 1e-5));
    } else {
      EXPECT_TRUE((bound < exact_closed.detach()).all().item<bool>()) << "b = " << b;
    }
  }
  EXPECT_EQ(exact.sizes(), (std::vector<int64_t>{2}));
}

}  // namespace vae_ebm::test
