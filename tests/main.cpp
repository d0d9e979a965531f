// The test binary computes on the kernel the commands would choose (common/blas_kernel.h),
// so that its products run at the machine's rate and as the programs' do.
#include <gtest/gtest.h>

#include "common/blas_kernel.h"

int main(int argc, char** argv) {
  vae_ebm::blas::choose_kernel("auto");
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
