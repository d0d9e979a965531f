// Data-parallel training (common/distributed.h): the collectives between two ranks in one test
// process (two threads, Gloo over loopback), and `vae-ebm train` as torchrun starts it: two
// processes of the built binary given RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT, whose
// parameters after k steps must equal one process's with the same global batch and seed, and
// whose failures (a rank killed, a bad launch) must end in a clear error, not a hang.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <limits>
#include <thread>

#include "apps/cli.h"
#include "apps/run_support.h"
#include "common/distributed.h"
#include "data/files.h"
#include "data/seed.h"
#include "prior/energy.h"
#include "prior/objective.h"
#include "tests/support.h"

namespace vae_ebm::test {

namespace {

Distributed::Options quick(double seconds) {
  Distributed::Options o;
  o.timeout = std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
  return o;
}

// Runs fn(dist) on ranks 0 and 1 of a world of two, each in its own thread, and returns what
// each threw ("" when nothing).
std::vector<std::string> on_two_ranks(const std::function<void(Distributed&)>& fn, double timeout = 20) {
  const int port = free_port();
  std::vector<std::future<std::string>> ranks;
  for (int r = 0; r < 2; ++r)
    ranks.push_back(std::async(std::launch::async, [&, r] {
      try {
        Distributed::Launch launch;
        launch.rank = r;
        launch.world_size = 2;
        launch.master_addr = "127.0.0.1";
        launch.master_port = port;
        auto dist = Distributed::connect(launch, quick(timeout));
        fn(*dist);
        return std::string();
      } catch (const std::exception& e) {
        return std::string(e.what());
      }
    }));
  std::vector<std::string> out;
  for (auto& f : ranks) out.push_back(f.get());
  return out;
}

constexpr float kInf = std::numeric_limits<float>::infinity();

}  // namespace

TEST(DistributedTest, OneProcessWithoutTheEnvironmentAndEveryCollectiveDoesNothing) {
  // ctest does not run under torchrun: no WORLD_SIZE here.
  ASSERT_EQ(std::getenv("WORLD_SIZE"), nullptr);
  auto dist = Distributed::from_environment();
  EXPECT_EQ(dist->world_size(), 1);
  EXPECT_EQ(dist->rank(), 0);
  EXPECT_FALSE(dist->parallel());
  EXPECT_EQ(dist->describe(), "1 process");
  auto t = torch::tensor({1.0f, 2.0f});
  dist->all_reduce_sum({t});
  dist->broadcast({t});
  dist->check_identical({t}, "x");
  dist->barrier();
  EXPECT_TRUE(torch::equal(t, torch::tensor({1.0f, 2.0f})));
  EXPECT_EQ(dist->broadcast_bytes("abc"), "abc");
  auto l = dist->all_reduce_logsumexp(torch::tensor({-kInf, 3.0f}));
  EXPECT_EQ(l.scalar_type(), torch::kDouble);
  EXPECT_TRUE(torch::equal(l, torch::tensor({-kInf, 3.0f}).to(torch::kDouble)));
  EXPECT_EQ(dist->collective_seconds(), 0.0);
}

TEST(DistributedTest, ShardsSplitABatchIntoDisjointRowsThatCoverIt) {
  for (int world : {1, 2, 3, 5})
    for (int64_t global : {5, 8, 10, 256}) {
      int64_t next = 0;
      for (int r = 0; r < world; ++r) {
        const auto s = BatchShard::of(global, r, world);
        EXPECT_EQ(s.begin, next);
        EXPECT_GE(s.size, global / world);
        EXPECT_LE(s.size, global / world + 1);
        next = s.begin + s.size;
      }
      EXPECT_EQ(next, global);
    }
  const auto s = BatchShard::of(10, 1, 3);  // rows 3..5
  auto t = torch::arange(20).reshape({2, 10});
  EXPECT_TRUE(torch::equal(s.rows(t, 1), torch::tensor({3, 4, 5}).repeat({2, 1}) + torch::tensor({0, 10}).unsqueeze(1)));
  EXPECT_TRUE(BatchShard::of(7, 0, 1).whole());
}

TEST(DistributedTest, LaunchErrorsNameTheVariable) {
  auto launch_with = [](const std::vector<std::pair<const char*, const char*>>& vars) {
    for (const char* v : {"WORLD_SIZE", "RANK", "MASTER_ADDR", "MASTER_PORT", "LOCAL_RANK"}) unsetenv(v);
    for (const auto& [k, v] : vars) setenv(k, v, 1);
    std::string message;
    try {
      Distributed::launch_from_environment();
    } catch (const LaunchError& e) {
      message = e.what();
    }
    for (const char* v : {"WORLD_SIZE", "RANK", "MASTER_ADDR", "MASTER_PORT", "LOCAL_RANK"}) unsetenv(v);
    return message;
  };
  EXPECT_NE(launch_with({{"WORLD_SIZE", "2"}, {"RANK", "0"}, {"MASTER_PORT", "29500"}}).find("MASTER_ADDR is not set"),
            std::string::npos);
  EXPECT_NE(launch_with({{"WORLD_SIZE", "2"}, {"MASTER_ADDR", "x"}, {"MASTER_PORT", "1"}}).find("RANK is not set"),
            std::string::npos);
  EXPECT_NE(launch_with({{"WORLD_SIZE", "2"}, {"RANK", "2"}}).find("RANK=2 is not an integer in [0, 1]"),
            std::string::npos);
  EXPECT_NE(launch_with({{"WORLD_SIZE", "two"}}).find("WORLD_SIZE=two"), std::string::npos);
  EXPECT_NE(launch_with({{"WORLD_SIZE", "2"}, {"RANK", "1"}, {"MASTER_ADDR", "h"}, {"MASTER_PORT", "70000"}})
                .find("MASTER_PORT=70000"),
            std::string::npos);
  EXPECT_EQ(launch_with({{"WORLD_SIZE", "1"}}), "");  // torchrun --nproc_per_node 1: one process
}

TEST(DistributedTest, CollectivesBetweenTwoRanks) {
  const auto errors = on_two_ranks([](Distributed& d) {
    const int r = d.rank();
    // Sums: several tensors of two dtypes, in place, through buckets.
    auto a = torch::full({3, 2}, static_cast<float>(r + 1));
    auto b = torch::arange(5, torch::kDouble) * (r + 1);
    auto c = torch::full({1}, static_cast<float>(10 * r));
    const double before = d.collective_seconds();
    d.all_reduce_sum({a, b, c}, "the test's sum");
    EXPECT_GT(d.collective_seconds(), before) << "the time in collectives is counted";
    EXPECT_TRUE(torch::equal(a, torch::full({3, 2}, 3.0f)));
    EXPECT_TRUE(torch::equal(b, torch::arange(5, torch::kDouble) * 3));
    EXPECT_TRUE(torch::equal(c, torch::full({1}, 10.0f)));
    // log-sum-exp, elementwise, with -inf on one rank or both.
    auto x = r == 0 ? torch::tensor({0.0f, -kInf, -kInf, 1000.0f}) : torch::tensor({0.0f, 2.0f, -kInf, 1000.0f});
    auto l = d.all_reduce_logsumexp(x);
    EXPECT_NEAR(l[0].item<double>(), std::log(2.0), 1e-12);
    EXPECT_EQ(l[1].item<double>(), 2.0);
    EXPECT_EQ(l[2].item<double>(), -std::numeric_limits<double>::infinity());
    EXPECT_NEAR(l[3].item<double>(), 1000.0 + std::log(2.0), 1e-9);
    // Broadcasts: tensors and bytes from rank 1.
    auto p = torch::full({4}, static_cast<float>(r));
    d.broadcast({p}, 1);
    EXPECT_TRUE(torch::equal(p, torch::ones({4})));
    EXPECT_EQ(d.broadcast_bytes(r == 1 ? std::string("from one\0!", 10) : "ignored", 1), std::string("from one\0!", 10));
    EXPECT_EQ(d.broadcast_bytes(r == 0 ? "" : "x", 0), "");
    d.barrier();
    // The same bits pass; a bit that differs names the rank.
    d.check_identical({p, b}, "test tensors");
    auto q = torch::ones({4});
    if (r == 1) q[2] = std::nextafter(1.0f, 2.0f);
    EXPECT_THROW_WITH(d.check_identical({q}, "test tensors"), "the test tensors of rank 1 differ from rank 0's");
  });
  EXPECT_EQ(errors[0], "");
  EXPECT_EQ(errors[1], "");
}

TEST(DistributedTest, FingerprintSeesEveryBitShapeAndType) {
  auto a = torch::randn({5, 3});
  const auto h = Distributed::fingerprint({a});
  EXPECT_EQ(h, Distributed::fingerprint({a.clone()}));
  EXPECT_NE(h, Distributed::fingerprint({a.reshape({3, 5})}));
  EXPECT_NE(h, Distributed::fingerprint({a.to(torch::kDouble)}));
  auto b = a.clone();
  b[4][2] = -b[4][2];
  EXPECT_NE(h, Distributed::fingerprint({b}));
  EXPECT_NE(Distributed::fingerprint({torch::zeros({1})}), Distributed::fingerprint({-torch::zeros({1})}));
}

TEST(DistributedTest, ARankThatNeverComesIsAnErrorAfterTheTimeout) {
  const int port = free_port();
  Distributed::Launch launch;
  launch.world_size = 2;
  launch.master_addr = "127.0.0.1";
  launch.master_port = port;
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_THROW_WITH(Distributed::connect(launch, quick(2)), "rank 0 of 2: rank 1 did not join the store at 127.0.0.1:");
  const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_GE(waited, 1.5);
  EXPECT_LT(waited, 15);
}

// An objective's term over a batch of 7 (K = 2 samples, D = 3) in one process, and on two ranks
// holding 3 and 4 of its rows: the ranks' gradients, each of its loss -sum(term) / 7 and summed
// over the ranks as the trainer sums them, must be the single process's gradient of -mean(term),
// for the energy's parameters and b and (per row) for the posterior means. This checks the
// weights of every batch-wide term directly: two runs' parameters after a few Adam steps would
// not see a weight a few percent off (Adam's first steps are nearly sign(g)).
TEST(DataParallelObjectiveTest, TheRanksGradientsSumToOneProcesssForEachObjective) {
  const int64_t b = 7, k = 2, d = 3;
  auto gen = make_generator(5);
  const auto mu = torch::randn({b, d}, gen), logvar = 0.3 * torch::randn({b, d}, gen) - 0.5;
  const auto eps = torch::randn({k, b, d}, gen);
  torch::manual_seed(3);
  const EnergyPrior reference(d, {8, 8}, 0.2);
  struct Gradients {
    std::vector<torch::Tensor> prior;
    torch::Tensor mu;
  };
  // The term over `rows` of the batch (all of it when dist is null), its loss's gradients.
  auto gradients = [&](const std::string& name, const OptionValues& options, Distributed* dist) {
    EnergyPrior prior(d, {8, 8}, 0.2);
    {
      torch::NoGradGuard no_grad;
      for (size_t i = 0; i < prior.parameters().size(); ++i) prior.parameters()[i].copy_(reference.parameters()[i]);
    }
    const auto rows = dist ? BatchShard::of(b, dist->rank(), dist->world_size()) : BatchShard::of(b, 0, 1);
    auto objective = make_objective(name, options);
    if (dist) {
      objective->check_data_parallel(dist->world_size());
      objective->set_data_parallel(std::shared_ptr<Distributed>(dist, [](Distributed*) {}), rows, 0, torch::kCPU);
    }
    auto m = rows.rows(mu, 0).clone().requires_grad_(true);
    DiagonalGaussian q{m, rows.rows(logvar, 0)};
    auto z = m + torch::exp(q.logvar / 2) * rows.rows(eps, 1);
    auto generator = make_generator(11);  // the trainer's, the same on every rank
    auto term = objective->prior_term(prior, q, z, generator).log_prior;
    auto loss = dist ? -term.sum() / static_cast<double>(b) : -term.mean();
    loss.backward();
    Gradients out;
    for (const auto& p : prior.parameters()) out.prior.push_back(p.grad().defined() ? p.grad() : torch::zeros_like(p));
    if (dist) dist->all_reduce_sum(out.prior, "the test's gradient sum");
    out.mu = m.grad();
    return out;
  };
  struct Case {
    std::string label, objective;
    OptionValues options;
  };
  const std::vector<Case> cases = {
      {"snelbo, 5 base samples", "snelbo", OptionValues().set("base-samples", 5)},
      {"snelbo, defensive", "snelbo", OptionValues().set("proposal", "defensive")},
      {"snelbo, batch-posterior", "snelbo", OptionValues().set("proposal", "batch-posterior")},
      {"snelbo, flow", "snelbo", OptionValues().set("proposal", "flow").set("proposal-base-fraction", 0.3)},
      {"nce, base noise, ratio 0.7", "nce", OptionValues().set("nce-ratio", 0.7)},
      {"nce, aggregate-gaussian", "nce", OptionValues().set("nce-noise", "aggregate-gaussian")},
      {"nce, flow", "nce", OptionValues().set("nce-noise", "flow")},
      {"fce", "fce", OptionValues()},
      {"score-matching", "score-matching", OptionValues()},
      // Without Langevin noise, the negatives are the single process's (docs/MATH.md section 10);
      // 5 of them split 2 and 3 against rows split 3 and 4, and with the energy penalty.
      {"short-run-mcmc, no noise", "short-run-mcmc",
       OptionValues().set("mcmc-noise", 0.0).set("mcmc-steps", 5).set("negatives", 5).set("energy-l2", 0.1)},
  };
  for (const auto& [label, name, options] : cases) {
    const auto one = gradients(name, options, nullptr);
    std::vector<Gradients> ranks(2);
    const auto errors = on_two_ranks([&](Distributed& dist) { ranks[dist.rank()] = gradients(name, options, &dist); });
    ASSERT_EQ(errors, std::vector<std::string>({"", ""})) << label;
    double worst = 0;
    for (size_t i = 0; i < one.prior.size(); ++i) {
      const double scale = 1e-6 * (1 + one.prior[i].abs().max().item<double>());
      worst = std::max(worst, (ranks[0].prior[i] - one.prior[i]).abs().max().item<double>() / scale);
    }
    const auto mu_two = torch::cat({ranks[0].mu, ranks[1].mu});
    worst = std::max(worst, (mu_two - one.mu).abs().max().item<double>() / (1e-6 * (1 + one.mu.abs().max().item<double>())));
    EXPECT_LT(worst, 1.0) << label << ": the ranks' gradients differ from one process's by " << worst << " x 1e-6";
    std::fprintf(stderr, "%s: |gradient difference| / (1 + |gradient|), 2 ranks vs 1: %.2g\n", label.c_str(), worst * 1e-6);
  }
}

// `vae-ebm train` in two processes, as torchrun starts them, against one process.
class DataParallelTrainTest : public ::testing::Test {
 protected:
  TempDir tmp;
  void SetUp() override { write_tiny_binary_data(tmp.file("data.h5"), 7); }

