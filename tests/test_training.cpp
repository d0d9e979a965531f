// The training loop: resume equals never stopping, checkpoints refuse bad files,
// post-hoc fitting leaves the VAE untouched.
#include <filesystem>
#include <fstream>

#include "common/error.h"
#include "data/error.h"
#include "data/files.h"
#include "data/json.h"
#include "data/run_dir.h"
#include "data/seed.h"
#include "tests/support.h"
#include "vae/trainer.h"

namespace vae_ebm::test {

class TrainingTest : public SeedingFixture {
 protected:
  torch::Tensor data() {
    auto gen = make_generator(99);
    return torch::bernoulli(torch::full({40, 12}, 0.3), gen);
  }
  std::shared_ptr<VaeModel> model(const std::string& prior) {
    torch::manual_seed(7);  // initialisation
    return std::make_shared<VaeModel>(NetworkOptions().hidden({16}).latent_dim(3).image_shape({12}),
                                      PriorOptions(prior, 3).energy_hidden({8, 8}).mog_components(2));
  }
  TrainOptions options(int64_t max_steps, const std::string& mode = "joint") {
    // 40 images in batches of 8: 5 steps an epoch, so 7 steps cross an epoch boundary.
    return TrainOptions().epochs(4).batch_size(8).lr(1e-2).prior_lr(1e-2).samples(2).seed(3).max_steps(max_steps)
        .mode(train_mode_from(mode)).log_every_seconds(1e9);
  }
  static void expect_identical(VaeModel& a, VaeModel& b) {
    auto pa = a.named_parameters(), pb = b.named_parameters();
    ASSERT_EQ(pa.size(), pb.size());
    for (const auto& item : pa) EXPECT_TRUE(torch::equal(item.value(), pb[item.key()])) << item.key();
  }
  void resume_equals_never_stopping(const std::string& prior, const std::string& mode = "joint",
                                    std::string objective = "", int64_t refine_steps = 0,
                                    const std::string& proposal = "base") {
    TempDir tmp;
    if (objective.empty()) objective = default_objective(prior);
    // Small MCMC settings; persistent chains for long-run-mcmc so that their buffer must resume too.
    auto objective_options =
        OptionValues()
            .set("base-samples", 16)
            .set("proposal", proposal)
            .set("mcmc-steps", 5)
            .set("negatives", 8)
            .set("persistent", objective == "long-run-mcmc")
            .set("buffer-size", 32);
    auto straight = model(prior);
    Trainer a(straight, make_objective(objective, objective_options), data(), options(14, mode).refine_steps(refine_steps),
              RunDir::create(tmp.file("straight")));
    ASSERT_TRUE(a.run());

    auto first = model(prior);
    auto dir = RunDir::create(tmp.file("stopped"));
    Trainer b(first, make_objective(objective, objective_options), data(), options(7, mode).refine_steps(refine_steps), dir);
    ASSERT_TRUE(b.run());
    auto resumed = model(prior);
    Trainer c(resumed, make_objective(objective, objective_options), data(), options(14, mode).refine_steps(refine_steps), dir);
    ASSERT_TRUE(c.resume_latest());
    EXPECT_EQ(c.state().step, 7);
    ASSERT_TRUE(c.run());
    EXPECT_EQ(c.state().step, 14);
    expect_identical(*straight, *resumed);
    // And training moved the parameters at all.
    auto untouched = model(prior);
    EXPECT_FALSE(torch::equal(untouched->encoder->parameters()[0], straight->encoder->parameters()[0]));
  }
};

TEST_F(TrainingTest, ResumeEqualsNeverStoppingGaussian) { resume_equals_never_stopping("gaussian"); }
TEST_F(TrainingTest, ResumeEqualsNeverStoppingMixture) { resume_equals_never_stopping("mog"); }
TEST_F(TrainingTest, ResumeEqualsNeverStoppingEnergyPriorAndB) { resume_equals_never_stopping("ebm"); }
TEST_F(TrainingTest, ResumeEqualsNeverStoppingDetachedPosterior) { resume_equals_never_stopping("ebm", "detach-posterior"); }
TEST_F(TrainingTest, ResumeEqualsNeverStoppingPersistentChains) { resume_equals_never_stopping("ebm", "joint", "long-run-mcmc"); }
TEST_F(TrainingTest, ResumeEqualsNeverStoppingShortRunMcmc) { resume_equals_never_stopping("ebm", "joint", "short-run-mcmc"); }
TEST_F(TrainingTest, ResumeEqualsNeverStoppingWithPosteriorRefinement) {
  resume_equals_never_stopping("ebm", "joint", "short-run-mcmc", 3);
}
TEST_F(TrainingTest, PosteriorRefinementNeedsTheEnergyPrior) {
  TempDir tmp;
  EXPECT_THROW(Trainer(model("gaussian"), make_objective("exact"), data(),
                       options(2).refine_steps(3), RunDir::create(tmp.file("r"))),
               std::invalid_argument);
}
TEST_F(TrainingTest, ResumeEqualsNeverStoppingNce) { resume_equals_never_stopping("ebm", "joint", "nce"); }
// The flow proposal's parameters and optimiser resume too.
TEST_F(TrainingTest, ResumeEqualsNeverStoppingFlowProposal) {
  resume_equals_never_stopping("ebm", "joint", "snelbo", 0, "flow");
}

// A finite training loss far above the recent median: --on-divergence stop raises Divergence
// with the step's terms; warn logs a "spike" event and takes the step.
TEST_F(TrainingTest, AFiniteSpikeStopsTheRunOrUnderWarnIsLoggedAndTaken) {
  const auto x = data().narrow(0, 0, 8);
  const auto spike = x * 100;  // Bernoulli terms scaled a hundredfold: finite, far above the median
  for (const auto policy : {DivergencePolicy::stop, DivergencePolicy::warn}) {
    TempDir tmp;
    auto dir = RunDir::create(tmp.file("run"));
    Trainer t(model("gaussian"), make_objective("exact"), data(),
              options(100).on_divergence(policy), dir);
    for (int i = 0; i < 20; ++i) t.step(x);
    if (policy == DivergencePolicy::stop) {
      try {
        t.step(spike);
        ADD_FAILURE() << "a spike under stop must raise Divergence";
      } catch (const Divergence& d) {
        EXPECT_EQ(d.quantity, "training loss");
        EXPECT_GT(d.value, 1000.0);
        EXPECT_TRUE(std::isfinite(d.value));
        EXPECT_EQ(d.diagnostics.count("kl"), 1u);
      }
    } else {
      const auto before = t.model().vae_parameters()[0].detach().clone();
      const auto terms = t.step(spike);
      EXPECT_GT(terms.at("loss"), 1000.0);
      EXPECT_FALSE(torch::equal(before, t.model().vae_parameters()[0])) << "the step was taken";
      const auto metrics = read_file(dir.path() + "/metrics.jsonl");
      EXPECT_NE(metrics.find(R"({"event":"spike","step":1,"quantity":"training loss","value":)"), std::string::npos)
          << metrics;
      EXPECT_NE(metrics.find(R"("diagnostics":{"kl":)"), std::string::npos) << metrics;
    }
  }
}

TEST_F(TrainingTest, TruncatedCheckpointIsRefusedAndTheRunDirectoryKept) {
  TempDir tmp;
  auto dir = RunDir::create(tmp.file("run"));
  Trainer t(model("ebm"), make_objective("snelbo"), data(), options(3), dir);
  ASSERT_TRUE(t.run());
  auto checkpoints = dir.checkpoints();
  ASSERT_EQ(checkpoints.size(), 1u);
  auto good = read_file(checkpoints[0]);
  auto bad_path = tmp.file("truncated.pt");
  atomic_write(bad_path, good.substr(0, good.size() / 2));
  try {
    t.load_checkpoint(bad_path);
    FAIL() << "expected DataError";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("truncated.pt"), std::string::npos) << e.what();
  }
  EXPECT_THROW(t.load_checkpoint(tmp.file("missing.pt")), DataError);
  // The run directory's checkpoint is untouched and still loads.
  EXPECT_EQ(read_file(checkpoints[0]), good);
  EXPECT_NO_THROW(t.load_checkpoint(checkpoints[0]));
}

