#pragma once
// Data-parallel training over many processes (on one machine or several): a small wrapper of
// PyTorch's distributed engine (c10d), a ProcessGroupGloo over a TCPStore, as torchrun starts
// it. Only distributed.cpp sees c10d; a build without Gloo's headers (Debian's libgloo-dev)
// still builds, and refuses a world of more than one process with an error saying why.
//
// The environment, as torchrun sets it (`torchrun --nproc_per_node N --no_python vae-ebm ...`):
// WORLD_SIZE (absent or 1: one process, and every collective below does nothing), RANK,
// LOCAL_RANK, MASTER_ADDR and MASTER_PORT (rank 0's store), and TORCHELASTIC_USE_AGENT_STORE /
// TORCHELASTIC_RESTART_COUNT (torchrun's static rendezvous, where its agent holds the store).
//
// Failures never hang for ever: making the store and the process group, and every collective,
// give up after Options::timeout; a peer that dies closes its sockets, which the others see at
// once. Either way the error names the ranks that were lost (see DistributedError).
#include <torch/torch.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/error.h"

namespace vae_ebm {

// A launch that cannot work: WORLD_SIZE without MASTER_ADDR, a RANK out of range, a port that
// is in use, a rank that never came. The message names the variable or the address.
struct LaunchError : UserError {
  using UserError::UserError;
};

// A collective failed: a peer died, hangs past the timeout, or the ranks disagree (different
// parameters). The message names the ranks lost or differing and what was being done.
struct DistributedError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The rows [begin, begin + size) of a batch of `global` rows that one process of a
// data-parallel run holds; in a single process, the whole batch.
struct BatchShard {
  int64_t begin = 0;
  int64_t size = 0;
  int64_t global = 0;

  // Rank `rank`'s share of `global` rows split over `world` processes: rows
  // [rank * global / world, (rank + 1) * global / world), so the sizes differ by at most one.
  static BatchShard of(int64_t global, int rank, int world);
  bool whole() const { return begin == 0 && size == global; }
  // This process's rows of `t` along `dim`, where t has `global` rows there (t itself when
  // whole). Draw random numbers for the whole batch and keep your rows: every process then
  // uses the numbers a single process would, and the generators stay equal on all ranks.
  torch::Tensor rows(const torch::Tensor& t, int64_t dim) const;
};

class Distributed {
 public:
  struct Options {
    // How long making the store and the process group, and any one collective, may take.
    // Also bounds how long the other ranks wait while rank 0 validates alone.
    std::chrono::milliseconds timeout = std::chrono::minutes(30);
    // The device whose tensors the collectives take: a CUDA device uses NCCL where LibTorch
    // was built with it; otherwise tensors go through Gloo on the CPU.
    torch::Device device = torch::kCPU;
  };

  // One process: rank 0 of 1.
  Distributed();
  ~Distributed();
  Distributed(const Distributed&) = delete;
  Distributed& operator=(const Distributed&) = delete;

  // Who this process is and where rank 0's store is: what the environment says, or what a
  // test gives.
  struct Launch {
    int rank = 0;
    int world_size = 1;
    int local_rank = 0;
    std::string master_addr;
    int master_port = 0;
    bool agent_store = false;        // torchrun's agent holds the store (its static rendezvous)
    std::string restart_count = "0";  // torchrun's restarts of the workers (the store's keys)
  };
  // The launch the environment (above) describes: one process when WORLD_SIZE is absent or 1.
  // Throws LaunchError for one that cannot work, naming the variable. Touches no network.
  static Launch launch_from_environment();
  // Meets the other processes: one process needs nothing. Throws LaunchError naming the
  // address, the port or the ranks missing when they cannot meet within options.timeout.
  static std::shared_ptr<Distributed> connect(const Launch& launch, const Options& options);
  static std::shared_ptr<Distributed> from_environment(const Options& options) {
    return connect(launch_from_environment(), options);
  }
  static std::shared_ptr<Distributed> from_environment() { return from_environment(Options()); }

  int rank() const { return rank_; }
  int world_size() const { return world_size_; }
  int local_rank() const { return local_rank_; }
  bool is_root() const { return rank_ == 0; }
  bool parallel() const { return world_size_ > 1; }
  std::chrono::milliseconds timeout() const { return timeout_; }
  // "gloo", "nccl" or "none" (one process).
  std::string backend() const;
  // "2 processes (gloo; rank 0's store at 127.0.0.1:29500; timeout 1800 s)", or "1 process".
  std::string describe() const;

  // Sums each tensor over the ranks, in place. The tensors are copied into one flat buffer per
  // dtype (or a few, each at most 64 MB) so that many small gradients cost one collective.
  // `what` names the collective in an error ("the gradient all-reduce").
  void all_reduce_sum(const std::vector<torch::Tensor>& tensors, const std::string& what = "an all-reduce");
  // log sum_ranks exp(t), elementwise, in double: the tensors of all ranks are gathered and
  // combined with logsumexp (max-shifted; -inf on every rank gives -inf, +inf gives +inf),
  // the same bits on every rank. For small tensors (it gathers world_size copies).
  torch::Tensor all_reduce_logsumexp(const torch::Tensor& t, const std::string& what = "a log-sum-exp all-reduce");
  // Overwrites each tensor with root's, in place (flattened into buckets as above).
  void broadcast(const std::vector<torch::Tensor>& tensors, int root = 0, const std::string& what = "a broadcast");
  // root's bytes on every rank (the others' `bytes` are ignored): a checkpoint, a message.
  std::string broadcast_bytes(const std::string& bytes, int root = 0, const std::string& what = "a broadcast");
  // Every rank's bytes, in rank order, on every rank: what differs between the processes (an
  // MCMC objective's chains), gathered for rank 0's checkpoint. One process: {bytes}.
  std::vector<std::string> all_gather_bytes(const std::string& bytes, const std::string& what = "an all-gather");
  // Checks that the tensors hold the same bits on every rank: a 64-bit hash of their values,
  // shapes and dtypes is gathered from all ranks. Throws DistributedError naming `what`
  // and the ranks whose tensors differ from rank 0's.
  void check_identical(const std::vector<torch::Tensor>& tensors, const std::string& what);
  void barrier(const std::string& what = "a barrier");

  // Wall seconds this process has spent in the collectives above since it connected (0 for
  // one process): from the call to its return, so the copies into and out of the buckets and
  // the wait for the slowest rank count as well as the transfer itself. The trainer reads it
  // around each step (TrainState::allreduce_seconds).
  double collective_seconds() const { return collective_seconds_; }

  // The 64-bit hash check_identical compares (exposed for tests).
  static int64_t fingerprint(const std::vector<torch::Tensor>& tensors);

 private:
  struct Engine;
  // Runs one collective (started by `start`); a failure becomes a DistributedError naming the
  // ranks lost and `what`.
  template <class Start>
  void collective(const std::string& what, Start&& start);

  int rank_ = 0;
  int world_size_ = 1;
  int local_rank_ = 0;
  std::chrono::milliseconds timeout_ = Options().timeout;
  double collective_seconds_ = 0;
  std::unique_ptr<Engine> engine_;
};

}  // namespace vae_ebm
