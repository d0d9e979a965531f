#include <torch/torch.h>

#include <thread>

#include "apps/cli.h"
#include "prior/parallel.h"

namespace vae_ebm::cli {

void set_threads(int threads) {
  if (threads < 1) throw UsageError("--threads must be >= 1, got " + std::to_string(threads));
  // Measured here (bench_train, MLP VAE, batch 256, 2 cores): OpenBLAS with 2 threads and
  // LibTorch's OpenMP pool at 1 thread trains at ~19,800 images/s; OpenBLAS 1 + OpenMP 1
  // at ~11,500; any OpenMP pool above 1 thread at under 1,000 (the pools fight for the
  // cores). So the threads go to the BLAS, which does nearly all the work, and LibTorch's
  // own pool stays at one thread; Langevin chains are split over the threads instead
  // (prior/parallel.h).
  vae_ebm::set_num_threads(threads);
}

int default_threads() {
  unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

}  // namespace vae_ebm::cli
