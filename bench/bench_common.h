#pragma once
// Helpers shared by the bench programs: flags as `--key value` pairs, timing, peak
// memory, the matrix-product reference rate, multiply-add counts of MLPs, the data.
// Every program prints `key value` lines on stdout so that scripts can parse them.
#include <torch/torch.h>

#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "apps/cli.h"
#include "common/blas_kernel.h"
#include "data/dataset.h"
#include "data/seed.h"

namespace vae_ebm::bench {

using clock_type = std::chrono::steady_clock;

inline double seconds_since(clock_type::time_point t) {
  return std::chrono::duration<double>(clock_type::now() - t).count();
}

// Calls `body` once to warm up, then repeatedly until `seconds` pass; seconds per call.
template <class F>
double seconds_per_call(F&& body, double seconds) {
  body();
  int64_t calls = 0;
  auto t0 = clock_type::now();
  do {
    body();
    ++calls;
  } while (seconds_since(t0) < seconds);
  return seconds_since(t0) / calls;
}

// `--key value` pairs and bare `--switch`es; unknown keys are errors (checked by done()).
class Flags {
 public:
  Flags(int argc, char** argv, std::set<std::string> switches) : switches_(std::move(switches)) {
    for (int i = 1; i < argc; ++i) {
      std::string k = argv[i];
      if (k.rfind("--", 0) != 0) throw std::invalid_argument("expected a --flag, got '" + k + "'");
      k = k.substr(2);
      if (switches_.count(k)) {
        values_[k] = "1";
      } else {
        if (i + 1 >= argc) throw std::invalid_argument("--" + k + " needs a value");
        values_[k] = argv[++i];
      }
    }
  }
  std::string str(const std::string& k, const std::string& def) { return get(k) ? values_[k] : def; }
  int64_t integer(const std::string& k, int64_t def) { return get(k) ? std::stoll(values_[k]) : def; }
  double real(const std::string& k, double def) { return get(k) ? std::stod(values_[k]) : def; }
  bool on(const std::string& k) { return get(k); }
  // Throws if a flag was given that no one asked for.
  void done() const {
    for (const auto& kv : values_)
      if (!used_.count(kv.first)) throw std::invalid_argument("unknown flag --" + kv.first);
  }

 private:
  bool get(const std::string& k) {
    used_.insert(k);
    return values_.count(k) > 0;
  }
  std::set<std::string> switches_;
  std::map<std::string, std::string> values_;
  std::set<std::string> used_;
};

// Chooses the BLAS kernel as the CLI does (--blas-kernel, default auto), prints it as a
// `blas_kernel=NAME openblas_own=NAME` line, so that every result records it, and sets the threads.
inline void use_machine(int threads, const std::string& blas_request) {
  cli::CommonConfig common;
  common.threads = threads;
  common.blas_kernel = blas_request;
  cli::use_machine(common);
  const auto state = blas::kernel_state();
  std::printf("blas_kernel=%s openblas_own=%s\n", state.kernel.empty() ? "none" : state.kernel.c_str(),
              state.openblas_own.empty() ? "none" : state.openblas_own.c_str());
}

// Peak resident set size of this process so far, in MB (getrusage ru_maxrss, KB on Linux).
inline double peak_rss_mb() {
  struct rusage usage {};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss / 1024.0;
}

// Rate of the float product [256, 784] x [784, 512] (as in MEASURED.md), GFLOP/s.
inline double matmul_gflops(int reps = 400) {
  auto a = torch::randn({256, 784}), b = torch::randn({784, 512});
  auto c = torch::empty({256, 512});
  for (int i = 0; i < 20; ++i) torch::mm_out(c, a, b);
  auto t0 = clock_type::now();
  for (int i = 0; i < reps; ++i) torch::mm_out(c, a, b);
  return 2.0 * 256 * 784 * 512 * reps / seconds_since(t0) / 1e9;
}

// Floating-point operations of matrix products only (2 per multiply-add) of an MLP with
// layer widths `widths` (input first) applied to n rows: the forward pass (if `forward`),
// and in the backward pass the weight gradients (if `weight_grad`), the gradients with
// respect to the hidden activations (if either gradient is asked for) and with respect to
// the input (if `input_grad`).
inline double mlp_flops(const std::vector<int64_t>& widths, double n, bool forward, bool weight_grad,
                        bool input_grad) {
  double total = 0;
  for (size_t i = 0; i + 1 < widths.size(); ++i) {
    const double macs = static_cast<double>(widths[i]) * widths[i + 1] * n;
    if (forward) total += 2 * macs;
    if (weight_grad) total += 2 * macs;
    if ((i > 0 && (weight_grad || input_grad)) || (i == 0 && input_grad)) total += 2 * macs;
  }
  return total;
}

// Multiply-adds per image of the SNL reference conv networks (vae/networks.cpp), forward,
// layer by layer: the encoder's three 5x5 stride-2 convolutions (28 -> 14 -> 7 -> 4) and its
// Linear(2048, 2D); the decoder's transposed convolutions 1 -> 4 -> 7 -> 14 -> 28.
inline std::vector<double> conv_encoder_macs(int64_t latent) {
  return {14.0 * 14 * 32 * 25 * 1, 7.0 * 7 * 64 * 25 * 32, 4.0 * 4 * 128 * 25 * 64, 2048.0 * 2 * latent};
}
inline std::vector<double> conv_decoder_macs(int64_t latent) {
  // A transposed convolution costs in_H * in_W * C_in * C_out * k^2.
  return {1.0 * latent * 512 * 16, 4.0 * 4 * 512 * 256 * 9, 7.0 * 7 * 256 * 128 * 16, 14.0 * 14 * 128 * 1 * 16};
}
// Floating-point operations (2 per multiply-add) of one conv training step on `batch` images
// with K posterior samples: forward, weight gradients and input gradients of every layer,
// except the encoder's gradient with respect to the images.
inline double conv_step_flops(int64_t latent, double batch, double k) {
  double enc = 0, dec = 0;
  const auto e = conv_encoder_macs(latent);
  for (size_t i = 0; i < e.size(); ++i) enc += (i == 0 ? 2 : 3) * e[i];
  for (double m : conv_decoder_macs(latent)) dec += 3 * m;
  return 2 * (enc * batch + dec * batch * k);
}

// Training data: `random` draws Bernoulli(0.13) pixels (MNIST's mean ink), a fixed tensor
// [n, 784]; `binary-mnist` takes the first n images of the static binarisation's `split`.
// Throughput does not depend on the pixel values; both are float32 in {0, 1}.
inline torch::Tensor bench_data(const std::string& source, int64_t n, const std::string& data_dir,
                                const std::string& split, uint64_t seed) {
  if (source == "random") {
    auto gen = make_generator(seed + 1000);
    return torch::bernoulli(torch::full({n, 784}, 0.13), gen);
  }
  DatasetOptions options;
  options.data_dir = data_dir.empty() ? default_data_dir() : data_dir;
  auto data = load_dataset(source, options);
  const auto& images = data.split(split).images;
  TORCH_CHECK(images.size(0) >= n, "bench: the ", split, " split has only ", images.size(0), " images, asked for ", n);
  return images.narrow(0, 0, n).reshape({n, -1}).contiguous();
}

inline void print_kv(const char* key, double value, const char* fmt = "%.6g") {
  std::printf("%s ", key);
  std::printf(fmt, value);
  std::printf("\n");
}

}  // namespace vae_ebm::bench
