// The BLAS kernel choice (common/blas_kernel.h): the choice from the CPU's flags, the
// decision against OpenBLAS's own choice and the environment, the product check, the switch
// inside a process, and what a started process ends up on.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "common/blas_kernel.h"
#include "tests/support.h"

namespace vae_ebm::test {

using blas::CpuFeatures;
using blas::Decision;

namespace {

CpuFeatures cpu(const std::string& vendor, int tier, bool bf16 = false) {
  CpuFeatures c;
  c.vendor = vendor;
  c.avx = tier >= 1;
  c.avx2 = c.fma = tier >= 2;
  c.avx512f = c.avx512bw = c.avx512dq = c.avx512vl = c.avx512cd = tier >= 3;
  c.avx512bf16 = tier >= 3 && bf16;
  return c;
}

// Runs a shell command; its stdout and stderr together, and the exit status.
std::pair<std::string, int> run(const std::string& command) {
  std::string out;
  FILE* p = popen((command + " 2>&1").c_str(), "r");
  if (!p) return {"", -1};
  char buf[512];
  while (fgets(buf, sizeof buf, p)) out += buf;
  const int status = pclose(p);
  return {out, WIFEXITED(status) ? WEXITSTATUS(status) : -1};
}

// The kernel name on the "BLAS kernel: NAME (...)" line of `vae-ebm --version`.
std::string kernel_of(const std::string& version_output) {
  const std::string key = "BLAS kernel: ";
  const auto at = version_output.find(key);
  if (at == std::string::npos) return "";
  const auto start = at + key.size();
  return version_output.substr(start, version_output.find(' ', start) - start);
}

bool can_switch() { return !blas::openblas_core().empty() && !blas::switch_openblas(blas::openblas_core()).empty(); }

}  // namespace

TEST(BlasKernelTest, BestKernelFromTheCpuFlags) {
  EXPECT_EQ(blas::best_kernel(cpu("intel", 3)), "SkylakeX");
  EXPECT_EQ(blas::best_kernel(cpu("intel", 3, true)), "Cooperlake");
  EXPECT_EQ(blas::best_kernel(cpu("amd", 3, true)), "Cooperlake");  // Zen 4
  EXPECT_EQ(blas::best_kernel(cpu("intel", 2)), "Haswell");
  EXPECT_EQ(blas::best_kernel(cpu("amd", 2)), "Zen");
  EXPECT_EQ(blas::best_kernel(cpu("other", 2)), "Haswell");
  EXPECT_EQ(blas::best_kernel(cpu("intel", 1)), "Sandybridge");
  EXPECT_EQ(blas::best_kernel(cpu("intel", 0)), "");
  // AVX-512 needs all five of F, BW, DQ, VL and CD (SkylakeX's kernels use them).
  auto partial = cpu("intel", 3);
  partial.avx512vl = false;
  EXPECT_EQ(blas::best_kernel(partial), "Haswell");
  EXPECT_EQ(blas::kernel_tier("prescott"), 0);
  EXPECT_EQ(blas::kernel_tier("SKYLAKEX"), 3);
  EXPECT_EQ(blas::kernel_tier("no-such-core"), 0);
  EXPECT_EQ(blas::canonical_kernel("zen").value_or(""), "Zen");
  EXPECT_FALSE(blas::canonical_kernel("Zen5").has_value());
}

TEST(BlasKernelTest, AutoSwitchesOnlyWhenTheCpuSupportsABetterTier) {
  auto d = blas::decide("auto", std::nullopt, "Prescott", cpu("intel", 3));
  EXPECT_EQ(d.action, Decision::Action::switch_to);
  EXPECT_EQ(d.kernel, "SkylakeX");
  EXPECT_NE(d.reason.find("OpenBLAS had chosen Prescott"), std::string::npos) << d.reason;
  EXPECT_EQ(blas::decide("auto", std::nullopt, "Haswell", cpu("intel", 3)).kernel, "SkylakeX");
  EXPECT_EQ(blas::decide("auto", std::nullopt, "Sandybridge", cpu("amd", 2)).kernel, "Zen");
  // Already on the best tier (Cooperlake and SkylakeX are one tier): kept.
  EXPECT_EQ(blas::decide("auto", std::nullopt, "Cooperlake", cpu("intel", 3)).action, Decision::Action::keep);
  EXPECT_EQ(blas::decide("auto", std::nullopt, "Zen", cpu("amd", 2)).action, Decision::Action::keep);
  EXPECT_EQ(blas::decide("auto", std::nullopt, "Prescott", cpu("intel", 0)).action, Decision::Action::keep);
  // Not OpenBLAS: nothing to choose.
  EXPECT_EQ(blas::decide("auto", std::nullopt, "", cpu("intel", 3)).action, Decision::Action::keep);
}

TEST(BlasKernelTest, AUserSetCoretypeIsNeverOverriddenByAuto) {
  for (const auto& current : {"Prescott", "Core2", "Haswell"}) {
    auto d = blas::decide("auto", std::string("Prescott"), current, cpu("intel", 3, true));
    EXPECT_EQ(d.action, Decision::Action::keep) << current;
    EXPECT_NE(d.reason.find("OPENBLAS_CORETYPE=Prescott"), std::string::npos) << d.reason;
  }
  // keep never switches either.
  EXPECT_EQ(blas::decide("keep", std::nullopt, "Prescott", cpu("intel", 3)).action, Decision::Action::keep);
}

TEST(BlasKernelTest, ANamedKernelIsCheckedAgainstTheCpu) {
  auto d = blas::decide("haswell", std::string("Prescott"), "Prescott", cpu("intel", 3));
  EXPECT_EQ(d.action, Decision::Action::switch_to);
  EXPECT_EQ(d.kernel, "Haswell");
  EXPECT_NE(d.reason.find("instead of OPENBLAS_CORETYPE=Prescott"), std::string::npos) << d.reason;
  EXPECT_EQ(blas::decide("Haswell", std::nullopt, "Haswell", cpu("intel", 2)).action, Decision::Action::keep);
  try {
    blas::decide("SkylakeX", std::nullopt, "Haswell", cpu("amd", 2));
    ADD_FAILURE() << "SkylakeX accepted on a CPU without AVX-512";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("AVX-512"), std::string::npos) << e.what();
  }
  try {
    blas::decide("Zen5", std::nullopt, "Haswell", cpu("amd", 2));
    ADD_FAILURE() << "an unknown kernel name accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("'Zen5'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("SkylakeX"), std::string::npos) << e.what();
  }
}