  // Without a run directory (""), the flags lack --run-dir.
  std::string train_flags(const std::string& prior, const std::string& run_dir,
                          const std::string& schedule = "--epochs 2", int batch = 8) const {
    // 32 images in batches of 8: 4 steps an epoch; 2 epochs (a second shuffle), with a validation
    // (and the parameter check) after each.
    return " train --dataset hdf5:" + tmp.file("data.h5") + " --hidden 16 --latent 3 --energy-hidden 8,8 --prior " +
           prior + " --batch-size " + std::to_string(batch) + " " + schedule + " --lr 1e-3 --prior-lr 1e-3 --eval-samples 2 --log-z-samples 64"
           " --threads 1 --log-every 1000 --dist-timeout 30" + (run_dir.empty() ? "" : " --run-dir " + run_dir);
  }
  // Starts ranks 0..world-1 with the environment torchrun would give them; returns
  // "rc0 rc1 ..." and leaves each rank's output in LOG.rankN.
  std::string launch(int world, const std::string& args, const std::string& log) const {
    return launch_ranks(kBinary, world, args, log);
  }

  // max |a - b| over the parameters of the two runs' latest checkpoints.
  double parameter_distance(const std::string& a, const std::string& b) const {
    cli::CommonConfig common;
    common.threads = 1;
    auto ra = cli::load_run(a, "latest", common);
    auto rb = cli::load_run(b, "latest", common);
    auto pa = ra.model->named_parameters(), pb = rb.model->named_parameters();
    EXPECT_EQ(pa.size(), pb.size());
    double worst = 0;
    for (const auto& p : pa) worst = std::max(worst, (p.value() - pb[p.key()]).abs().max().item<double>());
    return worst;
  }

