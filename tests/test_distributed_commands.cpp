// `vae-ebm evaluate` and `vae-ebm train-classifier` data-parallel, as torchrun starts them (two
// processes of the built binary given RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT) and as
// --nproc does: two processes must give the numbers of one with the same seed.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "data/files.h"
#include "data/hdf5_io.h"
#include "estimators/classifier.h"
#include "tests/support.h"

namespace vae_ebm::test {

namespace {

// The number after "FIELD": in the object "OBJECT": {...} of a JSON text (evaluation.json).
double json_number(const std::string& json, const std::string& object, const std::string& field) {
  const auto at = json.find("\"" + object + "\": {");
  if (at == std::string::npos) return std::nan("");
  const auto key = json.find("\"" + field + "\":", at);
  if (key == std::string::npos || key > json.find('}', at)) return std::nan("");
  return std::strtod(json.c_str() + key + field.size() + 3, nullptr);
}

// max over i of |a_i - b_i| / max(|a_i|, 1e-30): 0 for the same numbers.
double relative_distance(const torch::Tensor& a, const torch::Tensor& b) {
  EXPECT_EQ(a.sizes(), b.sizes());
  return ((a - b).abs() / a.abs().clamp_min(1e-30)).max().item<double>();
}

}  // namespace

// Two runs (a Gaussian prior and an energy prior trained with the SNELBO) on 12x16 images with
// 250 test images: three of evaluate's blocks of 100 images, one for rank 0 and two for rank 1.
class DistributedEvaluateTest : public ::testing::Test {
 protected:
  static TempDir* tmp;

  static void SetUpTestSuite() {
    tmp = new TempDir();
    write_two_class_data(tmp->file("data.h5"), 5, 64, 16, 250);
    for (const std::string prior : {"gaussian", "ebm"}) {
      const auto out = shell_output(kBinary + " train --dataset hdf5:" + tmp->file("data.h5") +
                             " --hidden 16 --latent 3 --energy-hidden 8,8 --batch-size 16 --epochs 1 --eval-samples 2"
                             " --log-z-samples 64 --threads 1 --log-every 1000 --prior " + prior + " --run-dir " +
                             tmp->file(prior) + " > " + tmp->file(prior + ".log") + " 2>&1; echo -n $?");
      ASSERT_EQ(out, "0") << read_file(tmp->file(prior + ".log"));
    }
  }
  static void TearDownTestSuite() {
    delete tmp;
    tmp = nullptr;
  }