TEST(BlasKernelTest, TheProductCheckPassesTheBlasAndRejectsAWrongKernel) {
  EXPECT_EQ(blas::product_check([](const torch::Tensor& a, const torch::Tensor& b) { return torch::mm(a, b); }), "");
  // A kernel that mishandles one transpose case: it reads a transposed B's memory as if B
  // were stored untransposed.
  auto transpose_bug = [](const torch::Tensor& a, const torch::Tensor& b) {
    if (b.is_contiguous()) return torch::mm(a, b);
    return torch::mm(a, b.t().contiguous().view({b.size(0), b.size(1)}));
  };
  const auto problem = blas::product_check(transpose_bug);
  EXPECT_NE(problem.find("A B^T:"), std::string::npos) << problem;
  EXPECT_NE(problem.find("A^T B^T:"), std::string::npos) << problem;
  EXPECT_EQ(problem.find("A B:"), std::string::npos) << problem;
  EXPECT_EQ(problem.find("A^T B:"), std::string::npos) << problem;
  // One element a little off (a wrong edge-tile kernel), and NaN.
  auto one_off = [](const torch::Tensor& a, const torch::Tensor& b) {
    auto c = torch::mm(a, b);
    c[c.size(0) - 1][c.size(1) - 1] += 1e-2;
    return c;
  };
  EXPECT_NE(blas::product_check(one_off).find("1 of 6499 elements"), std::string::npos) << blas::product_check(one_off);
  auto nan = [](const torch::Tensor& a, const torch::Tensor& b) { return torch::mm(a, b) * NAN; };
  EXPECT_NE(blas::product_check(nan), "");
}

