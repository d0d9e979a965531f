#pragma once
// What the data layer's tests share (test_data*.cpp, test_idx.cpp, test_dataset*.cpp): errors as
// text, files written byte by byte, the real data sets loaded once, and skipping where they are
// missing.
#include <torch/torch.h>

#include <gtest/gtest.h>

#include <zlib.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "data/error.h"
#include "data/hdf5_io.h"
#include "tests/support.h"

namespace vae_ebm::test {


// Runs `fn`, expects a DataError and returns its message ("" and a failure otherwise).
template <typename Fn>
inline std::string data_error(Fn&& fn) {
  try {
    fn();
  } catch (const DataError& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected DataError, got another exception: " << e.what();
    return "";
  }
  ADD_FAILURE() << "expected DataError, nothing was thrown";
  return "";
}

#define EXPECT_CONTAINS(haystack, needle) \
  EXPECT_NE(std::string(haystack).find(needle), std::string::npos) << "in: " << (haystack)

inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

inline void write_gzip(const std::string& path, const std::string& bytes) {
  gzFile gz = gzopen(path.c_str(), "wb");
  ASSERT_NE(gz, nullptr) << path;
  ASSERT_EQ(gzwrite(gz, bytes.data(), static_cast<unsigned>(bytes.size())),
            static_cast<int>(bytes.size()));
  ASSERT_EQ(gzclose(gz), Z_OK);
}

// Three 2x2 images with the values 0..11 (and a couple of large ones).
inline std::string tiny_idx() {
  std::string b = {0, 0, 0x08, 3, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 2};
  for (int v : {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 200, 255}) b.push_back(static_cast<char>(v));
  return b;
}

inline std::vector<std::string> list_dir(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) names.push_back(entry.path().filename());
  std::sort(names.begin(), names.end());
  return names;
}

// The data directory of the real data sets: $VAE_EBM_DATA or ./data-cache, falling back
// to the source tree's data-cache when the build defines VAE_EBM_SOURCE_DIR.
inline std::string real_data_dir() {
  const std::string dir = default_data_dir();
#ifdef VAE_EBM_SOURCE_DIR
  if (!std::filesystem::exists(dir + "/mnist")) return std::string(VAE_EBM_SOURCE_DIR) + "/data-cache";
#endif
  return dir;
}

inline bool mnist_available(const std::string& dir) {
  for (const char* stem : {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                           "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"}) {
    const std::string base = dir + "/mnist/" + stem;
    if (!std::filesystem::exists(base) && !std::filesystem::exists(base + ".gz")) return false;
  }
  return true;
}

// Without the real data these tests skip on a developer's machine, but fail where the data
// is required (scripts/test.sh, and so CI, sets VAE_EBM_REQUIRE_DATA after setup.sh).
inline bool data_required() { return std::getenv("VAE_EBM_REQUIRE_DATA") != nullptr; }

// Skips a test without `what` (the real data set), or fails it where the data are required.
#define SKIP_UNLESS_DATA(available, what)                                                   \
  do {                                                                                      \
    if (!(available)) {                                                                     \
      if (data_required()) FAIL() << what << " not found in " << real_data_dir();           \
      GTEST_SKIP() << what << " not found in " << real_data_dir()                          \
                   << " (run scripts/setup.sh or set VAE_EBM_DATA)";                         \
    }                                                                                       \
  } while (0)
#define SKIP_WITHOUT_MNIST() SKIP_UNLESS_DATA(mnist_available(real_data_dir()), "MNIST")

inline bool colour_mnist_available(const std::string& dir) {
  for (const char* stem : {"train-images-idx4-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx4-ubyte",
                           "t10k-labels-idx1-ubyte"}) {
    if (!std::filesystem::exists(dir + "/colour-mnist/" + stem)) return false;
  }
  return true;
}

#define SKIP_WITHOUT_COLOUR_MNIST() SKIP_UNLESS_DATA(colour_mnist_available(real_data_dir()), "colour-mnist")

// Loads each real data set once per test binary.
inline const Dataset& cached_dataset(const std::string& name) {
  static std::map<std::string, std::unique_ptr<Dataset>> cache;
  auto& slot = cache[name];
  if (!slot) {
    DatasetOptions options;
    options.data_dir = real_data_dir();
    slot = std::make_unique<Dataset>(load_dataset(name, options));
  }
  return *slot;
}

inline uint64_t fnv1a_bits(const torch::Tensor& binary) {
  const torch::Tensor bytes = binary.to(torch::kUInt8).contiguous();
  const uint8_t* p = bytes.data_ptr<uint8_t>();
  uint64_t h = 0xcbf29ce484222325ULL;
  for (int64_t i = 0; i < bytes.numel(); ++i) {
    h ^= p[i];
    h *= 0x100000001b3ULL;
  }
  return h;
}

inline bool all_binary(const torch::Tensor& x) { return x.eq(0).logical_or(x.eq(1)).all().item<bool>(); }

// A small user data set in HDF5: these datasets by name.
inline void write_user_h5(const std::string& path, std::map<std::string, torch::Tensor> datasets) {
  H5Writer writer(path);
  for (const auto& [name, tensor] : datasets) writer.write(name, tensor);
  writer.close();
}

}  // namespace vae_ebm::test
