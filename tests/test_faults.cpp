// What survives what (README, "What survives what"): damaged checkpoints, divergence, kill -9
// at any point (also inside a checkpoint write), a full disk, unwritable output, changed data.
#include <H5Cpp.h>
#include <sys/mount.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <regex>
#include <set>

#include "apps/cli.h"
#include "apps/command.h"
#include "data/archive.h"
#include "data/files.h"
#include "data/hdf5_io.h"
#include "data/sha256.h"
#include "tests/support.h"
#include "vae/model.h"
#include "vae/trainer.h"

namespace vae_ebm::test {

namespace fs = std::filesystem;

namespace {

// Adds 1 to the byte at `fraction` of the file's length.
void flip_byte(const std::string& path, double fraction) {
  auto bytes = read_file(path);
  bytes[static_cast<size_t>(fraction * static_cast<double>(bytes.size()))] += 1;
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

// Every line of metrics.jsonl is one whole JSON object.
void expect_whole_lines(const std::string& path) {
  const auto text = read_file(path);
  ASSERT_FALSE(text.empty());
  EXPECT_EQ(text.back(), '\n') << path;
  size_t start = 0;
  for (size_t end; (end = text.find('\n', start)) != std::string::npos; start = end + 1) {
    EXPECT_EQ(text[start], '{') << path << " at byte " << start;
    EXPECT_EQ(text[end - 1], '}') << path << " at byte " << end;
  }
}

std::vector<std::string> partial_files(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& entry : fs::recursive_directory_iterator(dir))
    if (entry.path().filename().string().find(".tmp-") != std::string::npos) out.push_back(entry.path());
  return out;
}

// The steps of the records of one event in a metrics log, in order.
std::vector<int64_t> steps_of(const std::string& metrics, const std::string& event) {
  std::vector<int64_t> out;
  const std::regex pattern("\\{\"event\":\"" + event + "\",\"step\":([0-9]+)");
  for (std::sregex_iterator it(metrics.begin(), metrics.end(), pattern), end; it != end; ++it)
    out.push_back(std::stoll((*it)[1]));
  return out;
}

// The model the fixture's runs train (hidden 16, latent 3, 3x4 images, Gaussian prior).
std::shared_ptr<VaeModel> tiny_model() {
  return std::make_shared<VaeModel>(NetworkOptions().hidden({16}).latent_dim(3).image_shape({1, 3, 4}),
                                    PriorOptions("gaussian", 3));
}

int shell(const std::string& script) {
  const int status = std::system(("bash -c '" + script + "'").c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace

class FaultsTest : public ::testing::Test {
 protected:
  static inline TempDir* tmp = nullptr;
  static std::string file(const std::string& name) { return tmp->file(name); }
  static std::vector<std::string> args(std::map<std::string, std::string> flags) {
    std::map<std::string, std::string> all = {{"dataset", "hdf5:" + file("data.h5")}, {"hidden", "16"}, {"latent", "3"},
                                              {"batch-size", "8"}, {"epochs", "2"}, {"eval-samples", "2"},
                                              {"log-z-samples", "64"}, {"threads", "1"}, {"log-every", "1000"}};
    for (const auto& [k, v] : flags) all[k] = v;
    std::vector<std::string> out;
    for (const auto& [flag, value] : all) {
      if (value == "-") continue;  // a default flag left out
      out.push_back("--" + flag);
      out.push_back(value);
    }
    return out;
  }
  static int train(const std::map<std::string, std::string>& flags) { return command("train").run(args(flags)); }
  static std::string binary_train(const std::string& flags) {
    return kBinary + " train --dataset hdf5:" + file("data.h5") +
           " --hidden 16 --latent 3 --batch-size 8 --eval-samples 2 --threads 1 --log-every 1000 " + flags;
  }
  static void SetUpTestSuite() {
    tmp = new TempDir();
    write_tiny_binary_data(file("data.h5"), 7);
  }
  static void TearDownTestSuite() {
    delete tmp;
    tmp = nullptr;
  }
};

TEST_F(FaultsTest, ASealedCheckpointRefusesAFlippedByteInEveryCommand) {
  ASSERT_EQ(train({{"run-dir", file("sealed")}}), 0);
  const auto best = file("sealed") + "/checkpoints/best.pt";
  ArchiveReader intact(read_file(best), torch::kCPU, best);
  EXPECT_TRUE(intact.sealed());
  flip_byte(best, 0.5);
  const std::string seal = "do not match their SHA-256 seal";
  EXPECT_THROW_WITH(command("evaluate").run({file("sealed"), "--threads", "1", "--quality-samples", "0"}), seal);
  EXPECT_THROW_WITH(command("export").run({file("sealed"), "--out", file("sealed.h5"), "--threads", "1"}), seal);
  EXPECT_THROW_WITH(command("sample").run({file("sealed"), "--threads", "1"}), seal);
  EXPECT_FALSE(fs::exists(file("sealed.h5")));
}

TEST_F(FaultsTest, NanWeightsInAnUnsealedCheckpointAreRefusedByName) {
  // As vae-ebm 0.1 wrote checkpoints (no seal), with NaN written into a decoder bias.
  auto model = tiny_model();
  {
    torch::NoGradGuard no_grad;
    model->decoder->named_parameters().begin()->value().fill_(std::nan(""));
  }
  torch::serialize::OutputArchive archive, model_archive;
  archive.write("format", torch::full({}, int64_t{1}, torch::kLong));
  model->save(model_archive);
  archive.write("model", model_archive);
  std::ostringstream bytes;
  archive.save_to(bytes);
  const auto path = file("nan.pt");
  std::ofstream(path, std::ios::binary) << bytes.str();
  auto fresh = tiny_model();
  EXPECT_THROW_WITH(load_model_from_checkpoint(path, *fresh), "holds NaN or infinite values");
}

TEST_F(FaultsTest, ResumeSkipsADamagedNewestCheckpointAndRollsTheLogBack) {
  const auto dir = file("resumed");
  // 4 steps an epoch; a train record every step.
  ASSERT_EQ(train({{"run-dir", dir}, {"log-every", "1e-9"}}), 0);
  flip_byte(dir + "/checkpoints/step-000000008.pt", 0.5);
  ASSERT_EQ(train({{"resume", dir}, {"epochs", "3"}, {"dataset", "-"}, {"hidden", "-"}, {"latent", "-"},
                   {"batch-size", "-"}, {"eval-samples", "-"}, {"log-z-samples", "-"}, {"log-every", "-"}}),
            0);
  EXPECT_TRUE(fs::exists(dir + "/checkpoints/step-000000008.pt.corrupt")) << "set aside, not deleted";
  EXPECT_TRUE(fs::exists(dir + "/checkpoints/step-000000012.pt"));
  const auto metrics = read_file(dir + "/metrics.jsonl");
  EXPECT_NE(metrics.find(R"("skipped_checkpoints":[")" + dir + "/checkpoints/step-000000008.pt: "), std::string::npos)
      << metrics;
  // Steps 5-8 ran twice; the log holds them once, the first time's records are kept aside.
  const auto train_steps = steps_of(metrics, "train");
  EXPECT_EQ(train_steps, std::vector<int64_t>({1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}));
  EXPECT_EQ(steps_of(metrics, "validation"), std::vector<int64_t>({4, 8, 12}));
  const auto aside = read_file(dir + "/metrics.rolled-back.jsonl");
  EXPECT_EQ(steps_of(aside, "train"), std::vector<int64_t>({5, 6, 7, 8}));
  EXPECT_NE(metrics.find(R"("rolled_back_records":5)"), std::string::npos) << metrics;
  expect_whole_lines(dir + "/metrics.jsonl");
}

TEST_F(FaultsTest, ExplodedHasARelativeRuleWithAFloor) {
  EXPECT_TRUE(exploded(1006, 5));    // 1001 above: the floor is 1000
  EXPECT_FALSE(exploded(1004, 5));
  EXPECT_TRUE(exploded(20001, 1000));  // 19001 above 10 x 1000
  EXPECT_FALSE(exploded(10999, 1000));
  EXPECT_TRUE(exploded(-100 + 1001, -100));
}

TEST_F(FaultsTest, DivergenceStopsWithTheLikelyCauseAndTheRateMayChangeOnResume) {
  const auto dir = file("diverged");
  // Adam's first step moves every weight by about --lr: the second loss is not finite.
  EXPECT_EQ(train({{"run-dir", dir}, {"lr", "1e30"}}), 3);
  auto metrics = read_file(dir + "/metrics.jsonl");
  EXPECT_NE(metrics.find(R"("event":"diverged","step":2,"quantity":"training loss")"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find(R"("likely_cause":"lr","moved":{"vae":)"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find(R"("action":"stop")"), std::string::npos) << metrics;
  EXPECT_FALSE(fs::exists(dir + "/checkpoints/best.pt")) << "nothing after the divergence is saved";
  ASSERT_EQ(train({{"resume", dir}, {"lr", "0.001"}, {"dataset", "-"}, {"hidden", "-"}, {"latent", "-"},
                   {"batch-size", "-"}, {"eval-samples", "-"}, {"log-z-samples", "-"}}),
            0);
  metrics = read_file(dir + "/metrics.jsonl");
  EXPECT_NE(metrics.find(R"("changed":{"lr":{"was":"1e+30","now":"0.001"}})"), std::string::npos) << metrics;
  EXPECT_NE(read_file(dir + "/config.ini").find("\nlr=0.001\n"), std::string::npos);
  // An MCMC objective's chains that blow up at the first step: the sampler's step size is
  // blamed, and the run ends as a divergence at any later step does (issue 26, finding 7):
  // exit 3, the directory kept with the event.
  const auto mcmc = file("diverged-mcmc");
  const auto out = shell_output(binary_train("--run-dir " + mcmc + " --prior ebm --energy-hidden 8 --objective "
                                             "short-run-mcmc --mcmc-steps 2 --mcmc-step-size 1e12") + " 2>&1; echo rc=$?");
  EXPECT_NE(out.find("the likely cause is --mcmc-step-size (1e+12)"), std::string::npos) << out;
  EXPECT_NE(out.find("rc=3"), std::string::npos) << out;
  EXPECT_NE(read_file(mcmc + "/metrics.jsonl").find(R"("event":"diverged","step":1)"), std::string::npos);
}

TEST_F(FaultsTest, RollbackLowersTheRateInConfigAndGoesOn) {
  const auto dir = file("rolled-back");
  ASSERT_EQ(train({{"run-dir", dir}, {"lr", "1e30"}, {"on-divergence", "rollback"}, {"rollback-factor", "1e-33"}}), 0);
  const auto metrics = read_file(dir + "/metrics.jsonl");
  EXPECT_NE(metrics.find(R"("action":"rollback","lowered":"lr","was":1e+30)"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find(R"("event":"finished")"), std::string::npos) << metrics;
  std::smatch m;
  const auto config = read_file(dir + "/config.ini");
  ASSERT_TRUE(std::regex_search(config, m, std::regex("\nlr=([^\n]+)\n"))) << config;
  EXPECT_NEAR(std::stod(m[1]), 1e-3, 1e-12) << "a later --resume keeps the lowered rate";
  EXPECT_EQ(steps_of(metrics, "validation"), std::vector<int64_t>({4, 8}));
}

TEST_F(FaultsTest, ADivergenceThatComesBackAtTheSameStepSaysSoAndKeepsTheStepsTerms) {
  // --lr 1e30 diverges at step 2, and halving it twice leaves it diverging there.
  const auto dir = file("same-step");
  const auto out = shell_output(binary_train("--run-dir " + dir + " --lr 1e30 --on-divergence rollback --max-rollbacks 2") +
                                " 2>&1; echo rc=$?");
  EXPECT_NE(out.find("rc=3"), std::string::npos) << out;
  EXPECT_NE(out.find("training loss diverged at step 2 (nan) (kl "), std::string::npos) << out;
  EXPECT_NE(out.find("after 2 rollback(s); it diverged again at the same step after --lr was lowered; the likely "
                     "cause is --lr"),
            std::string::npos)
      << out;
  const auto metrics = read_file(dir + "/metrics.jsonl");
  EXPECT_NE(metrics.find(R"("action":"stop","diagnostics":{"kl":null,"reconstruction":null},"same_step_as_before":true})"),
            std::string::npos)
      << metrics;
}

TEST_F(FaultsTest, ASnelboLossThatIsMostlyItsNormaliserTermIsNamedAsSuch) {
  // The numbers of the SNL table's ml flow row at step 11,076.
  Divergence d(11076, "training loss", 1720.08);
  d.diagnostics = {{"b", 0.0347}, {"ess_fraction", 0.0078}, {"log_z_hat", 7.4287}};
  const auto said = normaliser_spike(d);
  EXPECT_NE(said.find("most of the loss is SNELBO's normaliser term exp(log_z_hat - b) = 1626.2"), std::string::npos)
      << said;
  EXPECT_NE(said.find("the rate is probably not the cause"), std::string::npos) << said;
  d.diagnostics["log_z_hat"] = 2.0;  // a term of 7 nats: the loss exploded elsewhere
  EXPECT_EQ(normaliser_spike(d), "");
  d.diagnostics.erase("b");  // not SNELBO
  EXPECT_EQ(normaliser_spike(d), "");
  Divergence nan(3, "training loss", std::nan(""));
  nan.diagnostics = {{"b", 0.0}, {"log_z_hat", 50.0}};
  EXPECT_EQ(normaliser_spike(nan), "");
}

TEST_F(FaultsTest, EvaluateChecksItCanWriteBeforeComputing) {
  ASSERT_EQ(train({{"run-dir", file("evaluated")}}), 0);
  std::ofstream(file("a-file")) << "x";
  EXPECT_THROW_WITH(command("evaluate").run({file("evaluated"), "--out", file("a-file") + "/records", "--threads", "1",
                                             "--quality-samples", "0"}),
                    "cannot write to " + file("a-file") + "/records");
  if (::geteuid() != 0) {  // root writes into a read-only directory anyway
    fs::permissions(file("evaluated"), fs::perms::owner_read | fs::perms::owner_exec);
    EXPECT_THROW_WITH(command("evaluate").run({file("evaluated"), "--threads", "1", "--quality-samples", "0"}),
                      "give --out DIR");
    fs::permissions(file("evaluated"), fs::perms::owner_all);
  }
  ASSERT_EQ(command("evaluate").run({file("evaluated"), "--out", file("records"), "--threads", "1", "--samples", "2",
                                     "--quality-samples", "0"}),
            0);
  EXPECT_TRUE(fs::exists(file("records") + "/evaluation.json"));
  EXPECT_TRUE(fs::exists(file("records") + "/evaluation-test.h5"));
  EXPECT_FALSE(fs::exists(file("evaluated") + "/evaluation.json"));
}

TEST_F(FaultsTest, TheDataFingerprintIsRecordedAndAChangeIsNamed) {
  fs::copy_file(file("data.h5"), file("mine.h5"));
  ASSERT_EQ(train({{"run-dir", file("fingerprinted")}, {"dataset", "hdf5:" + file("mine.h5")}}), 0);
  const auto config = read_file(file("fingerprinted") + "/config.ini");
  const auto digest = sha256_hex(read_file(file("mine.h5")));
  EXPECT_NE(config.find("# data: hdf5:" + file("mine.h5") + " sha256 "), std::string::npos) << config;
  EXPECT_NE(config.find("(mine.h5 " + digest + ")"), std::string::npos) << config;
  ASSERT_EQ(command("evaluate").run({file("fingerprinted"), "--threads", "1", "--samples", "2", "--quality-samples", "0"}),
            0);
  EXPECT_NE(read_file(file("fingerprinted") + "/evaluation.json").find("\"mine.h5\": \"" + digest + "\""),
            std::string::npos);
  // Other data under the same path: evaluate says so.
  {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(8);
    H5Writer writer(file("mine.h5"));
    for (const auto& [name, n] : std::vector<std::pair<std::string, int64_t>>{{"train", 32}, {"validation", 8}, {"test", 8}})
      writer.write(name, torch::bernoulli(torch::full({n, 3, 4}, 0.6), gen));
    writer.close();
  }
  testing::internal::CaptureStderr();
  const int rc = command("evaluate").run({file("fingerprinted"), "--threads", "1", "--samples", "2", "--quality-samples", "0"});
  const auto err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(rc, 0);
  EXPECT_NE(err.find("warning: the data differ from those the run was made with"), std::string::npos) << err;
}

TEST_F(FaultsTest, SizesAreCheckedBeforeAnythingIsAllocated) {
  // 5 million images declared, none written (a 2 KB file).
  const auto path = file("declared.h5");
  {
    H5::H5File h5(path, H5F_ACC_TRUNC);
    const hsize_t dims[3] = {5000000, 28, 28}, chunk[3] = {1000, 28, 28};
    H5::DSetCreatPropList plist;
    plist.setChunk(3, chunk);
    plist.setDeflate(4);
    for (const char* name : {"train", "validation", "test"})
      h5.createDataSet(name, H5::PredType::NATIVE_UINT8, H5::DataSpace(3, dims), plist);
  }
  EXPECT_LT(fs::file_size(path), 100000u);
  EXPECT_THROW_WITH(h5_read(path, "train"), "declares shape [5000000, 28, 28] but stores 0 of its 5000 chunks");
  // A whole dataset, chunked and compressed, is read.
  {
    H5::H5File h5(file("compressed.h5"), H5F_ACC_TRUNC);
    const hsize_t dims[2] = {1000, 12}, chunk[2] = {64, 12};
    H5::DSetCreatPropList plist;
    plist.setChunk(2, chunk);
    plist.setDeflate(6);
    auto data = h5.createDataSet("train", H5::PredType::NATIVE_FLOAT, H5::DataSpace(2, dims), plist);
    std::vector<float> values(1000 * 12, 0.25f);
    data.write(values.data(), H5::PredType::NATIVE_FLOAT);
  }
  EXPECT_FLOAT_EQ(h5_read(file("compressed.h5"), "train").sum().item<float>(), 0.25f * 12000);
  // 20 million float64 images, all of them in the file (a sparse one: 4 KB on disk): more than
  // this machine's memory.
  const auto big = file("big.h5");
  {
    H5::H5File h5(big, H5F_ACC_TRUNC);
    const hsize_t dims[3] = {20000000, 28, 28};
    H5::DSetCreatPropList plist;
    plist.setLayout(H5D_CONTIGUOUS);
    plist.setAllocTime(H5D_ALLOC_TIME_EARLY);
    plist.setFillTime(H5D_FILL_TIME_NEVER);
    h5.createDataSet("train", H5::PredType::IEEE_F64LE, H5::DataSpace(3, dims), plist);
  }
  EXPECT_THROW_WITH(h5_read(big, "train"), "of memory as read and as floats, more than the");
  fs::remove(big);
  // A truncated file: HDF5's own cause is named.
  const auto bytes = read_file(file("data.h5"));
  std::ofstream(file("truncated.h5"), std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  EXPECT_THROW_WITH(h5_read(file("truncated.h5"), "train"), "(HDF5: ");
  // Networks larger than the machine's memory are refused before they exist.
  EXPECT_THROW_WITH(train({{"run-dir", file("huge")}, {"latent", "2000000"}, {"hidden", "512,512"}}),
                    "of memory available");
  EXPECT_FALSE(fs::exists(file("huge")));
}

TEST_F(FaultsTest, KillNineAnywhereThenResumeEqualsARunThatNeverStopped) {
  // 10 epochs of 4 steps; validation every 2 epochs; every checkpoint kept.
  const std::string flags = " --epochs 10 --eval-every 2 --keep-checkpoints 100 --log-z-samples 64";
  ASSERT_EQ(shell(binary_train(flags + " --run-dir " + file("straight")) + " 2>/dev/null"), 0);
  const auto dir = file("killed");
  // Killed halfway through its 2nd, 3rd and 4th write (checkpoints, config.ini, the metrics
  // log's roll-back), then three times at seeded random times, then resumed until it finishes.
  std::mt19937 rng(17);
  int finished = -1;
  const std::string log = file("killed.log");
  for (int attempt = 0; attempt < 9 && finished != 0; ++attempt) {
    const std::string run = (attempt == 0 ? binary_train(flags + " --run-dir " + dir)
                                          : kBinary + " train --threads 1 --resume " + dir) +
                            " 2>>" + log;
    std::string script;
    if (attempt < 3) {
      script = "VAE_EBM_KILL_IN_WRITE=" + std::to_string(attempt + 2) + " " + run;
    } else if (attempt < 6) {
      const double delay = std::uniform_real_distribution<double>(0.3, 2.0)(rng);
      script = "(" + run + " & pid=$!; sleep " + std::to_string(delay) + "; kill -9 $pid 2>/dev/null; wait $pid)";
    } else {
      script = run;
    }
    finished = shell(script);
    if (attempt < 3) EXPECT_NE(finished, 0) << "attempt " << attempt << " should have been killed";
  }
  ASSERT_EQ(finished, 0) << "the run never finished:\n" << read_file(log);
  EXPECT_TRUE(partial_files(dir).empty());
  expect_whole_lines(dir + "/metrics.jsonl");
  auto straight = tiny_model(), killed = tiny_model();
  load_model_from_checkpoint(file("straight") + "/checkpoints/step-000000040.pt", *straight);
  load_model_from_checkpoint(dir + "/checkpoints/step-000000040.pt", *killed);
  auto a = straight->named_parameters(), b = killed->named_parameters();
  ASSERT_EQ(a.size(), b.size());
  for (const auto& p : a) EXPECT_TRUE(torch::equal(p.value(), b[p.key()])) << p.key();
  EXPECT_EQ(steps_of(read_file(dir + "/metrics.jsonl"), "validation"), std::vector<int64_t>({8, 16, 24, 32, 40}));
}

TEST_F(FaultsTest, AFullDiskStopsWithAClearErrorAndTheRunResumes) {
  if (::geteuid() != 0) GTEST_SKIP() << "the disk-full test mounts a small tmpfs, which needs root";
  const auto mount_point = file("small-disk");
  fs::create_directories(mount_point);
  if (::mount("tmpfs", mount_point.c_str(), "tmpfs", 0, "size=2m") != 0)
    GTEST_SKIP() << "cannot mount a tmpfs here: " << std::strerror(errno);
  struct Unmount {
    std::string path;
    ~Unmount() { ::umount2(path.c_str(), MNT_DETACH); }
  } unmount{mount_point};
  const auto dir = mount_point + "/run";
  // Leave about 12 KB: config.ini and the log fit, a checkpoint does not.
  struct statvfs fs_info {};
  ASSERT_EQ(::statvfs(mount_point.c_str(), &fs_info), 0);
  const auto free_bytes = static_cast<int64_t>(fs_info.f_bavail) * static_cast<int64_t>(fs_info.f_frsize);
  {
    std::ofstream filler(mount_point + "/filler", std::ios::binary);
    filler << std::string(static_cast<size_t>(free_bytes - 12 * 1024), 'x');
  }
  EXPECT_THROW_WITH(train({{"run-dir", dir}, {"log-every", "1e-9"}}), "No space left on device");
  EXPECT_TRUE(partial_files(dir).empty());
  expect_whole_lines(dir + "/metrics.jsonl");
  fs::remove(mount_point + "/filler");
  ASSERT_EQ(train({{"resume", dir}, {"dataset", "-"}, {"hidden", "-"}, {"latent", "-"}, {"batch-size", "-"},
                   {"eval-samples", "-"}, {"log-z-samples", "-"}, {"log-every", "-"}}),
            0);
  EXPECT_NE(read_file(dir + "/metrics.jsonl").find(R"("event":"finished")"), std::string::npos);
}

}  // namespace vae_ebm::test
