#include <torch/torch.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <thread>

#include "apps/cli.h"
#include "common/blas_kernel.h"
#include "common/parallel.h"

namespace vae_ebm::cli {

void set_threads(int threads) {
  if (threads < 1) throw UsageError("--threads must be >= 1, got " + std::to_string(threads));
  // More threads than this only oversubscribe the cores (and a typo of 100000 would start that many).
  const int most = std::max(64, 4 * default_threads());
  if (threads > most)
    throw UsageError("--threads must be at most " + std::to_string(most) + " (4 per hardware thread), got " +
                     std::to_string(threads));
  vae_ebm::set_num_threads(threads);  // where the threads go, and why: common/parallel.h
}

int default_threads() {
  unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

int default_threads_per_process() {
  const char* local = std::getenv("LOCAL_WORLD_SIZE");
  const int processes = local ? std::atoi(local) : 1;
  return processes > 1 ? std::max(1, default_threads() / processes) : default_threads();
}

std::string blas_kernel_line() { return "BLAS kernel: " + blas::kernel_state().summary(); }

void choose_blas_kernel(const std::string& request) {
  try {
    blas::choose_kernel(request);
  } catch (const std::invalid_argument& e) {
    throw UsageError(std::string("--blas-kernel: ") + e.what());
  }
}

void use_machine(const CommonConfig& common) {
  choose_blas_kernel(common.blas_kernel);
  std::fprintf(stderr, "%s\n", blas_kernel_line().c_str());
  set_threads(common.threads);
}

}  // namespace vae_ebm::cli