  // Runs `args` (a command and its flags, less --run-dir) in one process and in two; the two
  // runs' directories are NAME-one and NAME-two.
  void run_one_and_two(const std::string& args, const std::string& name) {
    const auto one = tmp.file(name + "-one"), two = tmp.file(name + "-two");
    ASSERT_EQ(shell_output(kBinary + args + " --run-dir " + one + " > " + tmp.file(name + "-one.log") + " 2>&1; echo -n $?"), "0")
        << read_file(tmp.file(name + "-one.log"));
    ASSERT_EQ(launch(2, args + " --run-dir " + two, tmp.file(name + "-two.log")), "0 0 ")
        << read_file(tmp.file(name + "-two.log.rank0")) << read_file(tmp.file(name + "-two.log.rank1"));
  }

  // `vae-ebm train` with `prior` and `extra` flags in two processes equals one within
  // `tolerance` (max |parameter difference| after 8 steps); prints the distance.
  void expect_equal_to_one_process(const std::string& prior, double tolerance, int batch, const std::string& extra = "",
                                   const std::string& name = "") {
    const auto label = name.empty() ? prior : name;
    const auto one = tmp.file(label + "-one"), two = tmp.file(label + "-two");
    ASSERT_NO_FATAL_FAILURE(run_one_and_two(train_flags(prior, "", "--epochs 2", batch) + " " + extra, label));
    expect_written_by_rank_zero(two, label);
    const double distance = parameter_distance(one, two);
    EXPECT_LT(distance, tolerance) << label;
    std::fprintf(stderr, "%s: max |parameter difference| after 8 steps, 2 processes vs 1: %g\n", label.c_str(), distance);
  }

