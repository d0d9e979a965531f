#include <torch/torch.h>

#include <thread>

#include "apps/cli.h"
#include "prior/parallel.h"

namespace vae_ebm::cli {

void set_threads(int threads) {
  if (threads < 1) throw UsageError("--threads must be >= 1, got " + std::to_string(threads));
  vae_ebm::set_num_threads(threads);  // where the threads go, and why: prior/parallel.h
}

int default_threads() {
  unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

}  // namespace vae_ebm::cli
