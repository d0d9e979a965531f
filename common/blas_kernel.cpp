#include <torch/torch.h>

#include "common/blas_kernel.h"

#include <dlfcn.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <mutex>
#include <stdexcept>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

namespace vae_ebm::blas {

namespace {

struct KernelInfo {
  const char* name;  // OpenBLAS's spelling (openblas_get_corename, OPENBLAS_CORETYPE)
  int tier;
};

// The core names OpenBLAS 0.3.21 accepts in OPENBLAS_CORETYPE (and SapphireRapids, which
// later versions add), with their vector tier.
const KernelInfo kKernels[] = {
    {"SapphireRapids", 3}, {"Cooperlake", 3}, {"SkylakeX", 3},  {"Haswell", 2},   {"Zen", 2},
    {"Sandybridge", 1},    {"Bulldozer", 1},  {"Piledriver", 1}, {"Steamroller", 1}, {"Excavator", 1},
    {"Nehalem", 0},        {"Dunnington", 0}, {"Penryn", 0},     {"Core2", 0},      {"Atom", 0},
    {"Prescott", 0},       {"Northwood", 0},  {"Coppermine", 0}, {"Katmai", 0},     {"Banias", 0},
    {"Barcelona", 0},      {"Opteron_SSE3", 0}, {"Opteron", 0},  {"Athlon", 0},     {"Bobcat", 0},
    {"Nano", 0},
};

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool same_kernel(const std::string& a, const std::string& b) { return lower(a) == lower(b); }

// Whether this CPU can execute the named kernel's instructions (name canonical).
bool cpu_runs(const std::string& name, const CpuFeatures& cpu, std::string& missing) {
  const int tier = kernel_tier(name);
  if (name == "Cooperlake" || name == "SapphireRapids") {
    if (!cpu.avx512() || !cpu.avx512bf16) missing = "AVX-512 with BF16";
  } else if (tier == 3) {
    if (!cpu.avx512()) missing = "AVX-512 (F, BW, DQ, VL, CD)";
  } else if (tier == 2) {
    if (!(cpu.avx2 && cpu.fma)) missing = "AVX2 and FMA";
  } else if (name == "Sandybridge") {
    if (!cpu.avx) missing = "AVX";
  } else if (tier == 1) {
    missing = "AMD's FMA4 (the Bulldozer family's kernels)";  // not detected: never asked for here
  }
  return missing.empty();
}

std::string join_names() {
  std::string out;
  for (const auto& k : kKernels) out += (out.empty() ? "" : ", ") + std::string(k.name);
  return out;
}

template <class F>
F openblas_symbol(const char* name) {
  return reinterpret_cast<F>(dlsym(RTLD_DEFAULT, name));
}

#if defined(__x86_64__) || defined(__i386__)
uint64_t xgetbv0() {
  uint32_t eax = 0, edx = 0;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<uint64_t>(edx) << 32) | eax;
}
#endif

}  // namespace

std::string CpuFeatures::describe() const {
  std::string out = vendor;
  auto add = [&](bool on, const char* name) {
    if (on) out += std::string(" ") + name;
  };
  add(avx, "avx");
  add(avx2, "avx2");
  add(fma, "fma");
  add(avx512(), "avx512");
  add(avx512bf16, "avx512-bf16");
  return out;
}

CpuFeatures detect_cpu() {
  CpuFeatures cpu;
  cpu.vendor = "other";
#if defined(__x86_64__) || defined(__i386__)
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(0, &a, &b, &c, &d)) return cpu;
  const unsigned max_leaf = a;
  const std::string vendor(reinterpret_cast<const char*>(&b), 4);  // "Genu"ineIntel, "Auth"enticAMD
  if (vendor == "Genu") cpu.vendor = "intel";
  if (vendor == "Auth" || vendor == "Hygo") cpu.vendor = "amd";
  __get_cpuid(1, &a, &b, &c, &d);
  const bool osxsave = c & (1u << 27);
  const uint64_t xcr0 = osxsave ? xgetbv0() : 0;
  const bool os_avx = (xcr0 & 0x6) == 0x6;             // XMM and YMM state saved by the OS
  const bool os_avx512 = os_avx && (xcr0 & 0xe0) == 0xe0;  // and opmask, ZMM_Hi256, Hi16_ZMM
  cpu.avx = os_avx && (c & (1u << 28));
  cpu.fma = os_avx && (c & (1u << 12));
  if (max_leaf >= 7) {
    __cpuid_count(7, 0, a, b, c, d);
    cpu.avx2 = os_avx && (b & (1u << 5));
    cpu.avx512f = os_avx512 && (b & (1u << 16));
    cpu.avx512dq = os_avx512 && (b & (1u << 17));
    cpu.avx512cd = os_avx512 && (b & (1u << 28));
    cpu.avx512bw = os_avx512 && (b & (1u << 30));
    cpu.avx512vl = os_avx512 && (b & (1u << 31));
    __cpuid_count(7, 1, a, b, c, d);
    cpu.avx512bf16 = os_avx512 && (a & (1u << 5));
  }