  void expect_written_by_rank_zero(const std::string& two, const std::string& label) {
    // Only rank 0 wrote: one run directory, one "finished" record; its config notes the world.
    const auto metrics = read_file(two + "/metrics.jsonl");
    const auto finished = metrics.find("\"event\":\"finished\"");
    EXPECT_NE(finished, std::string::npos) << metrics;
    EXPECT_EQ(metrics.find("\"event\":\"finished\"", finished + 1), std::string::npos) << metrics;
    EXPECT_NE(metrics.find("\"allreduce_seconds\":", finished), std::string::npos) << metrics;
    EXPECT_NE(read_file(two + "/config.ini").find("# data-parallel: 2 processes (gloo"), std::string::npos);
    EXPECT_EQ(read_file(tmp.file(label + "-two.log.rank1")).find("training"), std::string::npos)
        << "rank 1 prints no progress";
  }
};

// The tolerance, 1e-6 absolute on every parameter after 8 steps (2 epochs) at lr 1e-3: float32
// sums in another order (each rank's rows, then the all-reduce; Zhat's log-sum-exp in two
// parts) change the gradients in their last bits, and Adam carries that into the parameters.
// The test prints the distance; see README ("Many processes, many machines") for what it was.
TEST_F(DataParallelTrainTest, TwoProcessesEqualOneWithTheGaussianPrior) {
  expect_equal_to_one_process("gaussian", 1e-6, 8);
}

// A batch of 7: ranks of 3 and 4 rows and of 3 and 4 of Zhat's 7 samples, so the weights of
// the rows and of Zhat's gradient (docs/MATH.md section 10) are tested where they differ.
TEST_F(DataParallelTrainTest, TwoProcessesEqualOneWithTheSnelboAndAnUnevenSplit) {
  expect_equal_to_one_process("ebm", 1e-6, 7);
}

// Rank 0 reads the checkpoint and sends it; the others take it, generator and all.
TEST_F(DataParallelTrainTest, TwoProcessesResumedEqualTwoThatNeverStopped) {
  const auto straight = tmp.file("straight"), resumed = tmp.file("resumed");
  ASSERT_EQ(launch(2, train_flags("ebm", straight), tmp.file("straight.log")), "0 0 ")
      << read_file(tmp.file("straight.log.rank0")) << read_file(tmp.file("straight.log.rank1"));
  ASSERT_EQ(launch(2, train_flags("ebm", resumed, "--epochs 2 --max-steps 3"), tmp.file("first.log")), "0 0 ")
      << read_file(tmp.file("first.log.rank0")) << read_file(tmp.file("first.log.rank1"));
  ASSERT_EQ(launch(2, " train --resume " + resumed + " --max-steps 0", tmp.file("second.log")), "0 0 ")
      << read_file(tmp.file("second.log.rank0")) << read_file(tmp.file("second.log.rank1"));
  EXPECT_NE(read_file(tmp.file("second.log.rank0")).find("resuming " + resumed + " at step 3"), std::string::npos);
  EXPECT_EQ(parameter_distance(straight, resumed), 0.0);
}

// The objectives whose batch-wide terms are combined over the ranks (docs/MATH.md section 10),
// with the uneven batch of 7 (ranks of 3 and 4 rows, and of 3 and 4 of the 7 noise samples;
// the flows' noise and the score-matching noise drawn for the whole batch): the same 1e-6.
TEST_F(DataParallelTrainTest, TwoProcessesEqualOneWithNceFceAndScoreMatching) {
  expect_equal_to_one_process("ebm", 1e-6, 7, "--objective nce", "nce");
  expect_equal_to_one_process("ebm", 1e-6, 7, "--objective nce --nce-noise flow --nce-ratio 2", "nce-flow");
  expect_equal_to_one_process("ebm", 1e-6, 7, "--objective fce", "fce");
  expect_equal_to_one_process("ebm", 1e-6, 7, "--objective score-matching", "score-matching");
}

// SNELBO with the flow proposal: the mixture's base and flow samples split unevenly over the
// ranks (round(0.3 x 7) = 2 from the base), and the flow fitted on both losses (mix: the
// posterior samples' and the reverse KL's) with its gradients summed over the ranks.
TEST_F(DataParallelTrainTest, TwoProcessesEqualOneWithTheSnelbosFlowProposal) {
  expect_equal_to_one_process("ebm", 1e-6, 7, "--proposal flow --proposal-base-fraction 0.3", "snelbo-flow");
}

// The proposals and noise fitted to the whole batch's posterior, which each rank gathers.
TEST_F(DataParallelTrainTest, TwoProcessesEqualOneWithWhatIsFittedToTheWholeBatch) {
  expect_equal_to_one_process("ebm", 1e-6, 7, "--proposal defensive", "snelbo-defensive");
  expect_equal_to_one_process("ebm", 1e-6, 7, "--proposal batch-posterior", "snelbo-batch-posterior");
  expect_equal_to_one_process("ebm", 1e-6, 7, "--objective nce --nce-noise aggregate-gaussian", "nce-aggregate");
}

TEST_F(DataParallelTrainTest, TwoProcessesEqualOneWithADetachedPosterior) {
  expect_equal_to_one_process("ebm", 1e-6, 7, "--detach-posterior", "detach-posterior");
}

// MCMC: each rank runs its share of the negatives, their Langevin noise from a generator of its
// own, so 2 ranks draw other negatives than 1 process and "equal" cannot mean the same numbers.
// What must be the same is everything but that noise: the chains' starts (drawn for all
// negatives from the shared generator, each rank keeping its rows), the chains' dynamics, and the
// weighting of each rank's negatives in the global mean. Without Langevin noise the negatives are
// determined by their starts, and then 2 ranks equal 1 process.
TEST_F(DataParallelTrainTest, TwoProcessesEqualOneWithShortRunMcmcWithoutLangevinNoise) {
  expect_equal_to_one_process("ebm", 1e-6, 7, "--objective short-run-mcmc --mcmc-noise 0 --mcmc-steps 10 --negatives 5",
                              "mcmc");
}

// fit-prior (post hoc: the parent's VAE frozen, an energy prior fitted to its posterior).
TEST_F(DataParallelTrainTest, FitPriorInTwoProcessesEqualsOne) {
  const auto parent = tmp.file("parent");
  ASSERT_EQ(shell_output(kBinary + train_flags("gaussian", parent, "--epochs 1") + " > " + tmp.file("parent.log") +
                  " 2>&1; echo -n $?"),
            "0")
      << read_file(tmp.file("parent.log"));
  const std::string args = " fit-prior " + parent + " --prior ebm --energy-hidden 8,8 --batch-size 7 --epochs 2 "
                           "--prior-lr 1e-3 --eval-samples 2 --log-z-samples 64 --threads 1 --log-every 1000 "
                           "--dist-timeout 30";
  ASSERT_NO_FATAL_FAILURE(run_one_and_two(args, "posthoc"));
  expect_written_by_rank_zero(tmp.file("posthoc-two"), "posthoc");
  const double distance = parameter_distance(tmp.file("posthoc-one"), tmp.file("posthoc-two"));
  EXPECT_LT(distance, 1e-6);
  std::fprintf(stderr, "fit-prior: max |parameter difference| after 8 steps, 2 processes vs 1: %g\n", distance);
}

// Persistent chains: each rank's buffer shard and chain generator go into rank 0's checkpoint
// and come back to their rank, so the resumed run draws the negatives the straight one drew.
TEST_F(DataParallelTrainTest, TwoProcessesWithPersistentChainsResumedEqualTwoThatNeverStopped) {
  const std::string mcmc = " --objective long-run-mcmc --persistent --mcmc-steps 5 --buffer-size 64 --reinit-fraction 0.2";
  const auto straight = tmp.file("straight"), resumed = tmp.file("resumed");
  ASSERT_EQ(launch(2, train_flags("ebm", straight) + mcmc, tmp.file("straight.log")), "0 0 ")
      << read_file(tmp.file("straight.log.rank0")) << read_file(tmp.file("straight.log.rank1"));
  ASSERT_EQ(launch(2, train_flags("ebm", resumed, "--epochs 2 --max-steps 3") + mcmc, tmp.file("first.log")), "0 0 ")
      << read_file(tmp.file("first.log.rank0")) << read_file(tmp.file("first.log.rank1"));
  ASSERT_EQ(launch(2, " train --resume " + resumed + " --max-steps 0", tmp.file("second.log")), "0 0 ")
      << read_file(tmp.file("second.log.rank0")) << read_file(tmp.file("second.log.rank1"));
  EXPECT_NE(read_file(tmp.file("second.log.rank0")).find("resuming " + resumed + " at step 3"), std::string::npos);
  EXPECT_EQ(parameter_distance(straight, resumed), 0.0);
}

// Chains of 2 processes cannot go on in 1, nor 1's in 2: a clear error, naming both numbers, and
// the checkpoint is left as it was (not set aside as damaged).
TEST_F(DataParallelTrainTest, ChainsResumedWithAnotherNumberOfProcessesAreRefused) {
  const std::string mcmc = " --objective long-run-mcmc --persistent --mcmc-steps 2 --buffer-size 16";
  const auto two = tmp.file("by-two"), one = tmp.file("by-one");
  ASSERT_EQ(launch(2, train_flags("ebm", two, "--epochs 2 --max-steps 2") + mcmc, tmp.file("by-two.log")), "0 0 ")
      << read_file(tmp.file("by-two.log.rank0")) << read_file(tmp.file("by-two.log.rank1"));
  const auto in_one = shell_output(kBinary + " train --resume " + two + " --max-steps 0 2>&1; echo \"rc=$?\"");
  EXPECT_NE(in_one.find("was written by 2 processes, and its 'long-run-mcmc' chains are each process's own: resume "
                        "it with 2 processes, not 1 (vae-ebm train --resume " + two + " --nproc 2, or torchrun --nproc_per_node 2)"),
            std::string::npos)
      << in_one;
  EXPECT_NE(in_one.find("rc=1"), std::string::npos) << in_one;
  EXPECT_EQ(in_one.find(".corrupt"), std::string::npos) << in_one;

  ASSERT_EQ(shell_output(kBinary + train_flags("ebm", one, "--epochs 2 --max-steps 2") + mcmc + " > " + tmp.file("by-one.log") +
                  " 2>&1; echo -n $?"),
            "0")
      << read_file(tmp.file("by-one.log"));
  EXPECT_EQ(launch(2, " train --resume " + one + " --max-steps 0", tmp.file("in-two.log")), "1 1 ");
  for (int r = 0; r < 2; ++r) {
    const auto said = read_file(tmp.file("in-two.log.rank" + std::to_string(r)));
    EXPECT_NE(said.find("was written by 1 process, and its 'long-run-mcmc' chains are each process's own: resume it "
                        "with 1 process, not 2 (vae-ebm train --resume " + one + " --nproc 1, or torchrun --nproc_per_node 1)"),
              std::string::npos)
        << said;
  }
}

TEST_F(DataParallelTrainTest, OptionsThatAreNotDataParallelYetAreRefusedBeforeMeeting) {
  const auto args = train_flags("ebm", tmp.file("refused")) + " --refine-steps 2";
  const auto rcs = launch(2, args, tmp.file("refused.log"));
  EXPECT_EQ(rcs, "2 2 ");
  EXPECT_NE(read_file(tmp.file("refused.log.rank1"))
                .find("--refine-steps: posterior refinement is not data-parallel yet (2 processes)"),
            std::string::npos)
      << read_file(tmp.file("refused.log.rank1"));
}

TEST_F(DataParallelTrainTest, MissingMasterAddrIsAClearError) {
  const auto out = shell_output("WORLD_SIZE=2 RANK=0 MASTER_PORT=29999 " + kBinary + train_flags("gaussian", tmp.file("x")) +
                         " 2>&1; echo \"rc=$?\"");
  EXPECT_NE(out.find("MASTER_ADDR is not set: with WORLD_SIZE=2"), std::string::npos) << out;
  EXPECT_NE(out.find("rc=1"), std::string::npos) << out;
  EXPECT_FALSE(std::filesystem::exists(tmp.file("x")));
}

TEST_F(DataParallelTrainTest, APortInUseIsAClearError) {
  // Something else listens on the port.
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_ANY);
  a.sin_port = 0;
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::listen(fd, 1), 0);
  socklen_t n = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &n);
  const auto out = shell_output("WORLD_SIZE=2 RANK=0 MASTER_ADDR=127.0.0.1 MASTER_PORT=" + std::to_string(ntohs(a.sin_port)) +
                         " " + kBinary + train_flags("gaussian", tmp.file("x")) + " 2>&1; echo \"rc=$?\"");
  ::close(fd);
  EXPECT_NE(out.find("rank 0 of 2 cannot hold the store at 127.0.0.1:"), std::string::npos) << out;
  EXPECT_NE(out.find("in use"), std::string::npos) << out;
}

