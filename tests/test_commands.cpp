// Each command's entry point, run end to end from the table (apps/command.h) on a tiny user
// data set, as `vae-ebm COMMAND ARGS` runs it, and what it wrote.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>

#include "apps/cli.h"
#include "apps/command.h"
#include "data/files.h"
#include "data/hdf5_io.h"
#include "data/run_dir.h"
#include "estimators/classifier.h"
#include "estimators/samplers.h"
#include "tests/support.h"

namespace vae_ebm::test {

namespace {

// The number after "key": in a JSON text (the first occurrence).
double json_number(const std::string& text, const std::string& key) {
  std::smatch m;
  if (!std::regex_search(text, m, std::regex("\"" + key + "\": (-?[0-9.eE+-]+)")))
    throw std::runtime_error("no number for " + key);
  return std::stod(m[1]);
}

}  // namespace

// Trains tiny models on a user data set of 3x4 binary images, once for the whole suite.
class CommandsTest : public ::testing::Test {
 protected:
  static inline TempDir* tmp = nullptr;
  static std::string file(const std::string& name) { return tmp->file(name); }
  static std::vector<std::string> args(const std::map<std::string, std::string>& flags,
                                       const std::vector<std::string>& positional = {}) {
    std::vector<std::string> out = positional;
    for (const auto& [flag, value] : flags) {
      out.push_back("--" + flag);
      if (!value.empty()) out.push_back(value);
    }
    return out;
  }
  static int train(const std::string& dir, const std::string& prior) {
    return command("train").run(args({{"dataset", "hdf5:" + file("data.h5")}, {"hidden", "16"}, {"latent", "3"},
                                      {"prior", prior}, {"energy-hidden", "8,8"}, {"batch-size", "8"},
                                      {"epochs", "2"}, {"eval-samples", "2"}, {"log-z-samples", "64"},
                                      {"threads", "1"}, {"log-every", "1000"}, {"run-dir", file(dir)}}));
  }
  static void SetUpTestSuite() {
    torch::manual_seed(0);
    tmp = new TempDir();
    write_tiny_binary_data(file("data.h5"), 5);
    ASSERT_EQ(train("vae", "gaussian"), 0);
    ASSERT_EQ(train("ebm", "ebm"), 0);
  }
  static void TearDownTestSuite() {
    delete tmp;
    tmp = nullptr;
  }
};

TEST_F(CommandsTest, TrainWritesARunDirectory) {
  for (const auto* dir : {"vae", "ebm"}) {
    const auto config = read_file(file(dir) + "/config.ini");
    EXPECT_NE(config.find("# BLAS kernel: "), std::string::npos) << config;
    EXPECT_NE(config.find("epochs=2\n"), std::string::npos) << config;
    EXPECT_TRUE(std::filesystem::exists(file(dir) + "/checkpoints/best.pt"));
    const auto metrics = read_file(file(dir) + "/metrics.jsonl");
    EXPECT_NE(metrics.find(R"("event":"finished")"), std::string::npos);
    EXPECT_NE(metrics.find(R"("validation")"), std::string::npos);
  }
}

TEST_F(CommandsTest, AValidationInTheMiddleOfAnEpochNamesItsStep) {
  // 32 training images in batches of 8: 4 batches an epoch. --max-steps 3 stops in the first
  // epoch, whose validation used to print as "epoch 0"; a whole epoch still prints as "epoch N".
  const std::string train = kBinary + " train --dataset hdf5:" + file("data.h5") +
                            " --hidden 16 --latent 3 --batch-size 8 --eval-samples 2 --threads 1 --run-dir ";
  const auto partial = shell_output(train + file("partial") + " --max-steps 3 2>&1");
  EXPECT_NE(partial.find("step 3 (epoch 1, batch 3/4): validation bound "), std::string::npos) << partial;
  EXPECT_EQ(partial.find("epoch 0"), std::string::npos) << partial;
  const auto whole = shell_output(train + file("whole") + " --epochs 1 2>&1");
  EXPECT_NE(whole.find("epoch 1: validation bound "), std::string::npos) << whole;
}

TEST_F(CommandsTest, FitPriorFitsAnEnergyToTheTrainedVae) {
  ASSERT_EQ(command("fit-prior").run(args({{"prior", "ebm"}, {"energy-hidden", "8"}, {"epochs", "1"},
                                           {"batch-size", "8"}, {"log-z-samples", "64"}, {"threads", "1"},
                                           {"run-dir", file("posthoc")}},
                                          {file("vae")})),
            0);
  const auto config = read_file(file("posthoc") + "/config.ini");
  EXPECT_NE(config.find("mode=post-hoc\n"), std::string::npos) << config;
  EXPECT_NE(config.find("parent=" + file("vae") + "\n"), std::string::npos) << config;
  EXPECT_NE(config.find("hidden=16\n"), std::string::npos) << "the networks come from the parent: " << config;
  EXPECT_TRUE(std::filesystem::exists(file("posthoc") + "/checkpoints/best.pt"));
}

TEST_F(CommandsTest, EvaluateWritesBoundsThatKeepTheirOrder) {
  for (const auto& [dir, bound, iwae] : std::vector<std::tuple<std::string, std::string, std::string>>{
           {"vae", "ELBO_5", "IWAE_5"}, {"ebm", "SNELBO_5", "SN-IWAE_5"}}) {
    ASSERT_EQ(command("evaluate").run(args({{"samples", "5"}, {"log-z-samples", "512"}, {"threads", "1"},
                                            {"quality-samples", "0"}},
                                           {file(dir)})),
              0);
    const auto json = read_file(file(dir) + "/evaluation.json");
    EXPECT_NE(json.find("\"estimator\": \"" + bound + "\""), std::string::npos) << json;
    EXPECT_EQ(json_number(json, "images"), 8);
    // The importance-weighted bound is at least the bound in expectation (the bound's KL is in
    // closed form, so not image by image): paired over the images, within 3 standard errors.
    const auto h5 = file(dir) + "/evaluation-test.h5";
    auto per_bound = h5_read(h5, bound), per_iwae = h5_read(h5, iwae);
    ASSERT_EQ(per_bound.numel(), 8);
    EXPECT_TRUE(torch::isfinite(per_bound).all().item<bool>());
    auto gain = (per_iwae - per_bound).to(torch::kDouble);
    EXPECT_GT(gain.mean().item<double>(), -3 * gain.std().item<double>() / std::sqrt(8.0)) << gain;
    const auto after_bound = json.substr(json.find("\"estimator\": \"" + bound + "\""));
    EXPECT_NEAR(json_number(after_bound, "value"), per_bound.mean().item<double>(), 1e-3)
        << "the record's mean is the file's";
    if (dir == "ebm") {
      EXPECT_NE(json.find("\"log_z\""), std::string::npos) << json;
      EXPECT_GT(json_number(json, "ess"), 0) << "log Z carries its effective sample size";
    }
  }
}

TEST_F(CommandsTest, EvaluateEstimatesLogZWithAFlowProposal) {
  ASSERT_EQ(command("evaluate").run(args({{"samples", "5"}, {"log-z-samples", "2000"}, {"log-z-method", "flow"},
                                          {"flow-steps", "50"}, {"flow-refine-steps", "20"}, {"threads", "1"}, {"quality-samples", "0"}},
                                         {file("ebm")})),
            0);
  const auto json = read_file(file("ebm") + "/evaluation.json");
  EXPECT_NE(json.find("IS(flow + 0.1 base, S=2000)"), std::string::npos) << json;
  EXPECT_GT(json_number(json, "ess"), 0);
  EXPECT_THROW_WITH(command("evaluate").run(args({{"log-z-method", "flow"}, {"flow-base-fraction", "1"}}, {file("ebm")})),
                    "--flow-base-fraction: must be in [0, 1), got 1");
  // AIS from the fitted flow, its step adapted: the record names the start and the adaptation.
  ASSERT_EQ(command("evaluate").run(args({{"samples", "5"}, {"log-z-method", "flow-ais"}, {"flow-steps", "50"},
                                          {"flow-refine-steps", "20"}, {"ais-chains", "40"}, {"ais-temperatures", "30"},
                                          {"threads", "1"}, {"quality-samples", "0"}},
                                         {file("ebm")})),
            0);
  const auto annealed = read_file(file("ebm") + "/evaluation.json");
  EXPECT_NE(annealed.find("AIS(forward from flow, T=30 sigmoid, chains=40, MALA 1x s=0.1 adapted to acceptance 0.6)"),
            std::string::npos)
      << annealed;
  EXPECT_GT(json_number(annealed, "ess"), 0);
  EXPECT_THROW_WITH(command("evaluate").run(args({{"log-z-method", "flow-ais"}, {"ais-target-acceptance", "1"}}, {file("ebm")})),
                    "target acceptance");
}

TEST_F(CommandsTest, EvaluationRecordsOfOtherDataSplitsAndCheckpointsDoNotOverwriteEachOther) {
  ASSERT_EQ(command("evaluate").run({file("vae"), "--samples", "2", "--threads", "1", "--quality-samples", "0"}), 0);
  write_tiny_binary_data(file("other.h5"), 99);
  ASSERT_EQ(command("evaluate").run({file("vae"), "--dataset", "hdf5:" + file("other.h5"), "--samples", "2",
                                     "--threads", "1", "--quality-samples", "0"}),
            0);
  ASSERT_EQ(command("evaluate").run({file("vae"), "--split", "validation", "--checkpoint", "latest", "--samples", "2",
                                     "--threads", "1", "--quality-samples", "0"}),
            0);
  EXPECT_EQ(read_file(file("vae") + "/evaluation.json").find("other.h5"), std::string::npos)
      << "another data set's evaluation leaves the run's own record alone";
  std::set<std::string> records;
  for (const auto& entry : std::filesystem::directory_iterator(file("vae") + "/evaluations"))
    records.insert(entry.path().filename().string());
  std::smatch m;
  const auto config = read_file(file("vae") + "/config.ini");
  ASSERT_TRUE(std::regex_search(config, m, std::regex("# data: \\S+ sha256 ([0-9a-f]{8})"))) << config;
  const std::string own_name = "hdf5-data.h5-" + m[1].str();
  EXPECT_TRUE(records.count(own_name + ".test.best.json")) << own_name;
  EXPECT_TRUE(records.count(own_name + ".validation.step-000000008.json"));
  EXPECT_TRUE(records.count(own_name + ".validation.step-000000008.h5"));
  EXPECT_EQ(std::count_if(records.begin(), records.end(),
                          [](const std::string& r) { return r.rfind("hdf5-other.h5-", 0) == 0; }),
            2)
      << "the other data set's record and per-image bounds";
}

TEST_F(CommandsTest, SampleWritesThreePngGrids) {
  ASSERT_EQ(command("sample").run(args({{"count", "9"}, {"sampler", "langevin"}, {"sampler-steps", "5"},
                                        {"threads", "1"}, {"out", file("grids")}},
                                       {file("ebm")})),
            0);
  for (const auto* name : {"prior_means.png", "prior_draws.png", "reconstructions.png"}) {
    const auto bytes = read_file(file("grids") + "/" + name);
    ASSERT_GT(bytes.size(), 8u) << name;
    EXPECT_EQ(bytes.substr(1, 3), "PNG") << name;
  }
}

// --sampler all: a pair of grids per sampler, from the flow the run's objective trained.
TEST_F(CommandsTest, SampleWithEverySamplerWritesAPairOfGridsEach) {
  ASSERT_EQ(command("train").run(args({{"dataset", "hdf5:" + file("data.h5")}, {"hidden", "16"}, {"latent", "3"},
                                       {"prior", "ebm"}, {"energy-hidden", "8"}, {"batch-size", "8"}, {"epochs", "1"},
                                       {"eval-samples", "2"}, {"proposal", "flow"}, {"flow-fit", "reverse-kl"},
                                       {"threads", "1"}, {"run-dir", file("ebm-flow")}})),
            0);
  ASSERT_EQ(command("sample").run(args({{"count", "4"}, {"sampler", "all"}, {"sampler-steps", "3"},
                                        {"sampler-flow-steps", "3"}, {"hmc-trajectories", "2"}, {"threads", "1"},
                                        {"out", file("all-grids")}},
                                       {file("ebm-flow")})),
            0);
  for (const auto& name : sampler_names()) {
    const std::string suffix = name == default_sampler() ? "" : "-" + name;
    for (const std::string grid : {"prior_means", "prior_draws"})
      EXPECT_EQ(read_file(file("all-grids") + "/" + grid + suffix + ".png").substr(1, 3), "PNG") << name;
  }
}

TEST_F(CommandsTest, ExportWritesEveryParameter) {
  ASSERT_EQ(command("export").run(args({{"out", file("model.h5")}, {"threads", "1"}}, {file("ebm")})), 0);
  // The encoder's first layer: 12 pixels in, 16 hidden units out.
  auto w = h5_read(file("model.h5"), "encoder/net/0/weight");
  EXPECT_EQ(w.sizes(), torch::IntArrayRef({16, 12}));
  auto b = h5_read(file("model.h5"), "prior/b");
  EXPECT_EQ(b.numel(), 1);
}

TEST_F(CommandsTest, TheFlowPriorAndAnObjectivesFlowAreTrainedEvaluatedAndExported) {
  auto base = args({{"dataset", "hdf5:" + file("data.h5")}, {"hidden", "16"}, {"latent", "3"}, {"batch-size", "8"},
                    {"epochs", "1"}, {"eval-samples", "2"}, {"log-z-samples", "64"}, {"threads", "1"},
                    {"log-every", "1000"}});
  auto with = [&](std::vector<std::string> extra) {
    auto all = base;
    all.insert(all.end(), extra.begin(), extra.end());
    return all;
  };
  ASSERT_EQ(command("train").run(with({"--prior", "flow", "--flow-layers", "2", "--run-dir", file("flow-prior")})), 0);
  ASSERT_EQ(command("train").run(with({"--prior", "ebm", "--energy-hidden", "8", "--objective", "fce", "--run-dir",
                                       file("fce")})),
            0);
  ASSERT_EQ(command("evaluate").run({file("flow-prior"), "--samples", "3", "--threads", "1", "--quality-samples", "0"}), 0);
  EXPECT_NE(read_file(file("flow-prior") + "/evaluation.json").find("\"estimator\": \"ELBO_3\""), std::string::npos);
  ASSERT_EQ(command("export").run({file("flow-prior"), "--out", file("flow-prior.h5"), "--threads", "1"}), 0);
  EXPECT_TRUE(h5_has(file("flow-prior.h5"), "prior/flow/nets/1/4/weight"));
  EXPECT_FALSE(h5_has(file("flow-prior.h5"), "prior/flow/nets/2/4/weight")) << "two layers";
  ASSERT_EQ(command("export").run({file("fce"), "--out", file("fce.h5"), "--threads", "1"}), 0);
  EXPECT_TRUE(h5_has(file("fce.h5"), "objective_flow/nets/5/4/weight")) << "the FCE flow, six layers";
  EXPECT_TRUE(h5_has(file("fce.h5"), "prior/f/0/weight"));
}

TEST_F(CommandsTest, TrainClassifierRefusesImagesItCannotUse) {
  EXPECT_THROW_WITH(command("train-classifier").run(args({{"dataset", "hdf5:" + file("data.h5")}, {"threads", "1"}})),
                    "has no labels");
}

TEST_F(CommandsTest, FlagsAreCheckedBeforeAnyDataIsRead) {
  // No data here: the bad objective is what the error names, and no run directory is made.
  EXPECT_THROW_WITH(command("train").run(args({{"data-dir", file("nowhere")}, {"prior", "ebm"}, {"objective", "nope"},
                                               {"threads", "1"}, {"run-dir", file("never")}})),
                    "unknown objective 'nope'");
  EXPECT_THROW_WITH(command("train").run(args({{"data-dir", file("nowhere")}, {"lr", "-1"}, {"threads", "1"},
                                               {"run-dir", file("never")}})),
                    "--lr: must be finite and > 0, got -1");
  EXPECT_THROW_WITH(command("train").run(args({{"data-dir", file("nowhere")}, {"prior", "ebm"}, {"mcmc-step-size", "-1"},
                                               {"objective", "short-run-mcmc"}, {"threads", "1"},
                                               {"run-dir", file("never")}})),
                    "--mcmc-step-size: must be finite and >= 0");
  for (const char* bad : {"-1", "nan"})
    EXPECT_THROW_WITH(command("train").run(args({{"data-dir", file("nowhere")}, {"log-every", bad}, {"threads", "1"},
                                                 {"run-dir", file("never")}})),
                      "--log-every: must be > 0 (seconds), got " + std::string(bad == std::string("nan") ? "nan" : "-1"));
  EXPECT_THROW_WITH(command("train").run(args({{"data-dir", file("nowhere")}, {"on-divergence", "retry"},
                                               {"threads", "1"}, {"run-dir", file("never")}})),
                    "unknown policy 'retry' (valid: stop, rollback, warn)");
  EXPECT_THROW_WITH(command("sample").run(args({{"sampler-step-size", "0"}}, {file("ebm")})),
                    "--sampler-step-size: must be finite and > 0, got 0");
  EXPECT_THROW_WITH(command("sample").run(args({{"sampler", "nuts"}}, {file("ebm")})), "--sampler");
  EXPECT_FALSE(std::filesystem::exists(file("never")));
}

TEST_F(CommandsTest, ARunThatFailsBeforeItsFirstCheckpointLeavesNoDirectory) {
  // --refine-steps with a Gaussian prior is found when the trainer is built, after the run
  // directory was made: the directory goes again, and the same command can be run once fixed.
  EXPECT_THROW_WITH(command("train").run(args({{"dataset", "hdf5:" + file("data.h5")}, {"hidden", "16"},
                                               {"latent", "3"}, {"batch-size", "8"}, {"refine-steps", "1"},
                                               {"threads", "1"}, {"run-dir", file("refined")}})),
                    "refine-steps");
  EXPECT_FALSE(std::filesystem::exists(file("refined")));
  // A batch larger than the data, found by the batcher.
  EXPECT_THROW_WITH(command("train").run(args({{"dataset", "hdf5:" + file("data.h5")}, {"hidden", "16"},
                                               {"latent", "3"}, {"batch-size", "256"}, {"threads", "1"},
                                               {"run-dir", file("big-batch")}})),
                    "larger than the data set");
  EXPECT_FALSE(std::filesystem::exists(file("big-batch")));
  EXPECT_THROW_WITH(command("train").run(args({{"data-dir", file("nowhere")}, {"lr", "inf"}, {"threads", "1"},
                                               {"run-dir", file("never")}})),
                    "--lr: must be finite and > 0, got inf");
}

TEST_F(CommandsTest, SigtermStopsTrainingWithACheckpointAndResumeClearsPartialFiles) {
  const std::string dir = file("stopped");
  const std::string train = kBinary + " train --dataset hdf5:" + file("data.h5") +
                            " --hidden 16 --latent 3 --batch-size 8 --epochs 100000 --eval-every 100000"
                            " --threads 1 --log-every 1000 --run-dir " + dir;
  // Start it as nohup does (SIGHUP ignored), send SIGHUP, which must not stop it, then SIGTERM
  // as a batch scheduler would.
  const std::string script = "((trap \"\" HUP; exec " + train + ") > " + file("stopped.log") +
                             " 2>&1 & pid=$!; sleep 2; kill -HUP $pid; sleep 1; kill -TERM $pid; wait $pid; echo $?)";
  FILE* p = popen(("bash -c '" + script + "'").c_str(), "r");
  ASSERT_NE(p, nullptr);
  char buf[64] = {0};
  ASSERT_NE(fgets(buf, sizeof buf, p), nullptr);
  pclose(p);
  EXPECT_EQ(std::string(buf), "143\n") << read_file(file("stopped.log"));
  const auto metrics = read_file(dir + "/metrics.jsonl");
  EXPECT_NE(metrics.find(R"("event":"interrupted")"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find(R"("signal":"SIGTERM")"), std::string::npos) << metrics;
  EXPECT_FALSE(std::filesystem::is_empty(dir + "/checkpoints")) << "the stop saved a checkpoint";
  // A partial file from a process killed while writing is removed when the run resumes.
  std::ofstream(dir + "/checkpoints/best.pt.tmp-AbC123") << "partial";
  ASSERT_EQ(command("train").run(args({{"resume", dir}, {"max-steps", "1"}, {"threads", "1"}})), 0);
  EXPECT_FALSE(std::filesystem::exists(dir + "/checkpoints/best.pt.tmp-AbC123"));
}

TEST_F(CommandsTest, OneProcessPerRunDirectoryAndTheLogKeepsWholeLines) {
  RunDir run = RunDir::open(file("ebm"));
  {
    const auto held = run.lock();  // as a second training process would find it
    EXPECT_THROW_WITH(command("train").run(args({{"resume", file("ebm")}, {"threads", "1"}})),
                      "is in use by another vae-ebm process (pid ");
  }
  // A partial last line, as a process killed mid-append leaves it, is cut when the run resumes.
  const auto before = read_file(file("ebm") + "/metrics.jsonl");
  std::ofstream(file("ebm") + "/metrics.jsonl", std::ios::app) << R"({"event":"trai)";
  ASSERT_EQ(command("train").run(args({{"resume", file("ebm")}, {"threads", "1"}})), 0);
  const auto after = read_file(file("ebm") + "/metrics.jsonl");
  ASSERT_GE(after.size(), before.size());
  EXPECT_EQ(after.substr(0, before.size()), before);
  EXPECT_EQ(after.find(R"({"event":"trai{)"), std::string::npos) << "no record glued onto the partial line";
  size_t start = 0;
  for (size_t end; (end = after.find('\n', start)) != std::string::npos; start = end + 1)
    EXPECT_EQ(after[start], '{') << "line at byte " << start;
  EXPECT_EQ(start, after.size()) << "the log ends with a whole line";
}

TEST_F(CommandsTest, AConfigThatIsADirectoryIsRefused) {
  EXPECT_THROW_WITH(command("train").run(args({{"config", file("ebm")}})), "is not a file");
}

TEST_F(CommandsTest, TheUsageListsEveryCommandOfTheTable) {
  const auto usage = cli::usage_text();
  for (const auto& c : cli::command_table()) {
    EXPECT_NE(usage.find("  " + c.name + " "), std::string::npos) << c.name;
    EXPECT_NE(usage.find(c.summary), std::string::npos) << c.name;
  }
  const char* argv[] = {"vae-ebm", "no-such-command"};
  EXPECT_EQ(cli::main_entry(2, const_cast<char**>(argv)), 2);
}

// The conv family and the shape-generic classifier through the commands, on 12x16 images of
// two classes (a bright left or right half): train, sample, export, train-classifier and
// evaluate's sample-quality scores, and a classifier of another shape refused by name.
TEST(ConvFamilyCommandsTest, TrainSampleExportAndScoreImagesOtherThan28x28) {
  torch::manual_seed(0);
  TempDir tmp;
  write_two_class_data(tmp.file("data.h5"), 3, 64, 16, 16);
  auto run = [](const std::string& name, const std::vector<std::string>& arguments) {
    return command(name).run(arguments);
  };
  const std::string data = "hdf5:" + tmp.file("data.h5");
  ASSERT_EQ(run("train", {"--dataset", data, "--architecture", "conv", "--conv-width", "4", "--latent", "3",
                          "--batch-size", "16", "--epochs", "1", "--eval-samples", "2", "--threads", "1",
                          "--log-every", "1000", "--run-dir", tmp.file("conv")}),
            0);
  EXPECT_NE(read_file(tmp.file("conv") + "/config.ini").find("conv-width=4\n"), std::string::npos);
  ASSERT_EQ(run("sample", {tmp.file("conv"), "--count", "9", "--threads", "1"}), 0);
  EXPECT_TRUE(std::filesystem::exists(tmp.file("conv") + "/samples/prior_means.png"));
  ASSERT_EQ(run("export", {tmp.file("conv"), "--out", tmp.file("conv.h5"), "--threads", "1"}), 0);
  EXPECT_TRUE(h5_has(tmp.file("conv.h5"), "decoder/net/4/weight"));
  EXPECT_NE(read_file(tmp.file("conv.h5")).find("conv_width"), std::string::npos);
  // The classifier for these images, then the scores against it.
  ASSERT_EQ(run("train-classifier", {"--dataset", data, "--epochs", "1", "--threads", "1", "--out",
                                     tmp.file("classifier.pt")}),
            0);
  EXPECT_EQ(load_classifier(tmp.file("classifier.pt"))->options().num_classes(), 2) << "as many classes as the labels";
  ASSERT_EQ(run("evaluate", {tmp.file("conv"), "--samples", "2", "--quality-samples", "32", "--classifier",
                             tmp.file("classifier.pt"), "--threads", "1"}),
            0);
  EXPECT_NE(read_file(tmp.file("conv") + "/evaluation.json").find("classifier_score"), std::string::npos);
  EXPECT_NE(read_file(tmp.file("conv") + "/evaluation.json").find("draws of p(x|z) at prior samples"), std::string::npos);
  // The decoder's means scored instead of its draws, when asked.
  ASSERT_EQ(run("evaluate", {tmp.file("conv"), "--samples", "2", "--quality-samples", "32", "--quality-images", "means",
                             "--classifier", tmp.file("classifier.pt"), "--threads", "1"}),
            0);
  EXPECT_NE(read_file(tmp.file("conv") + "/evaluation.json").find("the decoder's means at prior samples"),
            std::string::npos);
  EXPECT_THROW_WITH(run("evaluate", {tmp.file("conv"), "--quality-images", "mean"}), "--quality-images");
  // An MNIST classifier does not score 12x16 images.
  FeatureClassifier mnist;
  save_classifier(mnist, tmp.file("mnist.pt"));
  EXPECT_THROW_WITH(run("evaluate", {tmp.file("conv"), "--samples", "2", "--quality-samples", "32", "--classifier",
                                     tmp.file("mnist.pt"), "--threads", "1"}),
                    "trained on images of shape 1x28x28");
}

// evaluate's colour coverage on RGB data, end to end: 8x8 binary colour images (two classes, a
// coloured left or right half on another colour), a tiny model and classifier; the record carries
// the coverage of the background and digit colours, and only for colour data.
TEST(ColourCommandsTest, EvaluateRecordsTheColourCoverageOfRgbData) {
  torch::manual_seed(0);
  TempDir tmp;
  {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(3);
    H5Writer writer(tmp.file("rgb.h5"));
    for (const auto& [name, n] : std::vector<std::pair<std::string, int64_t>>{{"train", 64}, {"validation", 16}, {"test", 32}}) {
      auto labels = torch::randint(0, 2, {n}, gen, torch::kLong);
      auto left = (torch::arange(8) < 4).to(torch::kFloat).view({1, 1, 1, 8});
      auto half = torch::where(labels.view({n, 1, 1, 1}) == 0, left, 1 - left).expand({n, 1, 8, 8});
      auto fg = torch::randint(0, 2, {n, 3, 1, 1}, gen).to(torch::kFloat), bg = 1 - fg;
      writer.write(name, half * fg + (1 - half) * bg);
      writer.write(name + "_labels", labels);
    }
    writer.attribute("/", "layout", std::string("NCHW"));
    writer.close();
  }
  const std::string data = "hdf5:" + tmp.file("rgb.h5");
  ASSERT_EQ(command("train").run({"--dataset", data, "--hidden", "16", "--latent", "2", "--batch-size", "16", "--epochs", "1",
                                  "--eval-samples", "2", "--threads", "1", "--log-every", "1000", "--run-dir", tmp.file("rgb")}),
            0);
  ASSERT_EQ(command("train-classifier").run({"--dataset", data, "--epochs", "1", "--threads", "1", "--out",
                                             tmp.file("classifier.pt")}),
            0);
  ASSERT_EQ(command("evaluate").run({tmp.file("rgb"), "--samples", "2", "--quality-samples", "64", "--classifier",
                                     tmp.file("classifier.pt"), "--threads", "1"}),
            0);
  const auto json = read_file(tmp.file("rgb") + "/evaluation.json");
  EXPECT_NE(json.find("\"colour\""), std::string::npos) << json;
  const double tv = json_number(json, "background_tv");
  EXPECT_GE(tv, 0.0);
  EXPECT_LE(tv, 1.0);
  EXPECT_GE(json_number(json, "real_background_bins"), 1);
}

}  // namespace vae_ebm::test
