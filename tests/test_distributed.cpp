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

const std::string kBinary = VAE_EBM_BINARY;
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
    d.all_reduce_sum({a, b, c}, "the test's sum");
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

// `vae-ebm train` in two processes, as torchrun starts them, against one process.
class DataParallelTrainTest : public ::testing::Test {
 protected:
  TempDir tmp;
  void SetUp() override { write_tiny_binary_data(tmp.file("data.h5"), 7); }

  std::string train_flags(const std::string& prior, const std::string& run_dir,
                          const std::string& schedule = "--epochs 2", int batch = 8) const {
    // 32 images in batches of 8: 4 steps an epoch; 2 epochs (a second shuffle), with a validation
    // (and the parameter check) after each.
    return " train --dataset hdf5:" + tmp.file("data.h5") + " --hidden 16 --latent 3 --energy-hidden 8,8 --prior " +
           prior + " --batch-size " + std::to_string(batch) + " " + schedule + " --lr 1e-3 --prior-lr 1e-3 --eval-samples 2 --log-z-samples 64"
           " --threads 1 --log-every 1000 --dist-timeout 30 --run-dir " + run_dir;
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

  void expect_equal_to_one_process(const std::string& prior, double tolerance, int batch) {
    const auto one = tmp.file(prior + "-one"), two = tmp.file(prior + "-two");
    ASSERT_EQ(shell_output(kBinary + train_flags(prior, one, "--epochs 2", batch) + " > " + tmp.file("one.log") +
                    " 2>&1; echo -n $?"),
              "0")
        << read_file(tmp.file("one.log"));
    ASSERT_EQ(launch(2, train_flags(prior, two, "--epochs 2", batch), tmp.file("two.log")), "0 0 ")
        << read_file(tmp.file("two.log.rank0")) << read_file(tmp.file("two.log.rank1"));
    // Only rank 0 wrote: one run directory, one "finished" record; its config notes the world.
    const auto metrics = read_file(two + "/metrics.jsonl");
    const auto finished = metrics.find("\"event\":\"finished\"");
    EXPECT_NE(finished, std::string::npos) << metrics;
    EXPECT_EQ(metrics.find("\"event\":\"finished\"", finished + 1), std::string::npos) << metrics;
    EXPECT_NE(read_file(two + "/config.ini").find("# data-parallel: 2 processes (gloo"), std::string::npos);
    EXPECT_EQ(read_file(tmp.file("two.log.rank1")).find("training"), std::string::npos) << "rank 1 prints no progress";
    const double distance = parameter_distance(one, two);
    EXPECT_LT(distance, tolerance) << prior;
    std::fprintf(stderr, "%s prior: max |parameter difference| after 8 steps, 2 processes vs 1: %g\n", prior.c_str(),
                 distance);
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

TEST_F(DataParallelTrainTest, OptionsThatAreNotDataParallelYetAreRefusedBeforeMeeting) {
  const auto args = train_flags("ebm", tmp.file("refused")) + " --proposal flow";
  const auto rcs = launch(2, args, tmp.file("refused.log"));
  EXPECT_EQ(rcs, "2 2 ");
  EXPECT_NE(read_file(tmp.file("refused.log.rank1")).find("--proposal: 'flow' is not data-parallel yet (2 processes)"),
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
  const auto expected = cli::in_blocks(alone, 250, 100, 2, 42, torch::kCPU, draw(alone_blocks), "a test's gather");
  EXPECT_EQ(alone_blocks, (std::vector<int64_t>{0, 100, 200}));
  EXPECT_TRUE(torch::equal(expected.select(1, 0), torch::arange(250, torch::kDouble)));
  std::vector<int64_t> blocks[2];
  std::vector<torch::Tensor> got(2);
  const auto errors = on_two_ranks([&](Distributed& d) {
    got[d.rank()] = cli::in_blocks(d, 250, 100, 2, 42, torch::kCPU, draw(blocks[d.rank()]), "a test's gather");
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
