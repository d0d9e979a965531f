// The training loop: resume equals never stopping, checkpoints refuse bad files,
// post-hoc fitting leaves the VAE untouched.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>

#include "common/error.h"
#include "data/error.h"
#include "data/files.h"
#include "data/json.h"
#include "data/run_dir.h"
#include "data/seed.h"
#include "tests/support.h"
#include "prior/energy.h"
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
                                      PriorOptions(prior, 3).set("energy-hidden", "8,8").set("mog-components", 2));
  }
  // What a test adds to every TrainOptions it makes (a schedule, clipping, warm-ups).
  std::function<TrainOptions(TrainOptions)> adjust = [](TrainOptions o) { return o; };
  TrainOptions options(int64_t max_steps, const std::string& mode = "joint") {
    // 40 images in batches of 8: 5 steps an epoch, so 7 steps cross an epoch boundary.
    return adjust(TrainOptions().epochs(4).batch_size(8).lr(1e-2).prior_lr(1e-2).samples(2).seed(3).max_steps(max_steps)
        .mode(train_mode_from(mode)).log_every_seconds(1e9));
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

// Each rate schedule, the clipping and the warm-ups are functions of the step: a resumed run
// takes the steps a run that never stopped would. The prior warm-up ends at step 10, after the
// resume at step 7.
TEST_F(TrainingTest, ResumeEqualsNeverStoppingUnderEachScheduleAndWarmUp) {
  adjust = [](TrainOptions o) { return o.lr_schedule("step").lr_step_epochs(1).lr_decay(0.5); };
  resume_equals_never_stopping("ebm");
  adjust = [](TrainOptions o) { return o.lr_schedule("cosine").lr_warmup_steps(3); };
  resume_equals_never_stopping("gaussian");
  adjust = [](TrainOptions o) { return o.clip_grad_norm(0.5).kl_warmup_epochs(1.5); };
  resume_equals_never_stopping("ebm", "joint", "snelbo", 0, "flow");
  adjust = [](TrainOptions o) { return o.prior_start_epoch(2); };
  resume_equals_never_stopping("ebm");
  resume_equals_never_stopping("ebm", "detach-posterior");
}

TEST_F(TrainingTest, EachLearningRateScheduleGivesItsClosedForm) {
  const auto exponential = TrainOptions().lr_decay(0.5);
  EXPECT_DOUBLE_EQ(learning_rate_factor(exponential, 0, 0, 100), 1.0);
  EXPECT_DOUBLE_EQ(learning_rate_factor(exponential, 17, 3, 100), 0.125);
  const auto step = TrainOptions().lr_schedule("step").lr_decay(0.5).lr_step_epochs(2);
  EXPECT_DOUBLE_EQ(learning_rate_factor(step, 0, 1, 100), 1.0);
  EXPECT_DOUBLE_EQ(learning_rate_factor(step, 0, 2, 100), 0.5);
  EXPECT_DOUBLE_EQ(learning_rate_factor(step, 0, 5, 100), 0.25);
  const auto cosine = TrainOptions().lr_schedule("cosine");
  EXPECT_DOUBLE_EQ(learning_rate_factor(cosine, 0, 0, 100), 1.0);
  EXPECT_NEAR(learning_rate_factor(cosine, 25, 0, 100), (1 + std::sqrt(0.5)) / 2, 1e-15);
  EXPECT_NEAR(learning_rate_factor(cosine, 50, 9, 100), 0.5, 1e-15);
  EXPECT_NEAR(learning_rate_factor(cosine, 100, 9, 100), 0.0, 1e-15);
  // The warm-up multiplies whichever schedule: (step + 1) / warm-up steps, then 1.
  const auto warm = TrainOptions().lr_decay(0.5).lr_warmup_steps(10);
  EXPECT_DOUBLE_EQ(learning_rate_factor(warm, 0, 0, 100), 0.1);
  EXPECT_DOUBLE_EQ(learning_rate_factor(warm, 4, 1, 100), 0.25);
  EXPECT_DOUBLE_EQ(learning_rate_factor(warm, 9, 0, 100), 1.0);
  EXPECT_DOUBLE_EQ(learning_rate_factor(warm, 30, 2, 100), 0.25);
  // And the trainer applies it: a warm-up of 10^9 steps keeps the first steps' rate at 1e-11.
  TempDir tmp;
  for (const int64_t warm_up : {int64_t{0}, int64_t{1000000000}}) {
    auto m = model("gaussian");
    auto before = m->encoder->parameters()[0].detach().clone();
    Trainer t(m, make_objective("exact"), data(), options(3).lr_warmup_steps(warm_up),
              RunDir::create(tmp.file("warm" + std::to_string(warm_up))));
    ASSERT_TRUE(t.run());
    const double moved = (m->encoder->parameters()[0] - before).abs().max().item<double>();
    if (warm_up == 0) EXPECT_GT(moved, 1e-3);
    else EXPECT_LT(moved, 1e-9);
  }
}

TEST_F(TrainingTest, KlWarmUpWeighsTheKlZeroAtTheFirstStepAndOneAfterItsEpochs) {
  const auto o = TrainOptions().kl_warmup_epochs(2);
  EXPECT_EQ(kl_weight(o, 0, 5), 0.0);
  EXPECT_DOUBLE_EQ(kl_weight(o, 5, 5), 0.5);
  EXPECT_EQ(kl_weight(o, 10, 5), 1.0);
  EXPECT_EQ(kl_weight(o, 11, 5), 1.0);
  EXPECT_EQ(kl_weight(TrainOptions(), 0, 5), 1.0);
  // The first step's loss is the reconstruction term alone, for the exact prior and the energy's
  // SNELBO; without warm-up it is reconstruction + KL.
  TempDir tmp;
  const auto x = data().narrow(0, 0, 8);
  for (const std::string prior : {"gaussian", "ebm"}) {
    for (const double epochs : {0.0, 1.0}) {
      Trainer t(model(prior), make_objective(default_objective(prior)), data(), options(1).kl_warmup_epochs(epochs),
                RunDir::create(tmp.file(prior + std::to_string(epochs))));
      auto terms = t.step(x);
      const double expected = epochs > 0 ? -terms.at("reconstruction") : terms.at("kl") - terms.at("reconstruction");
      EXPECT_NEAR(terms.at("loss"), expected, 1e-4 * std::abs(expected)) << prior << " warm-up " << epochs;
    }
  }
}

TEST_F(TrainingTest, ClippingRescalesTheGradientToItsNormAndRecordsIt) {
  auto a = torch::tensor({3.0, 0.0}), b = torch::tensor({4.0});
  EXPECT_DOUBLE_EQ(clip_gradient_norm({a, b}, 10.0), 5.0);  // shorter: left alone
  EXPECT_TRUE(torch::equal(a, torch::tensor({3.0, 0.0})));
  EXPECT_DOUBLE_EQ(clip_gradient_norm({a, b}, 1.0), 5.0);
  EXPECT_NEAR(a[0].item<double>(), 0.6, 1e-7);  // direction kept, norm now 1
  EXPECT_NEAR(b[0].item<double>(), 0.8, 1e-7);
  EXPECT_NEAR(clip_gradient_norm({a, b}, 0.0), 1.0, 1e-6);  // off
  // In the trainer: the step's record carries the norm, and whether it was clipped.
  TempDir tmp;
  const auto x = data().narrow(0, 0, 8);
  std::map<std::string, double> free_step, clipped_step;
  std::vector<torch::Tensor> moved;
  for (const double limit : {0.0, 1e-3}) {
    auto m = model("ebm");
    auto before = m->decoder->parameters()[0].detach().clone();
    Trainer t(m, make_objective("snelbo"), data(), options(1).clip_grad_norm(limit),
              RunDir::create(tmp.file("clip" + std::to_string(limit))));
    (limit > 0 ? clipped_step : free_step) = t.step(x);
    moved.push_back(m->decoder->parameters()[0].detach() - before);
  }
  EXPECT_GT(free_step.at("grad_norm"), 1e-3);
  EXPECT_EQ(free_step.at("clipped"), 0.0);
  EXPECT_EQ(clipped_step.at("clipped"), 1.0);
  EXPECT_DOUBLE_EQ(clipped_step.at("grad_norm"), free_step.at("grad_norm"));  // the norm before clipping
  // Adam's first update is lr * g / |g| elementwise, whatever the scale: the clipped step
  // differs only where epsilon (1e-8) matters next to a gradient scaled down to 1e-3 in all.
  EXPECT_FALSE(torch::equal(moved[0], moved[1]));
}

TEST_F(TrainingTest, ThePriorWarmUpLeavesThePriorAloneUntilItsEpoch) {
  TempDir tmp;
  auto dir = RunDir::create(tmp.file("warm"));
  auto m = model("ebm");
  std::vector<torch::Tensor> prior_before, vae_before;
  for (auto& p : m->prior_parameters()) prior_before.push_back(p.detach().clone());
  for (auto& p : m->vae_parameters()) vae_before.push_back(p.detach().clone());
  Trainer first(m, make_objective("snelbo"), data(), options(5).prior_start_epoch(1), dir);
  ASSERT_TRUE(first.run());  // the first epoch, 5 steps
  auto prior_after = m->prior_parameters();
  for (size_t i = 0; i < prior_before.size(); ++i) EXPECT_TRUE(torch::equal(prior_before[i], prior_after[i])) << i;
  EXPECT_FALSE(torch::equal(vae_before[0], m->vae_parameters()[0]));
  Trainer second(m, make_objective("snelbo"), data(), options(7).prior_start_epoch(1), dir);
  ASSERT_TRUE(second.resume_latest());
  ASSERT_TRUE(second.run());
  EXPECT_FALSE(torch::equal(prior_before[0], m->prior_parameters()[0]));
}

TEST_F(TrainingTest, AWarmUpOrScheduleOptionOutOfRangeIsRefusedByName) {
  auto refused = [](const TrainOptions& o, const std::string& option) {
    try {
      o.validate();
      ADD_FAILURE() << option << " was accepted";
    } catch (const OptionError& e) {
      EXPECT_EQ(e.option, option) << e.detail;
    }
  };
  refused(TrainOptions().lr_schedule("linear"), "lr-schedule");
  refused(TrainOptions().lr_step_epochs(0), "lr-step-epochs");
  refused(TrainOptions().lr_warmup_steps(-1), "lr-warmup-steps");
  refused(TrainOptions().clip_grad_norm(-1), "clip-grad-norm");
  refused(TrainOptions().clip_grad_norm(std::nan("")), "clip-grad-norm");
  refused(TrainOptions().kl_warmup_epochs(-0.5), "kl-warmup-epochs");
  refused(TrainOptions().prior_start_epoch(-1), "prior-start-epoch");
  refused(TrainOptions().mode(TrainMode::post_hoc).kl_warmup_epochs(1), "kl-warmup-epochs");
  refused(TrainOptions().mode(TrainMode::post_hoc).prior_start_epoch(1), "prior-start-epoch");
}

// The importance-weighted training bound is log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x) over the
// step's own samples: for the Gaussian prior with its density, for the energy prior with
// log p0 - f and SNELBO's normaliser terms (the same for every sample, so outside the log-mean-exp).
TEST_F(TrainingTest, TheImportanceWeightedBoundIsTheLogMeanExpOfTheStepsWeights) {
  const auto x = data().narrow(0, 0, 8);
  const int64_t k = 5;
  for (const std::string prior : {"gaussian", "ebm"}) {
    auto m = model(prior);
    auto objective = make_objective(default_objective(prior), OptionValues().set("base-samples", 16));
    objective->set_per_sample_terms(true);
    auto gen = make_generator(11);
    auto terms = elbo_terms(*m, *objective, x, k, gen, nullptr, nullptr, true);
    torch::NoGradGuard no_grad;
    auto again = make_generator(11);
    auto q = m->encoder->forward(x);
    auto z = q.rsample(k, again);  // the same draws: the posterior's come first
    auto log_w = m->log_likelihood(z, x) + standard_normal_log_prob(z) - q.log_prob(z);
    if (prior == "ebm") {
      auto& ebm = as_energy_prior(*m->prior);
      log_w = log_w - ebm.energy(z) +
              snl_terms(ebm.b, torch::tensor(terms.diagnostics.at("log_z_hat"), torch::kFloat));
    }
    auto expected = torch::logsumexp(log_w, 0) - std::log(static_cast<double>(k));
    EXPECT_TRUE(torch::allclose(terms.iw, expected, 1e-4, 1e-3)) << prior << terms.iw << expected;
    EXPECT_TRUE(torch::equal(terms.total, terms.iw));
    // Jensen: at least the mean of the log weights, the K-sample Monte Carlo ELBO.
    EXPECT_TRUE((terms.iw.detach() >= log_w.mean(0) - 1e-4).all().item<bool>()) << prior;
  }
}

// --train-bound iw-dreg: the same value as iw; the decoder's gradient is IWAE's; the encoder's
// is DReG's sum_k w~_k^2 d log w_k / d z_k dz_k / d phi (log q's parameters held fixed),
// assembled here by hand from autograd's per-sample gradients, and differs from IWAE's.
TEST_F(TrainingTest, DregGivesTheEncoderTheSquaredWeightPathwiseGradient) {
  const auto x = data().narrow(0, 0, 8);
  const int64_t k = 4;
  auto m = model("gaussian");
  auto encoder = m->encoder->parameters(), decoder = m->decoder->parameters();
  auto draw = [&] {
    auto gen = make_generator(11);
    auto q = m->encoder->forward(x);
    auto z = q.rsample(k, gen);
    return std::make_tuple(q, z, m->log_likelihood(z, x) + standard_normal_log_prob(z));
  };
  auto grads = [](const torch::Tensor& value, const std::vector<torch::Tensor>& params) {
    return torch::autograd::grad({value.sum()}, params, {}, /*retain_graph=*/true);
  };
  auto [q1, z1, joint1] = draw();
  auto iwae = importance_weighted_objective(joint1, q1, z1, false);
  auto [q2, z2, joint2] = draw();
  auto dreg = importance_weighted_objective(joint2, q2, z2, true);
  EXPECT_TRUE(torch::allclose(dreg, iwae, 1e-6, 1e-6));
  const auto decoder_iwae = grads(iwae, decoder), decoder_dreg = grads(dreg, decoder);
  for (size_t i = 0; i < decoder.size(); ++i)
    EXPECT_TRUE(torch::allclose(decoder_dreg[i], decoder_iwae[i], 1e-5, 1e-6)) << "decoder parameter " << i;
  const auto encoder_iwae = grads(iwae, encoder), encoder_dreg = grads(dreg, encoder);
  // By hand: per-sample d log w_k / d z_k with q's parameters fixed, weighed by w~_k^2, then
  // back through the reparameterisation z = mu + sigma eps.
  auto [q3, z3, joint3] = draw();
  auto log_w = joint3 - DiagonalGaussian{q3.mu.detach(), q3.logvar.detach()}.log_prob(z3);
  auto w = torch::softmax(log_w.detach(), 0).unsqueeze(-1);
  auto d_log_w = torch::autograd::grad({log_w.sum()}, {z3}, {}, /*retain_graph=*/true)[0];
  auto expected = torch::autograd::grad({z3}, encoder, {w * w * d_log_w});
  double differs = 0;
  for (size_t i = 0; i < encoder.size(); ++i) {
    EXPECT_TRUE(torch::allclose(encoder_dreg[i], expected[i], 1e-4, 1e-6)) << "encoder parameter " << i;
    differs = std::max(differs, (encoder_dreg[i] - encoder_iwae[i]).abs().max().item<double>());
  }
  EXPECT_GT(differs, 1e-3);
}

TEST_F(TrainingTest, ImportanceWeightedTrainingResumesAndIsRefusedWhereItHasNoMeaning) {
  adjust = [](TrainOptions o) { return o.train_bound("iw").samples(3); };
  resume_equals_never_stopping("gaussian");
  resume_equals_never_stopping("ebm");
  adjust = [](TrainOptions o) { return o.train_bound("iw").samples(3).prior_start_epoch(2); };
  resume_equals_never_stopping("ebm");
  adjust = [](TrainOptions o) { return o.train_bound("iw-dreg").samples(3); };
  resume_equals_never_stopping("ebm");
  TempDir tmp;
  try {
    Trainer(model("ebm"), make_objective("nce"), data(), options(2).train_bound("iw"), RunDir::create(tmp.file("nce")));
    ADD_FAILURE() << "iw with nce was accepted";
  } catch (const OptionError& e) {
    EXPECT_EQ(e.option, "train-bound");
    EXPECT_NE(e.detail.find("nce"), std::string::npos) << e.detail;
  }
  for (const auto& o : {TrainOptions().train_bound("iwae"), TrainOptions().train_bound("iw").kl_warmup_epochs(1),
                        TrainOptions().train_bound("iw-dreg").kl_warmup_epochs(1),
                        TrainOptions().train_bound("iw").mode(TrainMode::post_hoc)}) {
    try {
      o.validate();
      ADD_FAILURE() << "accepted";
    } catch (const OptionError& e) {
      EXPECT_EQ(e.option, "train-bound") << e.detail;
    }
  }
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