TEST(BlasKernelTest, AProcessOnAGenericKernelSwitchesToTheBestAndBackWhenTheCheckFails) {
  if (!can_switch()) GTEST_SKIP() << "the BLAS is not a DYNAMIC_ARCH OpenBLAS: no kernel switch here";
  if (std::getenv("OPENBLAS_CORETYPE")) GTEST_SKIP() << "OPENBLAS_CORETYPE is set here, and auto respects it";
  const std::string best = blas::best_kernel(blas::detect_cpu());
  if (best.empty()) GTEST_SKIP() << "this CPU has no kernel beyond the generic ones";
  // OpenBLAS on its generic kernel, as on a CPU whose model its table does not know.
  ASSERT_EQ(blas::switch_openblas("Prescott"), "Prescott");
  const auto mm = [](const torch::Tensor& a, const torch::Tensor& b) { return torch::mm(a, b); };
  // A candidate that fails the product check is dropped: the process stays on Prescott.
  auto wrong = [](const torch::Tensor& a, const torch::Tensor& b) { return torch::mm(a, b) + 1; };
  auto kept = blas::apply_kernel("auto", wrong);
  EXPECT_EQ(kept.kernel, "Prescott");
  EXPECT_EQ(blas::openblas_core(), "Prescott");
  EXPECT_NE(kept.how.find("WARNING"), std::string::npos) << kept.how;
  EXPECT_NE(kept.how.find("failed"), std::string::npos) << kept.how;
  // With the real product, it ends on the best kernel, and computes correctly there.
  auto state = blas::apply_kernel("auto", mm);
  EXPECT_EQ(state.kernel, best) << state.how;
  EXPECT_EQ(blas::openblas_core(), best);
  EXPECT_NE(state.how.find("OpenBLAS had chosen Prescott"), std::string::npos) << state.how;
  EXPECT_EQ(blas::product_check(mm), "");
  EXPECT_EQ(std::getenv("OPENBLAS_CORETYPE"), nullptr) << "the environment is left as it was";
  // A named kernel that fails the check is an error, and the old kernel stays.
  EXPECT_THROW(blas::apply_kernel("Prescott", wrong), std::runtime_error);
  EXPECT_EQ(blas::openblas_core(), best);
}

TEST(BlasKernelTest, AStartedProcessEndsOnTheBestKernelTheCpuSupports) {
  const auto [out, status] = run("env -u OPENBLAS_CORETYPE " + kBinary + " --version");
  ASSERT_EQ(status, 0) << out;
  const std::string best = blas::best_kernel(blas::detect_cpu());
  const std::string kernel = kernel_of(out);
  if (blas::openblas_core().empty()) GTEST_SKIP() << "the BLAS is not OpenBLAS";
  if (!best.empty()) EXPECT_GE(blas::kernel_tier(kernel), blas::kernel_tier(best)) << out;
  if (out.find("OpenBLAS had chosen") == std::string::npos)
    GTEST_SKIP() << "OpenBLAS's own detection already picks " << kernel
                 << " on this CPU, so the start-up switch was not needed (the switch itself is tested "
                    "in-process above)";
}

TEST(BlasKernelTest, AStartedProcessRespectsOpenblasCoretypeAndNamesBadRequests) {
  if (blas::openblas_core().empty()) GTEST_SKIP() << "the BLAS is not OpenBLAS";
  const auto [kept, kept_status] = run("OPENBLAS_CORETYPE=Prescott " + kBinary + " --version");
  ASSERT_EQ(kept_status, 0) << kept;
  EXPECT_EQ(kernel_of(kept), "Prescott") << kept;
  EXPECT_NE(kept.find("OPENBLAS_CORETYPE=Prescott set in the environment"), std::string::npos) << kept;
  if (can_switch()) {
    const auto [named, named_status] = run("env -u OPENBLAS_CORETYPE " + kBinary + " --version --blas-kernel prescott");
    ASSERT_EQ(named_status, 0) << named;
    EXPECT_EQ(kernel_of(named), "Prescott") << named;
  }
  const auto [bad, bad_status] = run(kBinary + " --version --blas-kernel Zen5");
  EXPECT_EQ(bad_status, 2) << bad;
  EXPECT_NE(bad.find("unknown BLAS kernel 'Zen5'"), std::string::npos) << bad;
  const auto [train, train_status] = run(kBinary + " train --blas-kernel nope --run-dir /nonexistent/x");
  EXPECT_EQ(train_status, 2) << train;
  EXPECT_NE(train.find("--blas-kernel: unknown BLAS kernel 'nope'"), std::string::npos) << train;
}

}  // namespace vae_ebm::test
