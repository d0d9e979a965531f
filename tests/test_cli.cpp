// Command-line parsing: flags, config files, errors that name the flag; train --init-from.
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "apps/cli.h"
#include "apps/flags.h"
#include "apps/report.h"
#include "data/error.h"
#include "data/files.h"
#include "data/hdf5_io.h"
#include "tests/support.h"
#include "vae/trainer.h"

namespace vae_ebm::test {

using cli::UsageError;

class CliTest : public SeedingFixture {};

static std::string error_of(const std::vector<std::string>& args) {
  cli::TrainConfig c;
  try {
    cli::parse_train(args, c);
  } catch (const UsageError& e) {
    return e.what();
  }
  return "";
}

TEST_F(CliTest, DefaultsAreTheReferenceSettings) {
  cli::TrainConfig c;
  ASSERT_TRUE(cli::parse_train({"--run-dir", "x"}, c));
  EXPECT_EQ(c.dataset, "binary-mnist");
  EXPECT_EQ(c.latent, 16);
  EXPECT_DOUBLE_EQ(c.train.lr(), 1e-4);
  EXPECT_DOUBLE_EQ(c.train.beta1(), 0.5);
  EXPECT_DOUBLE_EQ(c.train.lr_decay(), 0.998);
  EXPECT_EQ(c.train.batch_size(), 256);
  EXPECT_EQ(c.objective_name(), "exact");
  cli::TrainConfig e;
  ASSERT_TRUE(cli::parse_train({"--prior", "ebm"}, e));
  EXPECT_EQ(e.objective_name(), "snelbo");
  EXPECT_EQ(e.run_dir.rfind("runs/binary-mnist-ebm-", 0), 0u) << e.run_dir;
}

TEST_F(CliTest, BadFlagsNameTheFlag) {
  EXPECT_NE(error_of({"--bogus-flag", "1"}).find("bogus-flag"), std::string::npos);
  EXPECT_NE(error_of({"--epochs", "many"}).find("epochs"), std::string::npos);
  EXPECT_NE(error_of({"--lr"}).find("lr"), std::string::npos);
  EXPECT_NE(error_of({"--resume", "/nonexistent/run"}).find("/nonexistent/run"), std::string::npos);
  EXPECT_NE(error_of({"--config", "/nonexistent.ini"}).find("/nonexistent.ini"), std::string::npos);
  EXPECT_NE(error_of({"--validation-log-z", "guess"}).find("--validation-log-z"), std::string::npos);
  EXPECT_NE(error_of({"--validation-ais-chains", "0"}).find("--validation-ais-chains"), std::string::npos);
  EXPECT_NE(error_of({"--eval-samples", "0"}).find("--eval-samples"), std::string::npos);
  EXPECT_THROW(cli::parse_widths("512,x", "hidden"), UsageError);
  EXPECT_THROW(cli::parse_widths("512,-3", "hidden"), UsageError);
  EXPECT_EQ(cli::parse_widths("512,256", "hidden"), (std::vector<int64_t>{512, 256}));
}

TEST_F(CliTest, ResolvedConfigRepeatsTheRun) {
  TempDir tmp;
  cli::TrainConfig a;
  ASSERT_TRUE(cli::parse_train({"--run-dir", "r1", "--prior", "ebm", "--lr", "0.00031", "--hidden", "300,200",
                                "--detach-posterior", "--epochs", "7", "--seed", "12345678901",
                                "--validation-log-z", "is", "--validation-ais-chains", "64"},
                               a));
  std::ofstream(tmp.file("config.ini")) << a.config_text;
  cli::TrainConfig b;
  ASSERT_TRUE(cli::parse_train({"--config", tmp.file("config.ini")}, b));
  EXPECT_EQ(b.prior, "ebm");
  EXPECT_DOUBLE_EQ(b.train.lr(), 0.00031);
  EXPECT_EQ(b.hidden, "300,200");
  EXPECT_EQ(b.train.mode(), TrainMode::detach_posterior);
  EXPECT_EQ(b.mode, "detach-posterior");
  EXPECT_EQ(b.train.epochs(), 7);
  EXPECT_EQ(b.train.seed(), 12345678901ULL);
  EXPECT_EQ(b.validation_log_z, "is");
  EXPECT_EQ(b.validation_ais_chains, 64);
  EXPECT_EQ(b.config_text, a.config_text);
  // The command line wins over the file.
  cli::TrainConfig c;
  ASSERT_TRUE(cli::parse_train({"--config", tmp.file("config.ini"), "--epochs", "9"}, c));
  EXPECT_EQ(c.train.epochs(), 9);
}

TEST_F(CliTest, ConvWidthReachesTheNetworksConfigAndFitPrior) {
  TempDir tmp;
  cli::TrainConfig a;
  ASSERT_TRUE(cli::parse_train({"--run-dir", tmp.path(), "--architecture", "conv", "--conv-width", "16"}, a));
  EXPECT_EQ(a.conv_width, 16);
  EXPECT_EQ(a.network_options({3, 32, 32}).conv_width(), 16);
  EXPECT_NE(a.config_text.find("\nconv-width=16\n"), std::string::npos) << a.config_text;
  EXPECT_EQ(cli::TrainConfig().conv_width, 64);
  // fit-prior takes it, like the other network flags, from the parent's config.ini.
  std::ofstream(tmp.file("config.ini")) << a.config_text;
  cli::TrainConfig f;
  ASSERT_TRUE(cli::parse_fit_prior({tmp.path(), "--prior", "ebm", "--run-dir", tmp.file("posthoc")}, f));
  EXPECT_EQ(f.conv_width, 16);
  EXPECT_EQ(f.architecture, "conv");
  EXPECT_NE(error_of({"--conv-width", "wide"}).find("conv-width"), std::string::npos);
}

// Issue 31: fit-prior has defaults of its own for what a post-hoc fit needs (the energy's rate,
// beta1, a cosine schedule, a validation every 5 epochs), shown by its --help and written to config.ini;
// the command line still wins, and train keeps the joint model's defaults.
TEST_F(CliTest, FitPriorHasItsOwnDefaults) {
  TempDir tmp;
  cli::TrainConfig parent;
  ASSERT_TRUE(cli::parse_train({"--run-dir", tmp.path()}, parent));
  std::ofstream(tmp.file("config.ini")) << parent.config_text;
  cli::TrainConfig f;
  ASSERT_TRUE(cli::parse_fit_prior({tmp.path(), "--prior", "ebm", "--run-dir", tmp.file("posthoc")}, f));
  EXPECT_DOUBLE_EQ(f.train.prior_lr(), 1e-3);
  EXPECT_DOUBLE_EQ(f.train.beta1(), 0.9);
  EXPECT_EQ(f.train.lr_schedule(), "cosine");
  EXPECT_EQ(f.train.eval_every(), 5);
  EXPECT_NE(f.config_text.find("\nprior-lr=0.001\n"), std::string::npos) << f.config_text;
  EXPECT_NE(parent.train.prior_lr(), f.train.prior_lr());  // train's default is the joint model's
  cli::TrainConfig g;
  ASSERT_TRUE(cli::parse_fit_prior(
      {tmp.path(), "--prior", "ebm", "--run-dir", tmp.file("p2"), "--prior-lr", "1e-5", "--eval-every", "1"}, g));
  EXPECT_DOUBLE_EQ(g.train.prior_lr(), 1e-5);
  EXPECT_EQ(g.train.eval_every(), 1);
  testing::internal::CaptureStdout();
  cli::TrainConfig h;
  EXPECT_FALSE(cli::parse_fit_prior({"--help"}, h));
  const auto help = testing::internal::GetCapturedStdout();
  EXPECT_NE(help.find("--prior-lr arg (=0.001)"), std::string::npos) << help;
}

// Issue 31: every recipe in recipes/ is a config file train accepts as it is, and the recipes'
// README has its row.
TEST_F(CliTest, EveryRecipeParsesAndHasItsReadmeRow) {
  std::ifstream in("recipes/README.md");
  ASSERT_TRUE(in) << "recipes/README.md (the tests run in the source tree)";
  std::stringstream readme;
  readme << in.rdbuf();
  int recipes = 0;
  for (const auto& entry : std::filesystem::directory_iterator("recipes")) {
    if (entry.path().extension() != ".ini") continue;
    ++recipes;
    const auto name = entry.path().filename().string();
    TempDir tmp;
    cli::TrainConfig c;
    EXPECT_NO_THROW(EXPECT_TRUE(cli::parse_train({"--config", entry.path().string(), "--run-dir", tmp.path()}, c)))
        << name;
    EXPECT_GT(c.train.epochs(), 0) << name;
    EXPECT_NE(readme.str().find("`" + name + "`"), std::string::npos) << "recipes/README.md has no row for " << name;
  }
  EXPECT_GE(recipes, 2);
}

TEST_F(CliTest, PlaceholdersInTheInputDoNotHangTheErrorMessage) {
  // Boost substitutes %value% and the like into its messages until none is left (found by
  // fuzz/config.cpp: such input made the message loop for ever).
  EXPECT_NE(error_of({"--latent", "%value%"}).find("'?value?'"), std::string::npos);
  EXPECT_NE(error_of({"--x%original_token%"}).find("x?original_token?"), std::string::npos);
  TempDir tmp;
  std::ofstream(tmp.file("bad.ini")) << "%invalid_line%\n";
  EXPECT_NE(error_of({"--config", tmp.file("bad.ini")}).find("?invalid_line?"), std::string::npos);
}

TEST_F(CliTest, ResumeMayOnlyExtendTheRun) {
  TempDir tmp;
  cli::TrainConfig a;
  ASSERT_TRUE(cli::parse_train({"--run-dir", tmp.path(), "--prior", "ebm", "--lr", "0.00031", "--time-budget", "3600"}, a));
  std::ofstream(tmp.file("config.ini")) << a.config_text;
  // A flag that would change the model, the objective or the schedule is refused, by name.
  auto what = error_of({"--resume", tmp.path(), "--beta1", "0.1"});
  EXPECT_NE(what.find("--beta1 cannot change when resuming"), std::string::npos) << what;
  EXPECT_NE(what.find(tmp.file("config.ini")), std::string::npos) << what;
  EXPECT_NE(error_of({"--resume", tmp.path(), "--latent", "32"}).find("--latent"), std::string::npos);
  EXPECT_NE(error_of({"--resume", tmp.path(), "--detach-posterior"}).find("--detach-posterior"), std::string::npos);
  EXPECT_NE(error_of({"--resume", tmp.path(), "--config", tmp.file("config.ini")}).find("--config"), std::string::npos);
  // A longer budget is taken, recorded as a change and rendered into the new config text.
  cli::TrainConfig b;
  ASSERT_TRUE(cli::parse_train({"--resume", tmp.path(), "--time-budget", "7200", "--threads", "1"}, b));
  EXPECT_DOUBLE_EQ(b.train.time_budget(), 7200);
  EXPECT_DOUBLE_EQ(b.train.lr(), 0.00031);
  EXPECT_EQ(b.prior, "ebm");
  ASSERT_GE(b.resume_changes.size(), 1u);
  EXPECT_EQ(b.resume_changes[0].first, "time-budget");
  EXPECT_EQ(b.resume_changes[0].second.first, "3600");
  EXPECT_EQ(b.resume_changes[0].second.second, "7200");
  EXPECT_NE(b.config_text.find("time-budget=7200\n"), std::string::npos);
  EXPECT_NE(b.config_text.find("lr=0.00031\n"), std::string::npos);
  // The rates a divergence may need lowered can change, recorded as such.
  cli::TrainConfig e;
  ASSERT_TRUE(cli::parse_train({"--resume", tmp.path(), "--lr", "0.0001", "--mcmc-step-size", "0.05"}, e));
  EXPECT_DOUBLE_EQ(e.train.lr(), 0.0001);
  ASSERT_NE(e.objective_values.find("mcmc-step-size"), nullptr);
  EXPECT_EQ(*e.objective_values.find("mcmc-step-size"), "0.05");
  ASSERT_EQ(e.resume_changes.size(), 2u);
  EXPECT_EQ(e.resume_changes[0].first, "lr");
  EXPECT_EQ(e.resume_changes[0].second.first, "0.00031");
  EXPECT_NE(e.config_text.find("lr=0.0001\n"), std::string::npos);
  // Resuming as configured changes nothing.
  cli::TrainConfig d;
  ASSERT_TRUE(cli::parse_train({"--resume", tmp.path(), "--time-budget", "3600"}, d));
  EXPECT_TRUE(d.resume_changes.empty());
}

// Trains a tiny energy-prior model on a user data set of 3x4 binary images.
class InitFromTest : public CliTest {
 protected:
  TempDir tmp;
  std::string dataset;
  void SetUp() override {
    CliTest::SetUp();
    dataset = tmp.file("data.h5");
    auto gen = at::make_generator<at::CPUGeneratorImpl>(5);
    H5Writer writer(dataset);
    for (const auto& [name, n] : std::vector<std::pair<std::string, int64_t>>{{"train", 32}, {"validation", 8}, {"test", 8}})
      writer.write(name, torch::bernoulli(torch::full({n, 3, 4}, 0.4), gen));
    writer.close();
  }
  // Flags: the defaults below, with `flags` overriding or adding; an empty value is a switch.
  int train(const std::string& dir, std::map<std::string, std::string> flags) {
    std::map<std::string, std::string> all = {
        {"dataset", "hdf5:" + dataset}, {"hidden", "16"}, {"latent", "3"}, {"prior", "ebm"}, {"energy-hidden", "8,8"},
        {"batch-size", "8"}, {"max-steps", "2"}, {"eval-samples", "1"}, {"log-z-samples", "64"}, {"threads", "1"},
        {"run-dir", tmp.file(dir)}};
    for (const auto& [flag, value] : flags) all[flag] = value;
    std::vector<std::string> args;
    for (const auto& [flag, value] : all) {
      args.push_back("--" + flag);
      if (!value.empty()) args.push_back(value);
    }
    cli::TrainConfig c;
    if (!cli::parse_train(args, c)) return -1;
    return cli::run_train(c);
  }
  std::shared_ptr<VaeModel> load(const std::string& dir, std::vector<int64_t> energy_hidden = {8, 8}) {
    auto m = std::make_shared<VaeModel>(NetworkOptions().hidden({16}).latent_dim(3).image_shape({1, 3, 4}),
                                        PriorOptions("ebm", 3).set("energy-hidden", option_text(energy_hidden)));
    load_model_from_checkpoint(tmp.file(dir) + "/checkpoints/best.pt", *m);
    return m;
  }
  static double max_difference(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
    double d = 0;
    for (size_t i = 0; i < a.size(); ++i) d = std::max(d, (a[i] - b[i]).abs().max().item<double>());
    return d;
  }
};

TEST_F(InitFromTest, TakesThePriorOnlyWhenAsked) {
  ASSERT_EQ(train("a", {{"seed", "1"}}), 0);
  // Learning rates so small that one Adam step moves nothing visibly: what b holds is what it started from.
  const std::map<std::string, std::string> still = {
      {"max-steps", "1"}, {"lr", "1e-12"}, {"prior-lr", "1e-12"}, {"init-from", tmp.file("a") + "/checkpoints/best.pt"}};
  ASSERT_EQ(train("b", still), 0);
  auto with_prior = still;
  with_prior["init-prior"] = "";
  ASSERT_EQ(train("c", with_prior), 0);
  auto a = load("a"), b = load("b"), c = load("c");
  EXPECT_LT(max_difference(a->vae_parameters(), b->vae_parameters()), 1e-9);
  EXPECT_LT(max_difference(a->vae_parameters(), c->vae_parameters()), 1e-9);
  EXPECT_GT(max_difference(a->prior_parameters(), b->prior_parameters()), 1e-3);  // a fresh prior
  EXPECT_LT(max_difference(a->prior_parameters(), c->prior_parameters()), 1e-9);
  EXPECT_NE(read_file(tmp.file("c") + "/metrics.jsonl").find(R"("parts":"encoder, decoder, prior")"), std::string::npos);
}

TEST_F(InitFromTest, APriorOfAnotherShapeIsRefusedBeforeTheRunDirectoryExists) {
  ASSERT_EQ(train("a", {}), 0);
  const auto from = tmp.file("a") + "/checkpoints/best.pt";
  EXPECT_THROW_WITH(train("b", {{"energy-hidden", "8,4"}, {"init-from", from}, {"init-prior", ""}}),
                    "its prior does not fit this run's: tensor f.");
  EXPECT_FALSE(std::filesystem::exists(tmp.file("b")));
  // The networks must fit too, with or without the prior.
  EXPECT_THROW_WITH(train("d", {{"hidden", "12"}, {"init-from", from}}),
                    "has shape [16, 12] in the checkpoint where the model has [12, 12]");
  EXPECT_FALSE(std::filesystem::exists(tmp.file("d")));
  // Without --init-prior the energy's shape is free.
  EXPECT_EQ(train("e", {{"energy-hidden", "8,4"}, {"init-from", from}}), 0);
  EXPECT_THROW_WITH(train("f", {{"init-prior", ""}}), "--init-prior needs --init-from");
  // Loading a whole model (evaluate, sample) refuses another shape too, naming the file.
  EXPECT_THROW_WITH(load("a", {8, 4}), "best.pt");
}

TEST_F(CliTest, EmptyWidthsAndAbsurdThreadCountsAreErrors) {
  EXPECT_THROW_WITH(cli::parse_widths("", "hidden"), "--hidden: expects comma-separated positive integers (at least one)");
  EXPECT_THROW_WITH(cli::parse_widths("8,", "hidden"), "--hidden: expects comma-separated positive integers, got '8,'");
  // A prior kind's own options are checked where the kind declares them, by name.
  EXPECT_THROW_WITH(make_prior(PriorOptions("ebm", 2).set("energy-hidden", "8,0")), "energy-hidden: expects");
  EXPECT_THROW_WITH(make_prior(PriorOptions("mog", 2).set("mog-components", 0)), "mog-components: must be >= 1, got 0");
  EXPECT_THROW_WITH(make_prior(PriorOptions("flow", 2).set("flow-layers", "two")), "flow-layers: expects an integer");
  EXPECT_THROW_WITH(cli::set_threads(100000), "--threads must be at most");
  EXPECT_THROW_WITH(cli::set_threads(0), "--threads must be >= 1");
}

TEST_F(CliTest, AbbreviatedFlagsAreErrors) {
  EXPECT_NE(error_of({"--epoch", "1"}).find("epoch"), std::string::npos);
  EXPECT_NE(error_of({"--lat", "4"}).find("lat"), std::string::npos);
  cli::TrainConfig c;
  ASSERT_TRUE(cli::parse_train({"--epochs", "1", "--latent", "4"}, c));
  EXPECT_EQ(c.latent, 4);
}

TEST_F(CliTest, UnknownConfigKeysAreErrors) {
  TempDir tmp;
  std::ofstream(tmp.file("bad.ini")) << "epochs=3\nlearning-rate=0.1\n";
  auto what = error_of({"--config", tmp.file("bad.ini")});
  EXPECT_NE(what.find("learning-rate"), std::string::npos) << what;
}

TEST_F(CliTest, OtherSubcommandsCheckTheirFlags) {
  cli::EvaluateConfig e;
  EXPECT_THROW(cli::parse_evaluate({}, e), UsageError);  // no run directory
  EXPECT_THROW(cli::parse_evaluate({"run", "--samples", "0"}, e), UsageError);
  ASSERT_TRUE(cli::parse_evaluate({"run", "--samples", "5"}, e));
  EXPECT_EQ(e.run_dir, "run");
  EXPECT_EQ(e.samples, 5);
  cli::SampleConfig s;
  EXPECT_THROW(cli::parse_sample({"run", "--sampler-step-size", "-1"}, s), UsageError);
  EXPECT_THROW(cli::parse_sample({"run", "--sir-candidates", "0"}, s), UsageError);
  cli::ExportConfig x;
  EXPECT_THROW(cli::parse_export({"run"}, x), UsageError);  // no --out
  cli::TrainConfig f;
  EXPECT_THROW(cli::parse_fit_prior({"/nonexistent", "--prior", "ebm"}, f), UsageError);
  EXPECT_THROW(cli::parse_evaluate({"run", "--quality-samples", "-1"}, e), UsageError);
  EXPECT_THROW(cli::parse_evaluate({"run", "--log-z-method", "guess"}, e), UsageError);
  // The log-Z methods' settings: declared once (log_z_option_set), read into LogZSettings,
  // checked by their flag names.
  e = cli::EvaluateConfig();
  ASSERT_TRUE(cli::parse_evaluate({"run", "--ais-chains", "40", "--flow-layers", "3", "--flow-base-fraction", "0.25"}, e));
  EXPECT_EQ(e.log_z.ais.chains(), 40);
  EXPECT_EQ(e.log_z.flow.flow().layers(), 3);
  EXPECT_EQ(e.log_z.flow_base_fraction, 0.25);
  EXPECT_EQ(e.log_z.ais.temperatures(), AisOptions().temperatures());  // the struct's default
  e = cli::EvaluateConfig();
  EXPECT_THROW_WITH(cli::parse_evaluate({"run", "--ais-chains", "0"}, e), "--ais-chains: AIS chains must be >= 1, got 0");
  e = cli::EvaluateConfig();
  EXPECT_THROW_WITH(cli::parse_evaluate({"run", "--flow-hidden", "0"}, e), "--flow-hidden: must be >= 1, got 0");
  e = cli::EvaluateConfig();
  EXPECT_THROW_WITH(cli::parse_evaluate({"run", "--ais-target-acceptance", "1"}, e), "--ais-target-acceptance: ");
  cli::ClassifierConfig k;
  EXPECT_THROW(cli::parse_train_classifier({"--epochs", "0"}, k), UsageError);
  k = cli::ClassifierConfig();  // a parser's defaults are the values of the config it is given
  ASSERT_TRUE(cli::parse_train_classifier({"--dataset", "fashion-mnist", "--data-dir", "/d"}, k));
  EXPECT_EQ(cli::default_classifier_path(k.common.data_dir, "hdf5:/x/y.h5"), "/d/classifiers/hdf5__x_y.h5.pt");
}

// Issue 26, finding 11: a work size beyond its bound (a typo such as 1e12 for 1e5) is refused,
// naming the flag and the confirmation, in every command that takes it; with --allow-large-work
// it is taken, and the confirmation is recorded so that a resume goes on.
TEST_F(CliTest, WorkSizesBeyondTheirBoundsNeedAllowLargeWork) {
  EXPECT_NE(error_of({"--log-z-samples", "1000000000000"}).find("--log-z-samples 1000000000000 is beyond 100000000"),
            std::string::npos)
      << error_of({"--log-z-samples", "1000000000000"});
  EXPECT_NE(error_of({"--prior", "ebm", "--objective", "short-run-mcmc", "--mcmc-steps", "1000000000000"})
                .find("--allow-large-work"),
            std::string::npos);
  EXPECT_NE(error_of({"--prior", "flow", "--flow-layers", "10000000"}).find("--flow-layers"), std::string::npos);
  EXPECT_EQ(error_of({"--log-z-samples", "100000000"}), "");  // at the bound: taken
  cli::TrainConfig c;
  ASSERT_TRUE(cli::parse_train({"--run-dir", "x", "--log-z-samples", "1000000000000", "--allow-large-work"}, c));
  EXPECT_EQ(c.log_z_samples, 1000000000000);
  EXPECT_NE(c.config_text.find("allow-large-work=true"), std::string::npos);
  cli::EvaluateConfig e;
  EXPECT_THROW_WITH(cli::parse_evaluate({"run", "--samples", "10000000"}, e), "--samples 10000000 is beyond 100000");
  ASSERT_TRUE(cli::parse_evaluate({"run", "--samples", "10000000", "--allow-large-work"}, e));
  cli::SampleConfig s;
  EXPECT_THROW_WITH(cli::parse_sample({"run", "--hmc-leapfrog", "100000"}, s), "--hmc-leapfrog");
}

// Every bound names a flag of some command, and the README's "Work sizes" table is work_bounds().
TEST_F(CliTest, EveryWorkBoundIsAFlagAndTheReadmeTablesIt) {
  std::string help;
  {
    testing::internal::CaptureStdout();
    cli::TrainConfig t;
    cli::parse_train({"--help"}, t);
    cli::EvaluateConfig e;
    cli::parse_evaluate({"--help"}, e);
    cli::SampleConfig s;
    cli::parse_sample({"--help"}, s);
    help = testing::internal::GetCapturedStdout();
  }
  std::ifstream in("README.md");
  ASSERT_TRUE(in) << "README.md (the tests run in the source tree)";
  std::string readme((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (const auto& bound : cli::work_bounds()) {
    EXPECT_NE(help.find("--" + bound.flag + " "), std::string::npos) << bound.flag << " is no command's flag";
    const auto row = "| `--" + bound.flag + "` | " + std::to_string(bound.most) + " |";
    EXPECT_NE(readme.find(row), std::string::npos) << "README.md has no row " << row;
  }
}

// Issue 27: fit-prior's data and network flags are the parent's. Its help shows them without a
// default of its own, and giving one is refused, naming the parent's config.ini.
TEST_F(CliTest, FitPriorTakesTheDataAndNetworksFromTheParentOnly) {
  TempDir tmp;
  cli::TrainConfig parent;
  ASSERT_TRUE(cli::parse_train({"--run-dir", tmp.path(), "--hidden", "300,200", "--latent", "8"}, parent));
  std::ofstream(tmp.file("config.ini")) << parent.config_text;
  testing::internal::CaptureStdout();
  cli::TrainConfig help;
  EXPECT_FALSE(cli::parse_fit_prior({"--help"}, help));
  const auto text = testing::internal::GetCapturedStdout();
  EXPECT_EQ(text.find("(=512,512)"), std::string::npos) << text;
  EXPECT_NE(text.find("--energy-hidden arg (=200,200,200)"), std::string::npos) << text;
  cli::TrainConfig c;
  EXPECT_THROW_WITH(cli::parse_fit_prior({tmp.path(), "--prior", "ebm", "--hidden", "64"}, c),
                    "fit-prior takes --hidden from the parent's config.ini");
  cli::TrainConfig d;
  ASSERT_TRUE(cli::parse_fit_prior({tmp.path(), "--prior", "ebm", "--run-dir", tmp.file("posthoc")}, d));
  EXPECT_EQ(d.hidden, "300,200");
  EXPECT_EQ(d.latent, 8);
  EXPECT_NE(d.config_text.find("hidden=300,200"), std::string::npos);
}

// Issue 27: --help and the README agree. Every flag that a command's --help lists is written in
// the README as `--flag`, and every row of the README's flag tables names a flag some command
// has (a renamed or removed flag leaves no stale row).
TEST_F(CliTest, EveryCommandsFlagsAreInTheReadmeAndItsTablesHaveNoOtherFlag) {
  testing::internal::CaptureStdout();
  {
    cli::TrainConfig t, f;
    cli::parse_train({"--help"}, t);
    cli::parse_fit_prior({"--help"}, f);
    cli::EvaluateConfig e;
    cli::parse_evaluate({"--help"}, e);
    cli::SampleConfig s;
    cli::parse_sample({"--help"}, s);
    cli::ExportConfig x;
    cli::parse_export({"--help"}, x);
    cli::ClassifierConfig k;
    cli::parse_train_classifier({"--help"}, k);
    cli::ReportConfig r;
    cli::parse_report({"--help"}, r);
  }
  const auto help = testing::internal::GetCapturedStdout();
  std::set<std::string> flags;
  std::istringstream lines(help);
  for (std::string line; std::getline(lines, line);)
    if (line.rfind("  --", 0) == 0) flags.insert(line.substr(2, line.find_first_of(" \n", 2) - 2));
  ASSERT_GT(flags.size(), 100u) << help;
  std::ifstream in("README.md");
  ASSERT_TRUE(in) << "README.md (the tests run in the source tree)";
  std::string readme((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::set<std::string> positional = {"--parent-run", "--run"};  // PARENT_RUN, RUN_DIR...
  for (const auto& flag : flags) {
    if (positional.count(flag)) continue;
    EXPECT_TRUE(readme.find("`" + flag + "`") != std::string::npos || readme.find("`" + flag + " ") != std::string::npos)
        << flag << " is in --help but not in README.md";
  }
  std::istringstream rows(readme);
  for (std::string row; std::getline(rows, row);) {
    if (row.rfind("| `--", 0) != 0) continue;
    const auto cell = row.substr(2, row.find('|', 2) - 2);
    for (size_t at = cell.find("`--"); at != std::string::npos; at = cell.find("`--", at + 1)) {
      const auto flag = cell.substr(at + 1, cell.find_first_of("` ", at + 1) - at - 1);
      EXPECT_TRUE(flags.count(flag)) << "README.md's row '" << row.substr(0, 60) << "' names " << flag
                                     << ", which no command has";
    }
  }
}

}  // namespace vae_ebm::test