// A rank killed mid-run: the other stops with an error naming it, well within --dist-timeout
// (30 s here): the dead rank's sockets close, the survivor's collective fails at once, and it
// waits at most 5 s for the lost rank to answer in the store before it says which is lost.
TEST_F(DataParallelTrainTest, KillingARankEndsTheOtherWithAnErrorNamingIt) {
  for (int victim : {1, 0}) {
    const int port = free_port();
    const auto log = tmp.file("killed" + std::to_string(victim) + ".log");
    const auto args =
        train_flags("gaussian", tmp.file("killed" + std::to_string(victim)), "--epochs 100000 --eval-every 100000");
    std::string script;
    for (int r = 0; r < 2; ++r)
      script += "RANK=" + std::to_string(r) + " WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=" +
                std::to_string(port) + " " + kBinary + args + " > " + log + ".rank" + std::to_string(r) +
                " 2>&1 & p" + std::to_string(r) + "=$!; ";
    const int survivor = 1 - victim;
    // Once training runs (rank 0 printed its line), kill the victim and time the survivor.
    script += "for i in $(seq 200); do grep -q \"^training\" " + log + ".rank0 && break; sleep 0.1; done; sleep 1; "
              "kill -9 $p" + std::to_string(victim) + "; t0=$(date +%s%N); wait $p" + std::to_string(survivor) +
              "; rc=$?; t1=$(date +%s%N); wait $p" + std::to_string(victim) + " 2>/dev/null; echo \"$rc $(( (t1 - t0) / 1000000 ))\"";
    const auto out = shell_output(script);
    int rc = -1;
    long milliseconds = -1;
    std::sscanf(out.c_str(), "%d %ld", &rc, &milliseconds);
    const double seconds = milliseconds / 1000.0;
    const auto said = read_file(log + ".rank" + std::to_string(survivor));
    EXPECT_EQ(rc, 1) << out << said;
    EXPECT_GE(seconds, 0) << out;
    EXPECT_LT(seconds, 15) << out << said;
    EXPECT_NE(said.find("lost rank " + std::to_string(victim) + " of 2"), std::string::npos) << said;
    std::fprintf(stderr, "rank %d killed: rank %d stopped %.1f s later\n", victim, survivor, seconds);
  }
}

