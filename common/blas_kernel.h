#pragma once
// Which OpenBLAS kernel the process computes with, and the choice of a better one at start-up.
//
// Debian's OpenBLAS 0.3.21 picks its kernel from the CPU's model number. On a CPU whose model
// its table does not know (a cloud VM's generic Intel Xeon with AVX-512, for one) it falls
// back to Prescott, the SSE3 kernels of 2004, and every product runs at a third to a quarter
// of the machine's rate (MEASURED.md: 63 against 265 GFLOP/s). Nothing tells the user.
//
// choose_kernel() compares OpenBLAS's choice with what the CPU's feature flags (cpuid, and
// the OS's saved-state mask from xgetbv) support. When the CPU supports a better tier, it
// switches OpenBLAS to that kernel inside the running process, then multiplies small odd-sized
// matrices in every transpose combination and compares them with a float64 reference computed
// without the BLAS; a kernel that disagrees is dropped again and the old one restored.
//
// The switch: a DYNAMIC_ARCH OpenBLAS (Debian's is one) exports gotoblas_dynamic_quit and
// gotoblas_dynamic_init. The second reads OPENBLAS_CORETYPE again and re-points the kernel
// table; the work buffers are of one fixed size for every kernel and the thread pool does not
// depend on the kernel, so nothing else needs to start again. The variable is set only around
// that call and restored afterwards: the process's environment is left as it was.
//
// An OPENBLAS_CORETYPE that the user or the machine set is respected (some machines set it on
// purpose, because older OpenBLAS builds compute wrong results on them): `auto` keeps it.
#include <torch/torch.h>

#include <functional>
#include <optional>
#include <string>

namespace vae_ebm::blas {

// What the CPU and the operating system support, from cpuid and xgetbv.
struct CpuFeatures {
  std::string vendor;  // "intel", "amd" or "other"
  bool avx = false, avx2 = false, fma = false;
  bool avx512f = false, avx512bw = false, avx512dq = false, avx512vl = false, avx512cd = false;
  bool avx512bf16 = false;
  bool avx512() const { return avx512f && avx512bw && avx512dq && avx512vl && avx512cd; }
  // "avx512 bf16" etc., for the log.
  std::string describe() const;
};

// This machine's features (all false on a CPU that is not x86).
CpuFeatures detect_cpu();

// The best OpenBLAS 0.3.21 kernel for these features: Cooperlake (AVX-512 with BF16) or
// SkylakeX (AVX-512), Zen (AVX2 + FMA on AMD) or Haswell (AVX2 + FMA elsewhere), Sandybridge
// (AVX), and "" when nothing beyond the generic SSE kernels is supported.
std::string best_kernel(const CpuFeatures& cpu);

// The vector tier of a kernel name, case-insensitive: 3 AVX-512 (SkylakeX, Cooperlake,
// SapphireRapids), 2 AVX2 + FMA (Haswell, Zen), 1 AVX (Sandybridge, the Bulldozer family),
// 0 the rest (Prescott, Nehalem, Core2, ..., and names OpenBLAS does not know).
int kernel_tier(const std::string& name);

// OpenBLAS's spelling of a kernel name it knows (case-insensitive), or nullopt.
std::optional<std::string> canonical_kernel(const std::string& name);

// What to do at start-up, decided from the request (auto, keep or a kernel name), the
// OPENBLAS_CORETYPE found in the environment (nullopt when unset), the kernel OpenBLAS is
// running and the CPU's features. Pure, so that every case is tested without the machine.
struct Decision {
  enum class Action { keep, switch_to };
  Action action = Action::keep;
  std::string kernel;  // switch_to: the kernel to switch to
  std::string reason;  // one line for the log
};
// Throws std::invalid_argument for an unknown request, or a named kernel this CPU cannot run.
Decision decide(const std::string& request, const std::optional<std::string>& env_coretype,
                const std::string& current, const CpuFeatures& cpu);

// A matrix product as the program computes it (torch::mm through the BLAS), so that tests
// can inject a wrong one.
using Product = std::function<torch::Tensor(const torch::Tensor&, const torch::Tensor&)>;
// Multiplies odd-sized random matrices (A B, A^T B, A B^T, A^T B^T) with `product` and with a
// float64 reference that does not use the BLAS. Returns "" when every element agrees to
// float32 rounding (1e-4 of the sum of |a_ik b_kj|), else what differed.
std::string product_check(const Product& product);

// The kernel in use and how it came to be; what --version, the log, config.ini and every
// bench result print.
struct KernelState {
  std::string kernel;        // OpenBLAS's core name now, or "" when the BLAS is not OpenBLAS
  std::string openblas_own;  // what OpenBLAS had chosen by itself (or from OPENBLAS_CORETYPE)
  std::string how;           // e.g. "chosen at start-up from the CPU's AVX-512; OpenBLAS had chosen Prescott"
  std::string summary() const;  // "SkylakeX (chosen at start-up ...)"
};

// Applies the request (auto | keep | a kernel name) once per process; later calls with the same
// request return the same state. Throws std::invalid_argument for a bad request, and
// std::runtime_error when a named kernel fails the product check.
KernelState choose_kernel(const std::string& request = "auto");
// What choose_kernel does, without remembering it, with the product check's product given:
// tests inject a wrong one.
KernelState apply_kernel(const std::string& request, const Product& product);
// The state choose_kernel left (before it is called: what OpenBLAS is running, "not chosen").
KernelState kernel_state();

// OpenBLAS's own core name, or "" when the loaded BLAS is not OpenBLAS.
std::string openblas_core();
// Switches OpenBLAS to `kernel` in this process. Returns the core name OpenBLAS runs
// afterwards ("" when this BLAS cannot switch). For choose_kernel and tests.
std::string switch_openblas(const std::string& kernel);

}  // namespace vae_ebm::blas