  // Evaluates RUN with FLAGS in one process and in two, each into its own directory, and
  // expects the same per-image bounds, estimates and log Z (where the prior has one) within
  // `tolerance` relative. Returns the two records' directories.
  std::pair<std::string, std::string> expect_two_equal_one(const std::string& run, const std::string& flags,
                                                           const std::string& name, double tolerance) {
    const auto one = tmp->file(name + "-one"), two = tmp->file(name + "-two");
    const auto args = " evaluate " + tmp->file(run) + " --samples 4 --quality-samples 0 --threads 1 --dist-timeout 60 " + flags;
    EXPECT_EQ(shell_output(kBinary + args + " --out " + one + " > " + one + ".log 2>&1; echo -n $?"), "0")
        << read_file(one + ".log");
    EXPECT_EQ(launch_ranks(kBinary, 2, args + " --out " + two, two + ".log"), "0 0 ")
        << read_file(two + ".log.rank0") << read_file(two + ".log.rank1");
    // Rank 0 alone writes and prints.
    EXPECT_EQ(read_file(two + ".log.rank1").find("wrote"), std::string::npos) << read_file(two + ".log.rank1");
    const bool energy = run == "ebm";
    double worst = 0;
    for (const std::string bound : {energy ? "SNELBO_4" : "ELBO_4", energy ? "SN-IWAE_4" : "IWAE_4"}) {
      auto a = h5_read(one + "/evaluation-test.h5", bound), b = h5_read(two + "/evaluation-test.h5", bound);
      EXPECT_EQ(a.size(0), 250);
      const double d = relative_distance(a, b);
      EXPECT_LE(d, tolerance) << name << " " << bound;
      worst = std::max(worst, d);
    }
    const auto ja = read_file(one + "/evaluation.json"), jb = read_file(two + "/evaluation.json");
    EXPECT_NE(jb.find("\"processes\": \"2 processes (gloo"), std::string::npos) << jb;
    if (energy) {
      for (const std::string field : {"value", "std_error", "ess", "count"}) {
        const double a = json_number(ja, "log_z", field), b = json_number(jb, "log_z", field);
        EXPECT_TRUE(std::isfinite(a)) << name << " log_z " << field << "\n" << ja;
        const double d = std::abs(a - b) / std::max(std::abs(a), 1e-30);
        EXPECT_LE(d, tolerance) << name << " log_z " << field << ": " << a << " vs " << b;
        worst = std::max(worst, d);
      }
    }
    std::fprintf(stderr, "%s: largest relative difference, 2 processes vs 1: %g\n", name.c_str(), worst);
    return {one, two};
  }
};
TempDir* DistributedEvaluateTest::tmp = nullptr;

// The tolerance, 1e-5 relative, allows for float sums in another order; with one thread a
// process, the numbers agree to the bit here (the test prints the distance).
constexpr double kEvaluateTolerance = 1e-5;

TEST_F(DistributedEvaluateTest, TwoProcessesEqualOneWithTheGaussianPrior) {
  const auto [one, two] = expect_two_equal_one("gaussian", "", "gaussian", kEvaluateTolerance);
  // --nproc 2 is the same launch, started by vae-ebm itself: the same bits.
  const auto nproc = tmp->file("gaussian-nproc");
  ASSERT_EQ(shell_output(kBinary + " evaluate " + tmp->file("gaussian") + " --samples 4 --quality-samples 0 --threads 1 --out " +
                  nproc + " --nproc 2 > " + nproc + ".log 2>&1; echo -n $?"),
            "0")
      << read_file(nproc + ".log");
  EXPECT_TRUE(torch::equal(h5_read(nproc + "/evaluation-test.h5", "IWAE_4"), h5_read(two + "/evaluation-test.h5", "IWAE_4")));
  EXPECT_NE(read_file(nproc + ".log").find("started 2 processes"), std::string::npos) << read_file(nproc + ".log");
}

// log Z's importance samples in blocks of 8192 (20000: three blocks) and AIS's chains in blocks
// of 50 (120: three blocks), shared out over the ranks and gathered.
TEST_F(DistributedEvaluateTest, TwoProcessesEqualOneWithTheSnelboForEachLogZMethod) {
  expect_two_equal_one("ebm", "--log-z-method is --log-z-samples 20000", "ebm-is", kEvaluateTolerance);
  expect_two_equal_one("ebm", "--log-z-method ais --ais-chains 120 --ais-temperatures 20", "ebm-ais", kEvaluateTolerance);
  // The flow is fitted on every rank alike; its importance samples are shared out.
  expect_two_equal_one("ebm", "--log-z-method flow --flow-steps 20 --flow-refine-steps 10 --log-z-samples 20000",
                       "ebm-flow", kEvaluateTolerance);
  // AIS from that flow: the chains in blocks, each block's step size adapted by its own chains.
  expect_two_equal_one("ebm", "--log-z-method flow-ais --flow-steps 20 --flow-refine-steps 10 --ais-chains 120 "
                       "--ais-temperatures 20", "ebm-flow-ais", kEvaluateTolerance);
  // Two estimates (b replaced, then Zhat), by auto's choice.
  expect_two_equal_one("ebm", "--log-z-method auto --normaliser estimated --log-z-samples 20000 --flow-steps 20 "
                       "--flow-refine-steps 10", "ebm-auto", kEvaluateTolerance);
}

TEST_F(DistributedEvaluateTest, RanksGivenOtherFlagsStopNamingTheRank) {
  const int port = free_port();
  const auto log = tmp->file("differ.log");
  std::string script;
  for (int r = 0; r < 2; ++r)
    script += "RANK=" + std::to_string(r) + " WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=" + std::to_string(port) +
              " " + kBinary + " evaluate " + tmp->file("gaussian") + " --samples " + (r == 0 ? "4" : "5") +
              " --quality-samples 0 --threads 1 --dist-timeout 60 --out " + tmp->file("differ") + " > " + log +
              std::to_string(r) + " 2>&1 & p" + std::to_string(r) + "=$!; ";
  script += "wait $p0; echo -n \"$? \"; wait $p1; echo -n \"$?\"";
  EXPECT_EQ(shell_output(script), "1 1");
  EXPECT_NE(read_file(log + "0").find("evaluate flags (--checkpoint, --dataset, --split, --samples"), std::string::npos)
      << read_file(log + "0");
  EXPECT_NE(read_file(log + "0").find("of rank 1 differ from rank 0's"), std::string::npos) << read_file(log + "0");
  EXPECT_FALSE(std::filesystem::exists(tmp->file("differ") + "/evaluation.json"));
}

// The classifier, data-parallel: 64 images in global batches of 15 (ranks of 7 and 8 rows, and
// a last batch of 4: 2 and 2), two epochs, against one process.
TEST(DistributedClassifierTest, TwoProcessesEqualOne) {
  TempDir tmp;
  write_two_class_data(tmp.file("data.h5"), 9, 64, 16, 16);
  const auto args = " train-classifier --dataset hdf5:" + tmp.file("data.h5") +
                    " --epochs 2 --batch-size 15 --threads 1 --dist-timeout 60 --out ";
  ASSERT_EQ(shell_output(kBinary + args + tmp.file("one.pt") + " > " + tmp.file("one.log") + " 2>&1; echo -n $?"), "0")
      << read_file(tmp.file("one.log"));
  ASSERT_EQ(launch_ranks(kBinary, 2, args + tmp.file("two.pt"), tmp.file("two.log")), "0 0 ")
      << read_file(tmp.file("two.log.rank0")) << read_file(tmp.file("two.log.rank1"));
  EXPECT_EQ(read_file(tmp.file("two.log.rank1")).find("wrote"), std::string::npos);
  EXPECT_NE(read_file(tmp.file("two.log.rank0")).find("data-parallel over 2 processes"), std::string::npos);
  // The epochs' losses, over all rows, as one process prints them.
  for (const std::string epoch : {"epoch 1: training loss ", "epoch 2: training loss "}) {
    const auto a = read_file(tmp.file("one.log")), b = read_file(tmp.file("two.log.rank0"));
    ASSERT_NE(a.find(epoch), std::string::npos) << a;
    EXPECT_EQ(a.substr(a.find(epoch), epoch.size() + 6), b.substr(b.find(epoch), epoch.size() + 6));
  }
  auto one = load_classifier(tmp.file("one.pt")), two = load_classifier(tmp.file("two.pt"));
  auto pa = one->named_parameters(), pb = two->named_parameters();
  double worst = 0, moved = 0;
  auto fresh = [] {
    torch::manual_seed(0);  // train_classifier's initialisation with --seed 0
    return FeatureClassifier(ClassifierOptions().image_shape({1, 12, 16}).num_classes(2));  // two labels
  }();
  for (const auto& p : pa) {
    worst = std::max(worst, (p.value() - pb[p.key()]).abs().max().item<double>());
    moved = std::max(moved, (p.value() - fresh->named_parameters()[p.key()]).abs().max().item<double>());
  }
  // The tolerance, 1e-5 absolute after 10 Adam steps at lr 1e-3: the gradients are sums in
  // another order (each rank's rows, then the all-reduce), which Adam carries into the
  // parameters; training itself moved them by `moved` (about the 10 steps' 1e-2).
  EXPECT_GT(moved, 1e-3);
  EXPECT_LT(worst, 1e-5);
  std::fprintf(stderr, "classifier: max |parameter difference| after 10 steps, 2 processes vs 1: %g (training moved "
                       "them by up to %g)\n", worst, moved);
}

}  // namespace vae_ebm::test
