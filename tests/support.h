#pragma once
// Shared test support: every suite derives from SeedingFixture.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>

namespace vae_ebm::cli {
struct Command;
}

namespace vae_ebm::test {

// The vae-ebm command of that name (apps/command.h), to run in-process; throws if there is none.
const cli::Command& command(const std::string& name);

// The vae-ebm program built beside the tests (tests/CMakeLists.txt): what the tests that run a
// command as a user would start.
inline const std::string kBinary = VAE_EBM_BINARY;

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

// A user data set as tests need it: HDF5 /train (32), /validation (8) and /test (8) of 3x4
// binary images, each pixel 1 with probability 0.4, drawn from a generator seeded with `seed`.
void write_tiny_binary_data(const std::string& path, uint64_t seed);

// A labelled user data set: HDF5 /train, /validation and /test (with NAME_labels) of 12x16
// binary images of two classes, a bright left or a bright right half (pixels 1 with probability
// 0.9 there, 0.1 elsewhere), drawn from a generator seeded with `seed`.
void write_two_class_data(const std::string& path, uint64_t seed, int64_t train, int64_t validation, int64_t test);

// The processes of a data-parallel run as the tests start them (test_distributed*.cpp).
// A port nothing listens on now (the kernel's choice of a free one).
int free_port();
// Runs a bash script; its stdout.
std::string shell_output(const std::string& script);
// Starts `binary` + `args` as ranks 0..world-1 with the environment torchrun would give them
// (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR=127.0.0.1, a free MASTER_PORT), waits for all, and
// returns their exit statuses as "rc0 rc1 ... "; each rank's output is in LOG.rankN.
std::string launch_ranks(const std::string& binary, int world, const std::string& args, const std::string& log);

// The message of the std::exception that fn throws; "" and a test failure if it throws none.
template <typename Fn>
std::string thrown_message(Fn&& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected an exception, nothing was thrown";
  return "";
}

}  // namespace vae_ebm::test

// Expects `statement` to throw a std::exception whose message contains `needle`.
#define EXPECT_THROW_WITH(statement, needle)                                               \
  do {                                                                                     \
    const std::string message_ = ::vae_ebm::test::thrown_message([&] { statement; });      \
    EXPECT_NE(message_.find(needle), std::string::npos) << "message: " << message_;       \
  } while (false)
