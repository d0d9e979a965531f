#include <torch/torch.h>

#include "prior/parallel.h"

#include <dlfcn.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <exception>
#include <mutex>
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

namespace {

// Workers kept between parallel_run calls. A training step makes several parallel regions
// (Adam, the log-likelihood's forward and backward); with a thread started for each region,
// perf showed thread start-up (creation, TLS set-up, page clearing) in about 10% of a step's
// samples at 2 threads. A worker that finishes a job spins briefly for the next one (regions
// follow each other within milliseconds in a step), then sleeps.
class Pool {
 public:
  // Runs fn(0..n-1), fn(0) on the caller; false (nothing run) if another thread is using the
  // pool. Not for the pool's own workers (parallel_run runs nested calls inline).
  bool run(int n, const std::function<void(int)>& fn, std::vector<std::exception_ptr>& errors) {
    std::unique_lock<std::mutex> busy(busy_, std::try_to_lock);
    if (!busy.owns_lock()) return false;
    while (static_cast<int>(workers_.size()) < n - 1) {
      const int index = static_cast<int>(workers_.size()) + 1;
      workers_.emplace_back([this, index] { work(index); });
    }
    {
      std::lock_guard<std::mutex> lock(m_);
      job_ = &fn;
      errors_ = &errors;
      parts_ = n;
      pending_.store(n - 1, std::memory_order_relaxed);
      generation_.fetch_add(1, std::memory_order_release);
    }
    wake_.notify_all();
    try {
      fn(0);
    } catch (...) {
      errors[0] = std::current_exception();
    }
    for (int spins = 0; pending_.load(std::memory_order_acquire) > 0; ++spins) {
      if (spins < kSpins) continue;
      std::unique_lock<std::mutex> lock(m_);
      done_.wait(lock, [this] { return pending_.load(std::memory_order_acquire) == 0; });
    }
    return true;
  }

 private:
  static constexpr int kSpins = 200000;  // about 0.1 ms

  void work(int index) {
    in_worker_ = true;
    at::set_num_threads(1);  // OpenMP's thread count is per thread: a new one starts at the default
    uint64_t seen = 0;
    for (;;) {
      for (int spins = 0; spins < kSpins && generation_.load(std::memory_order_acquire) == seen; ++spins) {
      }
      // The job is read under the lock, together with its generation: a worker that was not
      // part of one job and wakes late must not take the next job's width for the old one.
      const std::function<void(int)>* job;
      std::vector<std::exception_ptr>* errors;
      int parts;
      {
        std::unique_lock<std::mutex> lock(m_);
        wake_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen; });
        seen = generation_.load(std::memory_order_acquire);
        job = job_;
        errors = errors_;
        parts = parts_;
      }
      if (index >= parts) continue;
      try {
        (*job)(index);
      } catch (...) {
        (*errors)[index] = std::current_exception();
      }
      if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        std::lock_guard<std::mutex> lock(m_);
        done_.notify_one();
      }
    }
  }

  std::mutex busy_, m_;
  std::condition_variable wake_, done_;
  std::vector<std::thread> workers_;
  const std::function<void(int)>* job_ = nullptr;
  std::vector<std::exception_ptr>* errors_ = nullptr;
  int parts_ = 0;
  std::atomic<int> pending_{0};
  std::atomic<uint64_t> generation_{0};

 public:
  static thread_local bool in_worker_;
};

thread_local bool Pool::in_worker_ = false;

// Never destroyed: its workers wait for work until the process exits.
Pool& pool() {
  static Pool* p = new Pool;
  return *p;
}

}  // namespace

void parallel_run(int n, const std::function<void(int)>& fn) {
  std::vector<std::exception_ptr> errors(std::max(n, 1));
  auto serial = [&] {
    for (int i = 0; i < n; ++i) {
      try {
        fn(i);
      } catch (...) {
        errors[i] = std::current_exception();
      }
    }
  };
  if (n <= 1 || Pool::in_worker_) {  // nested: the parts one after another, on this worker
    if (n <= 1) return fn(0);
    serial();
  } else {
    const int blas = blas_threads();
    set_blas_threads(1);
    stop_blas_workers();
    if (!pool().run(n, fn, errors)) serial();  // another thread holds the pool
    set_blas_threads(blas);
  }
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace vae_ebm