// --nproc 2: vae-ebm starts the two ranks itself, with the environment of the launch above (and
// waits for them): the same run, bit for bit.
TEST_F(DataParallelTrainTest, NprocTwoEqualsTheTorchrunLaunch) {
  const auto launched = tmp.file("launched"), started = tmp.file("started");
  ASSERT_EQ(launch(2, train_flags("ebm", launched, "--epochs 2", 7), tmp.file("launched.log")), "0 0 ")
      << read_file(tmp.file("launched.log.rank0")) << read_file(tmp.file("launched.log.rank1"));
  ASSERT_EQ(shell_output(kBinary + train_flags("ebm", started, "--epochs 2", 7) + " --nproc 2 > " + tmp.file("started.log") +
                  " 2>&1; echo -n $?"),
            "0")
      << read_file(tmp.file("started.log"));
  const auto log = read_file(tmp.file("started.log"));
  EXPECT_NE(log.find("vae-ebm train: started 2 processes on this machine: rank 0 pid "), std::string::npos) << log;
  EXPECT_EQ(parameter_distance(launched, started), 0.0);
  const auto config = read_file(started + "/config.ini");
  EXPECT_NE(config.find("# data-parallel: 2 processes (gloo"), std::string::npos) << config;
  EXPECT_EQ(config.find("nproc"), std::string::npos) << "how the run was started is not what it is: " << config;
}