#endif
  return cpu;
}

std::string best_kernel(const CpuFeatures& cpu) {
  if (cpu.avx512()) return cpu.avx512bf16 ? "Cooperlake" : "SkylakeX";
  if (cpu.avx2 && cpu.fma) return cpu.vendor == "amd" ? "Zen" : "Haswell";
  if (cpu.avx) return "Sandybridge";
  return "";
}

int kernel_tier(const std::string& name) {
  for (const auto& k : kKernels)
    if (same_kernel(name, k.name)) return k.tier;
  return 0;
}

std::optional<std::string> canonical_kernel(const std::string& name) {
  for (const auto& k : kKernels)
    if (same_kernel(name, k.name)) return std::string(k.name);
  return std::nullopt;
}

Decision decide(const std::string& request, const std::optional<std::string>& env_coretype,
                const std::string& current, const CpuFeatures& cpu) {
  using Action = Decision::Action;
  if (request == "keep") return {Action::keep, "", "OpenBLAS's own choice, kept as asked"};
  if (request != "auto") {
    auto name = canonical_kernel(request);
    if (!name)
      throw std::invalid_argument("unknown BLAS kernel '" + request + "' (expected auto, keep or one of " +
                                  join_names() + ")");
    std::string missing;
    if (!cpu_runs(*name, cpu, missing))
      throw std::invalid_argument("BLAS kernel " + *name + " needs " + missing + ", which this CPU (" +
                                  cpu.describe() + ") does not offer");
    if (current.empty()) throw std::invalid_argument("BLAS kernel " + *name + " asked for, but the BLAS is not OpenBLAS");
    const std::string replaced = env_coretype ? " (instead of OPENBLAS_CORETYPE=" + *env_coretype + ")" : "";
    if (same_kernel(current, *name)) return {Action::keep, "", "as asked" + replaced};
    return {Action::switch_to, *name, "as asked" + replaced + "; OpenBLAS had chosen " + current};
  }
  if (current.empty()) return {Action::keep, "", "the BLAS is not OpenBLAS"};
  if (env_coretype) return {Action::keep, "", "OPENBLAS_CORETYPE=" + *env_coretype + " set in the environment, respected"};
  const std::string best = best_kernel(cpu);
  if (best.empty() || kernel_tier(current) >= kernel_tier(best))
    return {Action::keep, "", "OpenBLAS's own choice, the best tier this CPU (" + cpu.describe() + ") supports"};
  return {Action::switch_to, best,
          "chosen at start-up for this CPU (" + cpu.describe() + "); OpenBLAS had chosen " + current};
}

std::string product_check(const Product& product) {
  auto gen = at::detail::createCPUGenerator(20261129);  // the global generator is left alone
  const int64_t m = 67, k = 131, n = 97;
  std::string failures;
  for (int variant = 0; variant < 4; ++variant) {
    const bool ta = variant & 1, tb = variant & 2;
    // Stored transposed when asked, so that the product sees a transposed view (the BLAS's
    // transpose flags), as the backward passes do.
    auto a = ta ? torch::randn({k, m}, gen).t() : torch::randn({m, k}, gen);
    auto b = tb ? torch::randn({n, k}, gen).t() : torch::randn({k, n}, gen);
    torch::Tensor c = product(a, b).contiguous();
    if (c.sizes() != torch::IntArrayRef({m, n})) {
      failures += "A" + std::string(ta ? "^T" : "") + " B" + (tb ? "^T" : "") + ": wrong shape; ";
      continue;
    }
    auto ac = a.contiguous(), bc = b.contiguous();
    auto pa = ac.accessor<float, 2>(), pb = bc.accessor<float, 2>(), pc = c.accessor<float, 2>();
    int64_t bad = 0;
    double worst = 0;
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double sum = 0, scale = 0;
        for (int64_t l = 0; l < k; ++l) {
          const double p = static_cast<double>(pa[i][l]) * pb[l][j];
          sum += p;
          scale += std::fabs(p);
        }
        const double err = std::fabs(pc[i][j] - sum) / (scale + 1e-30);
        if (!(err <= 1e-4)) ++bad;  // also catches NaN
        worst = std::max(worst, std::isnan(err) ? INFINITY : err);
      }
    if (bad > 0)
      failures += "A" + std::string(ta ? "^T" : "") + " B" + (tb ? "^T" : "") + ": " + std::to_string(bad) + " of " +
                  std::to_string(m * n) + " elements off (worst relative error " + std::to_string(worst) + "); ";
  }
  if (!failures.empty()) failures.resize(failures.size() - 2);
  return failures;
}