TEST_F(TrainingTest, PostHocFittingLeavesEncoderAndDecoderBitForBit) {
  TempDir tmp;
  auto m = model("ebm");
  std::vector<torch::Tensor> before;
  for (auto& p : m->vae_parameters()) before.push_back(p.detach().clone());
  auto prior_before = m->prior_parameters()[0].detach().clone();
  Trainer t(m, make_objective("snelbo"), data(), options(6, "post-hoc"),
            RunDir::create(tmp.file("posthoc")));
  ASSERT_TRUE(t.run());
  auto after = m->vae_parameters();
  ASSERT_EQ(after.size(), before.size());
  for (size_t i = 0; i < before.size(); ++i) EXPECT_TRUE(torch::equal(before[i], after[i]));
  EXPECT_FALSE(torch::equal(prior_before, m->prior_parameters()[0]));
}

TEST_F(TrainingTest, StopFlagSavesACheckpointAndReturns) {
  TempDir tmp;
  auto dir = RunDir::create(tmp.file("run"));
  Trainer t(model("gaussian"), make_objective("exact"), data(), options(0), dir);
  std::atomic<bool> stop{true};
  t.set_stop_flag(&stop);
  EXPECT_FALSE(t.run());
  EXPECT_EQ(t.state().step, 1);
  EXPECT_EQ(dir.checkpoints().size(), 1u);
}

