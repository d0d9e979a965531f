// The gradient all-reduce of data-parallel training on its own (issue 14): Gloo all-reduces
// between the ranks torchrun starts, of the MLP's and the conv networks' gradients as the
// trainer sends them (Distributed::all_reduce_sum of one tensor per parameter: copied into a
// flat bucket, summed, copied back), of one flat tensor of the same size, and of a sweep of
// sizes from one float up, from which the latency and bandwidth of the projection are read.
//   torchrun --standalone --nproc_per_node 2 --redirects 1 --tee 1 --no_python \
//       build/bench/bench_allreduce [--reps 200] [--threads 1] [--latent 16] [--skip-sweep]
// Rank 0 prints `key value` lines: world_size; per case NAME_floats, NAME_ms_median,
// NAME_ms_mean, NAME_ms_min (per all-reduce, over --reps calls after 10 unmeasured ones),
// NAME_algbw_gbps (bytes / median time) and NAME_busbw_gbps (2 (W-1)/W bytes / median time:
// what each rank sends and receives in a ring all-reduce, comparable across world sizes).
// Cases: mlp_gaussian, mlp_ebm, conv_gaussian, conv_ebm (the gradients of every parameter of
// the VAE and, for ebm, of the energy prior, 200-200-200), NAME_flat (one tensor), and
// sweep_N (one tensor of N floats). In one process (no torchrun) it prints the sizes only.
#include <torch/torch.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "bench/bench_common.h"
#include "common/distributed.h"
#include "vae/model.h"

using namespace vae_ebm;
using namespace vae_ebm::bench;

namespace {

struct Timing {
  double median = 0, mean = 0, min = 0;
};

// Times dist.all_reduce_sum(tensors) `reps` times after 10 unmeasured calls, in seconds.
Timing time_all_reduce(Distributed& dist, const std::vector<torch::Tensor>& tensors, int64_t reps) {
  for (int i = 0; i < 10; ++i) dist.all_reduce_sum(tensors, "the benchmark's all-reduce");
  dist.barrier("the benchmark's barrier");
  std::vector<double> seconds;
  for (int64_t i = 0; i < reps; ++i) {
    auto t0 = clock_type::now();
    dist.all_reduce_sum(tensors, "the benchmark's all-reduce");
    seconds.push_back(seconds_since(t0));
  }
  // Each rank's own clock; rank 0's figures are printed (the ranks wait for each other).
  Timing t;
  for (double s : seconds) t.mean += s / reps;
  std::sort(seconds.begin(), seconds.end());
  t.median = seconds[seconds.size() / 2];
  t.min = seconds.front();
  return t;
}

int64_t floats(const std::vector<torch::Tensor>& tensors) {
  int64_t n = 0;
  for (const auto& t : tensors) n += t.numel();
  return n;
}

// Tensors shaped like the gradients the trainer all-reduces: one per parameter of the VAE and
// of the prior, in the optimisers' order (the VAE's, then the prior's).
std::vector<torch::Tensor> gradients(const std::string& architecture, const std::string& prior, int64_t latent) {
  VaeModel model(NetworkOptions().architecture(architecture).hidden({512, 512}).latent_dim(latent),
                 PriorOptions(prior, latent).set("energy-hidden", "200,200,200"));
  std::vector<torch::Tensor> out;
  for (const auto& list : {model.vae_parameters(), model.prior_parameters()})
    for (const auto& p : list)
      if (p.requires_grad()) out.push_back(torch::randn_like(p.detach()));
  return out;
}

}  // namespace

int main(int argc, char** argv) try {
  Flags flags(argc, argv, {"skip-sweep"});
  const int64_t reps = flags.integer("reps", 200);
  const int threads = static_cast<int>(flags.integer("threads", 1));
  const int64_t latent = flags.integer("latent", 16);
  const bool sweep = !flags.on("skip-sweep");
  flags.done();

  auto dist = Distributed::from_environment();
  const bool print = dist->is_root();
  use_machine(threads, "auto");  // every rank prints its `blas_kernel` line
  const int world = dist->world_size();
  if (print) std::printf("world_size %d\nbackend %s\nreps %lld\n", world, dist->backend().c_str(), (long long)reps);
  auto report = [&](const std::string& name, const std::vector<torch::Tensor>& tensors) {
    const int64_t n = floats(tensors);
    if (print) std::printf("%s_floats %lld\n", name.c_str(), (long long)n);
    if (!dist->parallel()) return;
    const auto t = time_all_reduce(*dist, tensors, reps);
    if (!print) return;
    const double bytes = 4.0 * static_cast<double>(n);
    std::printf("%s_ms_median %.4f\n%s_ms_mean %.4f\n%s_ms_min %.4f\n", name.c_str(), 1e3 * t.median, name.c_str(),
                1e3 * t.mean, name.c_str(), 1e3 * t.min);
    std::printf("%s_algbw_gbps %.3f\n%s_busbw_gbps %.3f\n", name.c_str(), 8 * bytes / t.median / 1e9, name.c_str(),
                8 * bytes * 2.0 * (world - 1) / world / t.median / 1e9);
    std::fflush(stdout);
  };
  for (const std::string architecture : {"mlp", "conv"})
    for (const std::string prior : {"gaussian", "ebm"}) {
      const auto grads = gradients(architecture, prior, latent);
      const std::string name = architecture + "_" + prior;
      if (print) std::printf("%s_tensors %zu\n", name.c_str(), grads.size());
      report(name, grads);
      report(name + "_flat", {torch::randn({floats(grads)})});
    }
  if (sweep)
    for (int64_t n : {int64_t{1}, int64_t{1000}, int64_t{10000}, int64_t{100000}, int64_t{1000000}, int64_t{4000000}})
      report("sweep_" + std::to_string(n), {torch::randn({n})});
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_allreduce: %s\n", e.what());
  return 1;
}
