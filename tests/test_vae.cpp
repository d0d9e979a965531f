// The ELBO's terms against hand computations and closed forms.
#include <limits>
#include <cmath>
#include <sstream>

#include "data/seed.h"
#include "prior/energy.h"
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
  auto objective = make_objective("exact", ObjectiveOptions());
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
  EXPECT_THROW(make_encoder(NetworkOptions().architecture("conv").image_shape({1, 10, 10})), std::invalid_argument);
  EXPECT_THROW(make_encoder(NetworkOptions().architecture("resnet")), std::invalid_argument);
  EXPECT_THROW(make_encoder(NetworkOptions().activation("gelu")), std::invalid_argument);
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
