#include <torch/torch.h>

#include "common/parallel.h"

#include <dlfcn.h>

#include <algorithm>
#include <exception>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace vae_ebm {

namespace {

int threads_ = 1;

// Debian's LibTorch calls the system BLAS (OpenBLAS when installed), which keeps its own
// thread pool. Found at run time so that the build does not depend on which BLAS is there.
void set_blas_threads(int n) {
  using SetThreads = void (*)(int);
  static auto fn = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  if (fn) fn(n);
}

int blas_threads() {
  using GetThreads = int (*)();
  static auto fn = reinterpret_cast<GetThreads>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
  return fn ? fn() : 1;
}

// OpenBLAS's idle worker threads spin (sched_yield in a loop) for about 2^28 cycles after
// each threaded call before they sleep. While the chains run on their own threads the
// spinning worker takes a core from them: measured with bench_train at --threads 2, short-run
// MCMC trained at 3,141 images/s with the spinning and 4,752 with OPENBLAS_THREAD_TIMEOUT=4
// (which cannot be set once the library is loaded). So the workers are stopped before a
// parallel region; OpenBLAS starts them again at its next threaded call (exported since
// 0.3.x for fork handling; skipped if absent).
void stop_blas_workers() {
  using Shutdown = int (*)();
  static auto fn = reinterpret_cast<Shutdown>(dlsym(RTLD_DEFAULT, "blas_thread_shutdown_"));
  if (fn) fn();
}

}  // namespace

void set_num_threads(int n) {
  if (n < 1) throw std::invalid_argument("threads must be >= 1, got " + std::to_string(n));
  at::set_num_threads(1);
  set_blas_threads(n);
  threads_ = n;
}

int num_threads() { return threads_; }

int threads_for(int64_t elements, int64_t per_thread) {
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(threads_, elements / per_thread)));
}

void parallel_run(int n, const std::function<void(int)>& fn) {
  if (n <= 1) {
    fn(0);
    return;
  }
  const int blas = blas_threads();
  set_blas_threads(1);
  stop_blas_workers();
  std::vector<std::exception_ptr> errors(n);
  auto body = [&](int i) {
    try {
      fn(i);
    } catch (...) {
      errors[i] = std::current_exception();
    }
  };
  std::vector<std::thread> workers;
  workers.reserve(n - 1);
  for (int i = 1; i < n; ++i)
    workers.emplace_back([&body, i] {
      at::set_num_threads(1);  // OpenMP's thread count is per thread: a new one starts at the default
      body(i);
    });
  body(0);
  for (auto& w : workers) w.join();
  set_blas_threads(blas);
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace vae_ebm
