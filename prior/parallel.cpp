#include <torch/torch.h>

#include "prior/parallel.h"

#include <dlfcn.h>

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

}  // namespace

void set_num_threads(int n) {
  if (n < 1) throw std::invalid_argument("threads must be >= 1, got " + std::to_string(n));
  at::set_num_threads(1);
  set_blas_threads(n);
  threads_ = n;
}

int num_threads() { return threads_; }

void parallel_run(int n, const std::function<void(int)>& fn) {
  if (n <= 1) {
    fn(0);
    return;
  }
  set_blas_threads(1);
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
  set_blas_threads(threads_);
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace vae_ebm