std::string openblas_core() {
  using CoreName = char* (*)();
  static auto fn = openblas_symbol<CoreName>("openblas_get_corename");
  if (!fn) return "";
  const char* name = fn();
  return name ? name : "";
}

std::string switch_openblas(const std::string& kernel) {
  using Hook = void (*)();
  static auto quit = openblas_symbol<Hook>("gotoblas_dynamic_quit");
  static auto init = openblas_symbol<Hook>("gotoblas_dynamic_init");
  if (!quit || !init) return "";
  const char* old = std::getenv("OPENBLAS_CORETYPE");
  const std::optional<std::string> saved = old ? std::optional<std::string>(old) : std::nullopt;
  setenv("OPENBLAS_CORETYPE", kernel.c_str(), 1);
  quit();
  init();
  if (saved) setenv("OPENBLAS_CORETYPE", saved->c_str(), 1);
  else unsetenv("OPENBLAS_CORETYPE");
  return openblas_core();
}

namespace {

std::mutex state_mutex;
std::optional<KernelState> chosen;
std::string chosen_request;
std::string first_core;  // what OpenBLAS ran before this process changed anything

}  // namespace

KernelState apply_kernel(const std::string& request, const Product& product) {
  std::lock_guard<std::mutex> lock(state_mutex);
  KernelState state;
  state.kernel = openblas_core();
  if (first_core.empty()) first_core = state.kernel;
  state.openblas_own = first_core;
  const char* env = std::getenv("OPENBLAS_CORETYPE");
  const auto decision =
      decide(request, env ? std::optional<std::string>(env) : std::nullopt, state.kernel, detect_cpu());
  state.how = decision.reason;
  if (decision.action == Decision::Action::keep) return state;
  const std::string before = state.kernel;
  const std::string now = switch_openblas(decision.kernel);
  if (now.empty()) {
    state.how = "WARNING: this OpenBLAS cannot switch kernels in a running process (not a DYNAMIC_ARCH build); "
                "set OPENBLAS_CORETYPE=" + decision.kernel + " before starting";
    return state;
  }
  std::string problem;
  if (!same_kernel(now, decision.kernel)) {
    problem = "this OpenBLAS has no kernel " + decision.kernel + " (it ran " + now + ")";
  } else {
    try {
      problem = product_check(product);
    } catch (...) {
      switch_openblas(before);  // never keep a kernel that was not verified
      throw;
    }
  }
  if (problem.empty()) {
    state.kernel = now;
    return state;
  }
  switch_openblas(before);
  state.kernel = openblas_core();
  if (request != "auto") throw std::runtime_error("BLAS kernel " + decision.kernel + " refused: " + problem);
  state.how = "WARNING: kept " + state.kernel + "; " + decision.kernel + " (" + decision.reason + ") failed: " + problem;
  return state;
}

std::string KernelState::summary() const {
  if (kernel.empty()) return "not OpenBLAS (" + how + ")";
  return kernel + " (" + how + ")";
}

KernelState choose_kernel(const std::string& request) {
  {
    std::lock_guard<std::mutex> lock(state_mutex);
    if (chosen && chosen_request == request) return *chosen;
  }
  // Applied outside the lock (apply_kernel takes it); start-up calls come one at a time.
  auto state = apply_kernel(request, [](const torch::Tensor& a, const torch::Tensor& b) { return torch::mm(a, b); });
  std::lock_guard<std::mutex> lock(state_mutex);
  chosen = state;
  chosen_request = request;
  return state;
}

KernelState kernel_state() {
  std::lock_guard<std::mutex> lock(state_mutex);
  if (chosen) return *chosen;
  KernelState state;
  state.kernel = openblas_core();
  state.openblas_own = first_core.empty() ? state.kernel : first_core;
  state.how = "not chosen by vae-ebm";
  return state;
}

}  // namespace vae_ebm::blas