TEST_F(DataParallelTrainTest, BadNprocValuesAndNprocUnderTorchrunAreRefused) {
  for (const std::string value : {"0", "two", "2x", "100000"}) {
    const auto out = shell_output(kBinary + train_flags("gaussian", tmp.file("x")) + " --nproc " + value + " 2>&1; echo \"rc=$?\"");
    EXPECT_NE(out.find("--nproc expects the number of processes to start on this machine, an integer in [1, 4096], got '" +
                       value + "'"),
              std::string::npos)
        << out;
    EXPECT_NE(out.find("rc=2"), std::string::npos) << out;
  }
  const auto out = shell_output("WORLD_SIZE=2 RANK=0 MASTER_ADDR=127.0.0.1 MASTER_PORT=1 " + kBinary +
                         train_flags("gaussian", tmp.file("x")) + " --nproc 2 2>&1; echo \"rc=$?\"");
  EXPECT_NE(out.find("--nproc 2: WORLD_SIZE=2 is set"), std::string::npos) << out;
  EXPECT_NE(out.find("rc=2"), std::string::npos) << out;
  EXPECT_FALSE(std::filesystem::exists(tmp.file("x")));
}

// A rank of --nproc that dies: the other stops (naming the lost rank), and the parent exits
// with the dead rank's status, naming it. Killing the parent takes the ranks with it.
TEST_F(DataParallelTrainTest, NprocNamesARankThatDiedAndItsRanksDieWithIt) {
  const auto log = tmp.file("nproc.log");
  const auto args = train_flags("gaussian", tmp.file("nproc-run"), "--epochs 100000 --eval-every 100000") + " --nproc 2";
  const std::string wait_for_training =
      "for i in $(seq 300); do grep -q \"^training\" " + log + " && break; sleep 0.1; done; sleep 1; ";
  const auto rc = shell_output(kBinary + args + " > " + log + " 2>&1 & parent=$!; " + wait_for_training +
                        "kill -9 $(sed -n \"s/.*rank 1 pid \\([0-9]*\\).*/\\1/p\" " + log + "); wait $parent; echo -n $?");
  const auto said = read_file(log);
  EXPECT_EQ(rc, "137") << said;
  EXPECT_NE(said.find("vae-ebm train: error: --nproc 2: rank 1 of 2 was killed by SIGKILL; then rank 0 exited with status 1"),
            std::string::npos)
      << said;
  EXPECT_NE(said.find("lost rank 1 of 2"), std::string::npos) << said;
  // The parent killed: both ranks end (PR_SET_PDEATHSIG), a zombie or gone.
  std::filesystem::remove_all(tmp.file("nproc-run"));
  const auto alive = shell_output(kBinary + args + " > " + log + " 2>&1 & parent=$!; " + wait_for_training +
                           "pids=$(sed -n \"s/.*rank 0 pid \\([0-9]*\\), rank 1 pid \\([0-9]*\\).*/\\1 \\2/p\" " + log +
                           "); kill -9 $parent; sleep 1; for p in $pids; do if [ -e /proc/$p ] && ! grep -q zombie "
                           "/proc/$p/status; then echo -n \"alive:$p \"; kill -9 $p; fi; done; echo -n \"ranks:$pids\"");
  EXPECT_EQ(alive.find("alive"), std::string::npos) << alive << read_file(log);
  EXPECT_NE(alive.find("ranks:"), std::string::npos);
  EXPECT_GT(alive.size(), std::string("ranks:").size() + 3) << "no pids read: " << read_file(log);
}

