// The decoder's likelihoods (vae/likelihood.h) against closed forms, and end to end: a model on
// 8-bit grey data trained with the discretised logistic, evaluated in bits per dimension.
#include <cmath>
#include <map>

#include "apps/cli.h"
#include "apps/command.h"
#include "data/error.h"
#include "data/files.h"
#include "data/hdf5_io.h"
#include "report/json_read.h"
#include "tests/support.h"
#include "vae/likelihood.h"
#include "vae/model.h"

namespace vae_ebm::test {

class LikelihoodTest : public SeedingFixture {};

// Every value k/255 of one pixel, as a [256, 1] batch.
torch::Tensor all_levels() { return torch::arange(256, torch::kDouble).div(255.0).unsqueeze(1); }

TEST_F(LikelihoodTest, DiscretisedLogisticSumsToOneOverThe256Levels) {
  // Locations inside, at the edges of and outside [-1, 1]; scales from a fraction of a level
  // (the underflow branch) to wider than the range.
  for (double mu : {-1.3, -1.0, -0.37, 0.0, 0.5, 1.0, 1.2}) {
    for (double log_s : {-7.0, -5.5, -3.0, -1.0, 1.0}) {
      auto means = torch::full({256, 1, 1}, mu, torch::kDouble);
      auto log_scales = torch::full({256, 1, 1}, log_s, torch::kDouble);
      auto log_p = discretised_logistic_log_prob(torch::Tensor(), means, log_scales, all_levels());  // [256]
      EXPECT_NEAR(torch::logsumexp(log_p, 0).item<double>(), 0.0, 1e-4) << "mu " << mu << " log s " << log_s;
      EXPECT_TRUE((log_p <= 1e-9).all().item<bool>());
    }
  }
  // A mixture of three, with unequal weights.
  auto weights = torch::tensor({0.3, -1.0, 2.0}, torch::kDouble).reshape({1, 3, 1}).expand({256, 3, 1});
  auto means = torch::tensor({-0.8, 0.1, 0.95}, torch::kDouble).reshape({1, 3, 1}).expand({256, 3, 1});
  auto log_scales = torch::tensor({-4.0, -2.0, -6.0}, torch::kDouble).reshape({1, 3, 1}).expand({256, 3, 1});
  auto log_p = discretised_logistic_log_prob(weights, means, log_scales, all_levels());
  EXPECT_NEAR(torch::logsumexp(log_p, 0).item<double>(), 0.0, 1e-4);
}

TEST_F(LikelihoodTest, DiscretisedLogisticMatchesTheLogisticCdfInTheMiddle) {
  // P(x = k/255) = F(y + 1/255) - F(y - 1/255) with F the logistic CDF at (. - mu)/s, y = 2x - 1.
  const double mu = 0.1, s = 0.05;
  auto x = torch::tensor({{130.0 / 255}}, torch::kDouble);
  const double y = 2 * 130.0 / 255 - 1;
  auto cdf = [&](double v) { return 1.0 / (1.0 + std::exp(-(v - mu) / s)); };
  const double expected = std::log(cdf(y + 1.0 / 255) - cdf(y - 1.0 / 255));
  auto got = discretised_logistic_log_prob(torch::Tensor(), torch::full({1, 1, 1}, mu, torch::kDouble),
                                           torch::full({1, 1, 1}, std::log(s), torch::kDouble), x);
  EXPECT_NEAR(got.item<double>(), expected, 1e-9);
}

TEST_F(LikelihoodTest, LogisticLikelihoodLaysOutItsParametersAndDrawsLevels) {
  auto logistic = make_likelihood(LikelihoodOptions().kind("logistic"), 3);
  EXPECT_EQ(logistic->outputs_per_value(), 2);
  EXPECT_EQ(make_likelihood(LikelihoodOptions().kind("logistic").mixture(4), 3)->outputs_per_value(), 12);
  // [mu (3 values) | log s (3 values)]
  auto params = torch::tensor({{-1.0f, 0.0f, 0.6f, -7.0f, -7.0f, -7.0f}});
  auto mean = logistic->mean(params);
  EXPECT_TRUE(torch::allclose(mean, torch::tensor({{0.0f, 0.5f, 0.8f}}), 1e-6, 1e-6)) << mean;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(3);
  auto draws = logistic->sample(params.expand({1000, 6}), gen);
  EXPECT_TRUE(((draws * 255 - (draws * 255).round()).abs() < 1e-4).all().item<bool>());
  EXPECT_TRUE((draws >= 0).all().item<bool>() && (draws <= 1).all().item<bool>());
  EXPECT_NEAR(draws.select(1, 1).mean().item<double>(), 0.5, 0.01);
  // Most mass at the parameters' own level: log P of the mean image is close to 0 for tiny s.
  EXPECT_GT(logistic->log_prob(params, torch::tensor({{0.0f, 0.5f, 0.8f}})).item<double>(), -1.0);
}

TEST_F(LikelihoodTest, GaussianMatchesItsClosedForm) {
  // Fixed sigma, data seen as y = 2x - 1.
  auto fixed = make_likelihood(LikelihoodOptions().kind("gaussian").variance("fixed").sigma(0.3).range("-1,1"), 2);
  auto mu = torch::tensor({{0.2, -0.5}}, torch::kDouble);
  auto x = torch::tensor({{0.75, 0.1}}, torch::kDouble);
  double expected = 0;
  for (int i = 0; i < 2; ++i) {
    const double y = 2 * x[0][i].item<double>() - 1, m = mu[0][i].item<double>();
    expected += -0.5 * std::pow((y - m) / 0.3, 2) - std::log(0.3) - 0.5 * std::log(2 * M_PI);
  }
  EXPECT_NEAR(fixed->log_prob(mu, x).item<double>(), expected, 1e-9);
  EXPECT_TRUE(fixed->parameters().empty());
  EXPECT_FALSE(fixed->probability_mass());
  EXPECT_TRUE(torch::allclose(fixed->mean(mu), torch::tensor({{0.6, 0.25}}, torch::kDouble)));

  // Learned: one sigma per value, min_sigma + softplus(raw), starting at 0.2 of the range.
  auto learned = make_likelihood(LikelihoodOptions().kind("gaussian").min_sigma(0.01), 2);
  ASSERT_EQ(learned->parameters().size(), 1u);
  auto raw = learned->parameters()[0];
  EXPECT_NEAR((0.01 + torch::softplus(raw)).mean().item<double>(), 0.2, 1e-6);
  auto lp = learned->log_prob(mu.to(torch::kFloat), x.to(torch::kFloat));
  lp.sum().backward();
  EXPECT_TRUE(raw.grad().defined() && raw.grad().abs().sum().item<double>() > 0);
}

TEST_F(LikelihoodTest, BitsPerDimension) {
  EXPECT_DOUBLE_EQ(bits_per_dim(-784 * std::log(2.0), 784), 1.0);
  EXPECT_NEAR(bits_per_dim(-3072 * 8 * std::log(2.0), 3072), 8.0, 1e-12);  // a uniform 8-bit model
  EXPECT_DOUBLE_EQ(bits_per_dim(0.0, 10), 0.0);
}

TEST_F(LikelihoodTest, OptionsAndDataAreChecked) {
  EXPECT_THROW_WITH(LikelihoodOptions().kind("poisson").validate(), "bernoulli, gaussian, logistic");
  EXPECT_THROW_WITH(LikelihoodOptions().range("0,255").validate(), "must be 0,1 or -1,1");
  EXPECT_THROW_WITH(LikelihoodOptions().mixture(0).validate(), "between 1 and 100");
  EXPECT_THROW_WITH(LikelihoodOptions().sigma(-1).validate(), "positive");
  EXPECT_THROW_WITH(LikelihoodOptions().variance("free").validate(), "fixed or learned");
  auto logistic = make_likelihood(LikelihoodOptions().kind("logistic"), 4);
  EXPECT_EQ(logistic->check_data("grey", torch::tensor({{0.0f, 1.0f, 17.0f / 255, 254.0f / 255}}), false), "");
  EXPECT_THROW_WITH(logistic->check_data("hdf5:cont.h5", torch::tensor({{0.0f, 0.5f, 0.25f, 1.0f}}), false),
                    "needs 8-bit data");
  auto bernoulli = make_likelihood(LikelihoodOptions(), 4);
  EXPECT_EQ(bernoulli->check_data("binary", torch::tensor({{0.0f, 1.0f, 1.0f, 0.0f}}), true), "");
  EXPECT_NE(bernoulli->check_data("grey", torch::tensor({{0.0f, 0.5f, 1.0f, 0.0f}}), false).find("not bounds on the likelihood"),
            std::string::npos);
}

TEST_F(LikelihoodTest, TheModelSizesItsDecoderAndCheckpointsOnlyLearnedSigmas) {
  const auto net = NetworkOptions().hidden({8}).latent_dim(2).image_shape({1, 2, 3});
  VaeModel bernoulli(net, PriorOptions("gaussian", 2));
  VaeModel logistic(net, PriorOptions("gaussian", 2), LikelihoodOptions().kind("logistic").mixture(2));
  VaeModel gaussian(net, PriorOptions("gaussian", 2), LikelihoodOptions().kind("gaussian"));
  auto z = torch::randn({5, 4, 2});
  EXPECT_EQ(bernoulli.decoder->params(z).sizes(), (std::vector<int64_t>{5, 4, 6}));
  EXPECT_EQ(logistic.decoder->params(z).sizes(), (std::vector<int64_t>{5, 4, 36}));
  auto x = torch::randint(0, 256, {4, 6}).to(torch::kFloat).div(255);
  EXPECT_EQ(logistic.log_likelihood(z, x).sizes(), (std::vector<int64_t>{5, 4}));
  EXPECT_EQ(gaussian.decode_mean(z).sizes(), (std::vector<int64_t>{5, 4, 6}));
  auto names = [](const VaeModel& m) {
    std::vector<std::string> out;
    for (const auto& p : m.named_parameters()) out.push_back(p.key());
    return out;
  };
  for (const auto& n : names(bernoulli)) EXPECT_EQ(n.find("likelihood"), std::string::npos) << n;
  const auto g = names(gaussian);
  EXPECT_NE(std::find(g.begin(), g.end(), "likelihood.sigma_raw"), g.end());
  EXPECT_EQ(gaussian.vae_parameters().size(), bernoulli.vae_parameters().size() + 1);
}

// train and evaluate on 8-bit grey data (uint8 levels) with the discretised logistic.
TEST_F(LikelihoodTest, GreyDataTrainAndEvaluateInBitsPerDimension) {
  TempDir tmp;
  {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(7);
    H5Writer writer(tmp.file("grey.h5"));
    for (const auto& [name, n] : std::vector<std::pair<std::string, int64_t>>{{"train", 32}, {"validation", 8}, {"test", 8}})
      writer.write(name, torch::randint(0, 256, {n, 3, 4}, gen).to(torch::kUInt8));
    writer.write("float_train", torch::rand({4, 3, 4}));
    writer.close();
  }
  auto command = [](const std::string& name) -> const cli::Command& {
    for (const auto& c : cli::command_table())
      if (c.name == name) return c;
    throw std::logic_error("no command " + name);
  };
  const std::vector<std::string> train = {
      "--dataset", "hdf5:" + tmp.file("grey.h5"), "--hidden", "16", "--latent", "3", "--likelihood", "logistic",
      "--batch-size", "8", "--epochs", "2", "--eval-samples", "2", "--threads", "1", "--run-dir", tmp.file("run")};
  ASSERT_EQ(command("train").run(train), 0);
  ASSERT_EQ(command("evaluate").run({tmp.file("run"), "--samples", "4", "--threads", "1", "--quality-samples", "0"}), 0);
  const auto record = report::parse_json(read_file(tmp.file("run") + "/evaluation.json"));
  double elbo = NAN, bits = NAN;
  for (const auto& e : record.find("estimates")->as_array()) {
    if (e.text("estimator") == "ELBO_4" && e.text("units") == "nats") elbo = e.number("value");
    if (e.text("estimator") == "ELBO_4" && e.text("units") == "bits/dim") bits = e.number("value");
  }
  ASSERT_FALSE(std::isnan(elbo));
  EXPECT_NEAR(bits, -elbo / (12 * std::log(2.0)), 1e-9);
  EXPECT_GT(bits, 0.0);
  EXPECT_NE(record.text("likelihood").find("logistic"), std::string::npos);
  EXPECT_NE(record.text("bounds_on").find("probability"), std::string::npos);

  // The same flags on data that are not 8-bit are refused before training, naming the data.
  TempDir other;
  {
    H5Writer writer(other.file("float.h5"));
    for (const auto& [name, n] : std::vector<std::pair<std::string, int64_t>>{{"train", 8}, {"validation", 4}, {"test", 4}})
      writer.write(name, torch::rand({n, 3, 4}));
    writer.close();
  }
  auto bad = train;
  bad[1] = "hdf5:" + other.file("float.h5");
  bad.back() = other.file("run");
  EXPECT_THROW_WITH(command("train").run(bad), "needs 8-bit data");
  // A bad likelihood flag names the flag.
  auto flag = train;
  flag[7] = "poisson";
  EXPECT_THROW_WITH(command("train").run(flag), "unknown likelihood 'poisson' (valid: bernoulli, gaussian, logistic)");
}

// Colour images stored channels-last, the conv family with the discretised logistic (M = 2),
// an energy prior: train, evaluate in bits/dim and write colour sample grids.
TEST_F(LikelihoodTest, ColourImagesTrainWithTheConvFamilyAndSampleInColour) {
  TempDir tmp;
  {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(11);
    H5Writer writer(tmp.file("colour.h5"));
    for (const auto& [name, n] : std::vector<std::pair<std::string, int64_t>>{{"train", 16}, {"validation", 4}, {"test", 4}}) {
      writer.write(name, torch::randint(0, 256, {n, 8, 8, 3}, gen).to(torch::kUInt8));
      writer.attribute("/" + name, "layout", "NHWC");
    }
    writer.close();
  }
  auto command = [](const std::string& name) -> const cli::Command& {
    for (const auto& c : cli::command_table())
      if (c.name == name) return c;
    throw std::logic_error("no command " + name);
  };
  const auto run = tmp.file("run");
  ASSERT_EQ(command("train").run({"--dataset", "hdf5:" + tmp.file("colour.h5"), "--architecture", "conv", "--conv-width", "4",
                                  "--latent", "3", "--likelihood", "logistic", "--likelihood-mixture", "2", "--prior", "ebm",
                                  "--energy-hidden", "8", "--batch-size", "8", "--epochs", "1", "--eval-samples", "1",
                                  "--log-z-samples", "64", "--threads", "1", "--run-dir", run}),
            0);
  ASSERT_EQ(command("evaluate").run({run, "--samples", "2", "--log-z-samples", "256", "--log-z-method", "is", "--threads",
                                     "1", "--quality-samples", "0"}),
            0);
  const auto record = report::parse_json(read_file(run + "/evaluation.json"));
  int bits_rows = 0;
  for (const auto& e : record.find("estimates")->as_array()) bits_rows += e.text("units") == "bits/dim";
  EXPECT_EQ(bits_rows, 2);
  ASSERT_EQ(command("sample").run({run, "--count", "4", "--threads", "1"}), 0);
  // An 8-bit colour PNG: byte 25 of the header is the colour type, 2 for RGB.
  const auto png = read_file(run + "/samples/prior_draws.png");
  ASSERT_GT(png.size(), 26u);
  EXPECT_EQ(static_cast<int>(static_cast<unsigned char>(png[25])), 2);
}

}  // namespace vae_ebm::test
