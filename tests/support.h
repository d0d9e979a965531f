#pragma once
// Shared test support: every suite derives from SeedingFixture.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>

namespace vae_ebm::test {

// Seeds torch's global generator so that any stray global draw is reproducible.
class SeedingFixture : public ::testing::Test {
 protected:
  void SetUp() override { torch::manual_seed(0); }
};

// A fresh, empty temporary directory, removed when the object goes out of scope.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

}  // namespace vae_ebm::test