// evaluate's work in blocks (apps/run_support.h): each rank computes its consecutive blocks, each
// block from its own generator, and every rank gets all of them, in order: the numbers of one
// process.
TEST(DistributedTest, WorkInBlocksIsSharedOutAndGatheredAsOneProcessDrawsIt) {
  auto draw = [](std::vector<int64_t>& blocks) {
    return [&blocks](int64_t first, int64_t n, at::Generator& gen) {
      blocks.push_back(first);
      return torch::stack({torch::arange(first, first + n, torch::kDouble), torch::rand({n}, gen, torch::kDouble)}, 1);
    };
  };
  std::vector<int64_t> alone_blocks;
  Distributed alone;
  const auto expected = in_blocks(alone, 250, 100, 2, 42, torch::kCPU, draw(alone_blocks), "a test's gather");
  EXPECT_EQ(alone_blocks, (std::vector<int64_t>{0, 100, 200}));
  EXPECT_TRUE(torch::equal(expected.select(1, 0), torch::arange(250, torch::kDouble)));
  std::vector<int64_t> blocks[2];
  std::vector<torch::Tensor> got(2);
  const auto errors = on_two_ranks([&](Distributed& d) {
    got[d.rank()] = in_blocks(d, 250, 100, 2, 42, torch::kCPU, draw(blocks[d.rank()]), "a test's gather");
  });
  EXPECT_EQ(errors, (std::vector<std::string>{"", ""}));
  EXPECT_EQ(blocks[0], (std::vector<int64_t>{0}));
  EXPECT_EQ(blocks[1], (std::vector<int64_t>{100, 200}));
  for (const auto& g : got) EXPECT_TRUE(g.defined() && torch::equal(g, expected));
}

// SIGTERM to the parent of --nproc reaches every rank once: they stop after the same step with a
// checkpoint (a second signal would end a rank at once, without one), and the parent says so.
TEST_F(DataParallelTrainTest, NprocPassesSigtermOnToTheRanksOnce) {
  const auto log = tmp.file("term.log"), run = tmp.file("term-run");
  const auto rc = shell_output(kBinary + train_flags("gaussian", run, "--epochs 100000 --eval-every 100000") +
                               " --nproc 2 > " + log + " 2>&1 & parent=$!; for i in $(seq 300); do grep -q "
                               "\"^training\" " + log + " && break; sleep 0.1; done; sleep 1; kill -TERM $parent; "
                               "wait $parent; echo -n $?");
  const auto said = read_file(log);
  EXPECT_EQ(rc, std::to_string(128 + SIGTERM)) << said;
  EXPECT_NE(said.find("vae-ebm train: SIGTERM passed on to the ranks: --nproc 2: rank "), std::string::npos) << said;
  EXPECT_NE(said.find("stopped by SIGTERM; continue with: vae-ebm train --resume"), std::string::npos) << said;
  EXPECT_NE(read_file(run + "/metrics.jsonl").find("\"event\":\"interrupted\""), std::string::npos);
  EXPECT_FALSE(RunDir::open(run).checkpoints().empty());
}

}  // namespace vae_ebm::test