TEST_F(TrainingTest, AStopMidEpochIsValidatedOnce) {
  TempDir tmp;
  auto dir = RunDir::create(tmp.file("run"));
  std::vector<int64_t> validated_at;
  auto run = [&](int64_t max_steps) {
    Trainer t(model("gaussian"), make_objective("exact"), data(), options(max_steps).eval_every(100),
              dir);
    t.resume_latest();
    t.set_validator([&](VaeModel&, Json&) {
      validated_at.push_back(t.state().step);
      return -1.0;
    });
    EXPECT_TRUE(t.run());
  };
  run(7);  // 5 steps an epoch: stops 2 steps into the second epoch
  EXPECT_EQ(validated_at, (std::vector<int64_t>{7}));
  EXPECT_TRUE(std::filesystem::exists(dir.best_checkpoint_path()));
  run(7);  // resumed with nothing left to do: no second validation
  EXPECT_EQ(validated_at, (std::vector<int64_t>{7}));
}

TEST_F(TrainingTest, BadOptionsNameTheOptionAndTheValueButNoFlag) {
  try {
    TrainOptions().lr(-1).validate();
    FAIL();
  } catch (const OptionError& e) {
    EXPECT_EQ(e.option, "lr");
    EXPECT_EQ(e.detail, "must be finite and > 0, got -1");
  }
  try {
    TrainOptions().log_every_seconds(std::nan("")).validate();
    FAIL() << "a NaN interval was accepted";
  } catch (const OptionError& e) {
    EXPECT_EQ(e.option, "log-every");
    EXPECT_NE(e.detail.find("nan"), std::string::npos) << e.detail;
  }
  EXPECT_THROW_WITH(train_mode_from("sideways"), "unknown training mode 'sideways' (valid: joint, detach-posterior, post-hoc)");
  for (auto mode : {TrainMode::joint, TrainMode::detach_posterior, TrainMode::post_hoc})
    EXPECT_EQ(train_mode_from(train_mode_name(mode)), mode);
}

}  // namespace vae_ebm::test
