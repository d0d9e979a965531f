// Tests of the data layer: IDX, binarisation, data sets, batches, files, JSON, PNG,
// HDF5, run directories and generators.
#include <torch/torch.h>

#include <H5Cpp.h>
#include <gtest/gtest.h>
#include <zlib.h>

#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#endif
#include <stb/stb_image.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "data/batcher.h"
#include "data/binarize.h"
#include "data/dataset.h"
#include "data/error.h"
#include "data/files.h"
#include "data/hdf5_io.h"
#include "data/idx.h"
#include "data/sha256.h"
#include "data/json.h"
#include "data/png.h"
#include "data/run_dir.h"
#include "data/seed.h"
#include "tests/support.h"

namespace vae_ebm {
namespace {

namespace fs = std::filesystem;
using test::SeedingFixture;
using test::TempDir;

// ---------------------------------------------------------------- helpers

// Runs `fn`, expects a DataError and returns its message ("" and a failure otherwise).
template <typename Fn>
std::string data_error(Fn&& fn) {
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

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

void write_gzip(const std::string& path, const std::string& bytes) {
  gzFile gz = gzopen(path.c_str(), "wb");
  ASSERT_NE(gz, nullptr) << path;
  ASSERT_EQ(gzwrite(gz, bytes.data(), static_cast<unsigned>(bytes.size())),
            static_cast<int>(bytes.size()));
  ASSERT_EQ(gzclose(gz), Z_OK);
}

// Three 2x2 images with the values 0..11 (and a couple of large ones).
std::string tiny_idx() {
  std::string b = {0, 0, 0x08, 3, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 2};
  for (int v : {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 200, 255}) b.push_back(static_cast<char>(v));
  return b;
}

std::vector<std::string> list_dir(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir)) names.push_back(entry.path().filename());
  std::sort(names.begin(), names.end());
  return names;
}

// The data directory of the real data sets: $VAE_EBM_DATA or ./data-cache, falling back
// to the source tree's data-cache when the build defines VAE_EBM_SOURCE_DIR.
std::string real_data_dir() {
  const std::string dir = default_data_dir();
#ifdef VAE_EBM_SOURCE_DIR
  if (!fs::exists(dir + "/mnist")) return std::string(VAE_EBM_SOURCE_DIR) + "/data-cache";
#endif
  return dir;
}

bool mnist_available(const std::string& dir) {
  for (const char* stem : {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                           "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"}) {
    const std::string base = dir + "/mnist/" + stem;
    if (!fs::exists(base) && !fs::exists(base + ".gz")) return false;
  }
  return true;
}

// Without the real data these tests skip on a developer's machine, but fail where the data
// is required (scripts/test.sh, and so CI, sets VAE_EBM_REQUIRE_DATA after setup.sh).
bool data_required() { return std::getenv("VAE_EBM_REQUIRE_DATA") != nullptr; }

#define SKIP_WITHOUT_MNIST()                                                              \
  do {                                                                                    \
    if (!mnist_available(real_data_dir())) {                                              \
      if (data_required()) FAIL() << "MNIST not found in " << real_data_dir();            \
      GTEST_SKIP() << "MNIST not found in " << real_data_dir()                           \
                   << "/mnist (run scripts/setup.sh or set VAE_EBM_DATA)";                 \
    }                                                                                     \
  } while (0)

bool colour_mnist_available(const std::string& dir) {
  for (const char* stem : {"train-images-idx4-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx4-ubyte",
                           "t10k-labels-idx1-ubyte"}) {
    if (!fs::exists(dir + "/colour-mnist/" + stem)) return false;
  }
  return true;
}

#define SKIP_WITHOUT_COLOUR_MNIST()                                                       \
  do {                                                                                    \
    if (!colour_mnist_available(real_data_dir())) {                                       \
      if (data_required()) FAIL() << "colour-mnist not found in " << real_data_dir();     \
      GTEST_SKIP() << "colour-mnist not found in " << real_data_dir()                    \
                   << "/colour-mnist (run scripts/setup.sh --data or set VAE_EBM_DATA)";  \
    }                                                                                     \
  } while (0)

// Loads each real data set once per test binary.
const Dataset& cached_dataset(const std::string& name) {
  static std::map<std::string, std::unique_ptr<Dataset>> cache;
  auto& slot = cache[name];
  if (!slot) {
    DatasetOptions options;
    options.data_dir = real_data_dir();
    slot = std::make_unique<Dataset>(load_dataset(name, options));
  }
  return *slot;
}

uint64_t fnv1a_bits(const torch::Tensor& binary) {
  const torch::Tensor bytes = binary.to(torch::kUInt8).contiguous();
  const uint8_t* p = bytes.data_ptr<uint8_t>();
  uint64_t h = 0xcbf29ce484222325ULL;
  for (int64_t i = 0; i < bytes.numel(); ++i) {
    h ^= p[i];
    h *= 0x100000001b3ULL;
  }
  return h;
}

bool all_binary(const torch::Tensor& x) { return x.eq(0).logical_or(x.eq(1)).all().item<bool>(); }

// ---------------------------------------------------------------- IDX

class IdxTest : public SeedingFixture {};

TEST_F(IdxTest, ReadsRawAndGzip) {
  TempDir dir;
  write_bytes(dir.file("raw"), tiny_idx());
  write_gzip(dir.file("compressed.gz"), tiny_idx());
  write_gzip(dir.file("compressed-without-suffix"), tiny_idx());  // detected by magic bytes
  for (const std::string name : {"raw", "compressed.gz", "compressed-without-suffix"}) {
    const torch::Tensor t = read_idx(dir.file(name));
    EXPECT_EQ(t.scalar_type(), torch::kUInt8) << name;
    EXPECT_EQ(t.sizes().vec(), (std::vector<int64_t>{3, 2, 2})) << name;
    const uint8_t* p = t.data_ptr<uint8_t>();
    const std::vector<int> expected = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 200, 255};
    for (size_t i = 0; i < expected.size(); ++i) EXPECT_EQ(p[i], expected[i]) << name << " " << i;
  }
}

TEST_F(IdxTest, RankOneLabels) {
  TempDir dir;
  write_bytes(dir.file("labels"), std::string{0, 0, 0x08, 1, 0, 0, 0, 4, 7, 0, 9, 3});
  const torch::Tensor t = read_idx(dir.file("labels"));
  EXPECT_EQ(t.sizes().vec(), std::vector<int64_t>{4});
  EXPECT_EQ(t[2].item<int>(), 9);
}

TEST_F(IdxTest, TruncatedFileNamesPathAndCounts) {
  TempDir dir;
  std::string bytes = tiny_idx();
  bytes.resize(bytes.size() - 2);
  write_bytes(dir.file("short"), bytes);
  const std::string msg = data_error([&] { read_idx(dir.file("short")); });
  EXPECT_CONTAINS(msg, dir.file("short"));
  EXPECT_CONTAINS(msg, "truncated: expected 12 bytes of data, found 10");

  write_gzip(dir.file("short.gz"), bytes);
  const std::string gz_msg = data_error([&] { read_idx(dir.file("short.gz")); });
  EXPECT_CONTAINS(gz_msg, dir.file("short.gz"));
  EXPECT_CONTAINS(gz_msg, "truncated");

  write_bytes(dir.file("header"), std::string{0, 0, 0x08, 3, 0, 0});
  const std::string header_msg = data_error([&] { read_idx(dir.file("header")); });
  EXPECT_CONTAINS(header_msg, dir.file("header"));
  EXPECT_CONTAINS(header_msg, "truncated");
}

TEST_F(IdxTest, CorruptGzipStream) {
  TempDir dir;
  // A valid gzip stream cut in half: zlib must report the error, not a short read.
  std::string big = {0, 0, 0x08, 1, 0, 0, 0x10, 0};
  for (int i = 0; i < 4096; ++i) big.push_back(static_cast<char>((i * 7919) % 251));
  write_gzip(dir.file("full.gz"), big);
  std::string gz = read_file(dir.file("full.gz"));
  write_bytes(dir.file("cut.gz"), gz.substr(0, gz.size() / 2));
  const std::string msg = data_error([&] { read_idx(dir.file("cut.gz")); });
  EXPECT_CONTAINS(msg, dir.file("cut.gz"));
}

TEST_F(IdxTest, BadMagic) {
  TempDir dir;
  std::string bytes = tiny_idx();
  bytes[0] = 0x12;
  write_bytes(dir.file("bad"), bytes);
  const std::string msg = data_error([&] { read_idx(dir.file("bad")); });
  EXPECT_CONTAINS(msg, dir.file("bad"));
  EXPECT_CONTAINS(msg, "magic");

  write_bytes(dir.file("text"), "hello world, this is not an IDX file");
  EXPECT_CONTAINS(data_error([&] { read_idx(dir.file("text")); }), "magic");
}

TEST_F(IdxTest, BadRankAndZeroSize) {
  TempDir dir;
  write_bytes(dir.file("rank0"), std::string{0, 0, 0x08, 0});
  EXPECT_CONTAINS(data_error([&] { read_idx(dir.file("rank0")); }), "rank 0");
  write_bytes(dir.file("rank5"), std::string(4 + 20 + 1, '\1').replace(0, 4, std::string{0, 0, 0x08, 5}));
  EXPECT_CONTAINS(data_error([&] { read_idx(dir.file("rank5")); }), "rank 5");
  write_bytes(dir.file("zero"), std::string{0, 0, 0x08, 2, 0, 0, 0, 0, 0, 0, 0, 2});
  const std::string msg = data_error([&] { read_idx(dir.file("zero")); });
  EXPECT_CONTAINS(msg, dir.file("zero"));
  EXPECT_CONTAINS(msg, "positive");
}

TEST_F(IdxTest, WrongTypeCode) {
  TempDir dir;
  std::string bytes = tiny_idx();
  bytes[2] = 0x0D;  // float
  write_bytes(dir.file("floats"), bytes);
  const std::string msg = data_error([&] { read_idx(dir.file("floats")); });
  EXPECT_CONTAINS(msg, dir.file("floats"));
  EXPECT_CONTAINS(msg, "0x0D");
}

TEST_F(IdxTest, TrailingBytes) {
  TempDir dir;
  write_bytes(dir.file("long"), tiny_idx() + "xyz");
  const std::string msg = data_error([&] { read_idx(dir.file("long")); });
  EXPECT_CONTAINS(msg, dir.file("long"));
  EXPECT_CONTAINS(msg, "3 trailing bytes");
}

TEST_F(IdxTest, MissingFileNamesPath) {
  TempDir dir;
  const std::string msg = data_error([&] { read_idx(dir.file("nope")); });
  EXPECT_CONTAINS(msg, dir.file("nope"));
}

TEST_F(IdxTest, FindIdxPrefersRawThenGzip) {
  TempDir dir;
  write_gzip(dir.file("a.gz"), tiny_idx());
  EXPECT_EQ(find_idx(dir.path(), "a"), dir.file("a.gz"));
  write_bytes(dir.file("a"), tiny_idx());
  EXPECT_EQ(find_idx(dir.path(), "a"), dir.file("a"));
  const std::string msg = data_error([&] { find_idx(dir.path(), "b"); });
  EXPECT_CONTAINS(msg, dir.file("b"));
  EXPECT_CONTAINS(msg, dir.file("b.gz"));
}

// ---------------------------------------------------------------- binarisation

class BinarizeTest : public SeedingFixture {};

TEST_F(BinarizeTest, CounterUniformIsPinnedAndInRange) {
  // Pinned: the hash must give the same bits on every machine (computed independently).
  EXPECT_EQ(counter_uniform(0, 0, 0, 0), 0.1296456182997474);
  EXPECT_EQ(counter_uniform(1, 2, 3, 4), 0.8334472949893438);
  EXPECT_EQ(counter_uniform(0, 0, 0, 0), counter_uniform(0, 0, 0, 0));
  EXPECT_NE(counter_uniform(0, 0, 0, 0), counter_uniform(0, 0, 0, 1));
  EXPECT_NE(counter_uniform(0, 0, 0, 0), counter_uniform(0, 0, 1, 0));
  EXPECT_NE(counter_uniform(0, 0, 0, 0), counter_uniform(0, 1, 0, 0));
  EXPECT_NE(counter_uniform(0, 0, 0, 0), counter_uniform(1, 0, 0, 0));

  double sum = 0.0;
  int below_tenth = 0;
  const int n = 100000;
  for (int i = 0; i < n; ++i) {
    const double u = counter_uniform(7, 1, static_cast<uint64_t>(i / 784), static_cast<uint64_t>(i % 784));
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    sum += u;
    below_tenth += u < 0.1;
  }
  EXPECT_NEAR(sum / n, 0.5, 0.01);
  EXPECT_NEAR(below_tenth / static_cast<double>(n), 0.1, 0.01);
}

TEST_F(BinarizeTest, StaticMatchesCounterAndIsDeterministic) {
  const torch::Tensor grey = torch::rand({20, 30});
  const torch::Tensor a = binarize_static(grey, 5, 1, 100);
  const torch::Tensor b = binarize_static(grey, 5, 1, 100);
  EXPECT_TRUE(torch::equal(a, b));
  EXPECT_EQ(a.scalar_type(), torch::kFloat);
  EXPECT_EQ(a.sizes(), grey.sizes());
  EXPECT_TRUE(all_binary(a));
  const auto g = grey.accessor<float, 2>();
  const auto o = a.accessor<float, 2>();
  for (int64_t i = 0; i < 20; ++i) {
    for (int64_t p = 0; p < 30; ++p) {
      const float expected = counter_uniform(5, 1, static_cast<uint64_t>(100 + i), static_cast<uint64_t>(p)) < g[i][p] ? 1.f : 0.f;
      ASSERT_EQ(o[i][p], expected) << i << "," << p;
    }
  }
  // A slice binarised with first_index gives the same rows as the whole.
  EXPECT_TRUE(torch::equal(binarize_static(grey.slice(0, 5, 20), 5, 1, 105), a.slice(0, 5, 20)));
  EXPECT_FALSE(torch::equal(binarize_static(grey, 6, 1, 100), a));
  EXPECT_FALSE(torch::equal(binarize_static(grey, 5, 2, 100), a));
  // Extremes.
  EXPECT_EQ(binarize_static(torch::zeros({3, 10}), 0, 0).sum().item<float>(), 0.f);
  EXPECT_EQ(binarize_static(torch::ones({3, 10}), 0, 0).sum().item<float>(), 30.f);
  // Bad input.
  data_error([] { binarize_static(torch::rand({4}), 0, 0); });
}

TEST_F(BinarizeTest, StaticIsFast) {
  const torch::Tensor grey = torch::rand({70000, 784});
  const auto start = std::chrono::steady_clock::now();
  const torch::Tensor out = binarize_static(grey, 0, 0);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_NEAR(out.mean().item<double>(), 0.5, 0.001);
  EXPECT_LT(seconds, 3.0) << "binarising 70,000 x 784 took " << seconds << " s";
  std::cout << "[          ] binarize_static 70000x784: " << seconds << " s\n";
}

TEST_F(BinarizeTest, RealBinaryMnistIsPinned) {
  SKIP_WITHOUT_MNIST();
  const Dataset& ds = cached_dataset("binary-mnist");
  const torch::Tensor first10 = ds.train.images.slice(0, 0, 10);
  ASSERT_TRUE(all_binary(first10));
  // FNV-1a 64 over the 7,840 bits (one byte each) of the first ten training images,
  // binarisation seed 0. Changing the hash or the split keys changes this value.
  EXPECT_EQ(fnv1a_bits(first10), 0xbee904b2885fdb9cULL)
      << std::hex << "observed 0x" << fnv1a_bits(first10);
  // Loading again gives the same bits.
  DatasetOptions options;
  options.data_dir = real_data_dir();
  const Dataset again = load_dataset("binary-mnist", options);
  EXPECT_TRUE(torch::equal(again.train.images, ds.train.images));
  EXPECT_TRUE(torch::equal(again.test.images, ds.test.images));
  // Another seed gives other bits.
  options.binarisation_seed = 1;
  const Dataset other = load_dataset("binary-mnist", options);
  EXPECT_FALSE(torch::equal(other.train.images.slice(0, 0, 10), first10));
}

TEST_F(BinarizeTest, RealBinaryMnistMeanMatchesGrey) {
  SKIP_WITHOUT_MNIST();
  const double binary_mean = cached_dataset("binary-mnist").train.images.mean().item<double>();
  const double grey_mean = cached_dataset("mnist").train.images.mean().item<double>();
  std::cout << "[          ] train mean: grey " << grey_mean << ", binary " << binary_mean << "\n";
  EXPECT_NEAR(binary_mean, grey_mean, 0.002);
  EXPECT_NEAR(binary_mean, 0.1307, 0.003);
}

// ---------------------------------------------------------------- data sets

class DatasetTest : public SeedingFixture {};

TEST_F(DatasetTest, BinaryMnistShapesAndLabels) {
  SKIP_WITHOUT_MNIST();
  const Dataset& ds = cached_dataset("binary-mnist");
  EXPECT_EQ(ds.name, "binary-mnist");
  EXPECT_EQ(ds.train.size(), 50000);
  EXPECT_EQ(ds.validation.size(), 10000);
  EXPECT_EQ(ds.test.size(), 10000);
  EXPECT_EQ(ds.dim(), 784);
  EXPECT_EQ(ds.image_shape, (std::vector<int64_t>{1, 28, 28}));
  EXPECT_TRUE(ds.binary);
  EXPECT_FALSE(ds.dynamic);
  EXPECT_FALSE(ds.eight_bit);
  for (const char* split : {"train", "validation", "test"}) {
    const Split& s = ds.split(split);
    EXPECT_EQ(s.images.scalar_type(), torch::kFloat) << split;
    EXPECT_EQ(s.images.dim(), 2) << split;
    EXPECT_EQ(s.images.size(1), 784) << split;
    EXPECT_TRUE(all_binary(s.images)) << split;
    ASSERT_TRUE(s.labels.defined()) << split;
    EXPECT_EQ(s.labels.scalar_type(), torch::kLong) << split;
    EXPECT_EQ(s.labels.size(0), s.size()) << split;
    EXPECT_EQ(s.labels.min().item<int64_t>(), 0) << split;
    EXPECT_EQ(s.labels.max().item<int64_t>(), 9) << split;
  }
  // The well-known first MNIST training labels.
  const auto labels = ds.train.labels.accessor<int64_t, 1>();
  EXPECT_EQ((std::vector<int64_t>{labels[0], labels[1], labels[2], labels[3], labels[4]}),
            (std::vector<int64_t>{5, 0, 4, 1, 9}));
  EXPECT_CONTAINS(data_error([&] { ds.split("training"); }), "validation");
}

TEST_F(DatasetTest, GreyMnistAndSplits) {
  SKIP_WITHOUT_MNIST();
  const Dataset& grey = cached_dataset("mnist");
  EXPECT_FALSE(grey.binary);
  EXPECT_TRUE(grey.eight_bit);
  EXPECT_EQ(grey.train.size(), 50000);
  EXPECT_GE(grey.train.images.min().item<float>(), 0.f);
  EXPECT_LE(grey.train.images.max().item<float>(), 1.f);
  EXPECT_FALSE(all_binary(grey.train.images.slice(0, 0, 10)));
  // Validation is the last 10,000 of the 60,000 training images: the raw IDX agrees.
  const torch::Tensor raw = read_idx(find_idx(real_data_dir() + "/mnist", "train-images-idx3-ubyte"));
  EXPECT_TRUE(torch::equal(grey.validation.images[0],
                           raw[50000].reshape({784}).to(torch::kFloat).div(255.0f)));
  EXPECT_TRUE(torch::equal(grey.train.images[49999],
                           raw[49999].reshape({784}).to(torch::kFloat).div(255.0f)));
  // Static binarisation uses the index within the split.
  const Dataset& binary = cached_dataset("binary-mnist");
  EXPECT_TRUE(torch::equal(binary.validation.images.slice(0, 0, 3),
                           binarize_static(grey.validation.images.slice(0, 0, 3), 0, 1, 0)));
  EXPECT_TRUE(torch::equal(binary.test.images.slice(0, 0, 3),
                           binarize_static(grey.test.images.slice(0, 0, 3), 0, 2, 0)));
}

TEST_F(DatasetTest, DynamicMnistKeepsTrainGrey) {
  SKIP_WITHOUT_MNIST();
  DatasetOptions options;
  options.data_dir = real_data_dir();
  const Dataset ds = load_dataset("binary-mnist-dynamic", options);
  EXPECT_TRUE(ds.dynamic);
  EXPECT_TRUE(ds.binary);
  EXPECT_FALSE(ds.eight_bit);
  EXPECT_TRUE(torch::equal(ds.train.images, cached_dataset("mnist").train.images));
  EXPECT_TRUE(torch::equal(ds.validation.images, cached_dataset("binary-mnist").validation.images));
  EXPECT_TRUE(torch::equal(ds.test.images, cached_dataset("binary-mnist").test.images));
}

TEST_F(DatasetTest, FashionMnist) {
  DatasetOptions options;
  options.data_dir = real_data_dir();
  if (!fs::exists(options.data_dir + "/fashion-mnist") && !fs::exists("/usr/share/datasets/fashion-mnist")) {
    if (data_required()) FAIL() << "Fashion-MNIST not found";
    GTEST_SKIP() << "Fashion-MNIST not found";
  }
  const Dataset grey = load_dataset("fashion-mnist", options);
  EXPECT_EQ(grey.train.size(), 50000);
  EXPECT_EQ(grey.validation.size(), 10000);
  EXPECT_EQ(grey.test.size(), 10000);
  EXPECT_EQ(grey.dim(), 784);
  EXPECT_FALSE(grey.binary);
  EXPECT_TRUE(grey.eight_bit);
  EXPECT_EQ(grey.train.labels[0].item<int64_t>(), 9);  // ankle boot
  const Dataset binary = load_dataset("binary-fashion-mnist", options);
  EXPECT_TRUE(binary.binary);
  EXPECT_FALSE(binary.eight_bit);
  EXPECT_TRUE(all_binary(binary.train.images));
  EXPECT_NEAR(binary.train.images.mean().item<double>(), grey.train.images.mean().item<double>(), 0.002);
}

TEST_F(DatasetTest, MissingFilesAreNamed) {
  TempDir dir;
  DatasetOptions options;
  options.data_dir = dir.path();
  const std::string msg = data_error([&] { load_dataset("mnist", options); });
  EXPECT_CONTAINS(msg, dir.path() + "/mnist/train-images-idx3-ubyte");
}

TEST_F(DatasetTest, AFileThatIsNotThePublishedOneIsRefusedByItsDigest) {
  // Well-formed IDX files under MNIST's names, but not MNIST's.
  TempDir dir;
  fs::create_directories(dir.file("mnist"));
  std::string images = {0, 0, 0x08, 3, 0, 0, 0, 5, 0, 0, 0, 2, 0, 0, 0, 2};
  images.append(20, '\x10');
  write_bytes(dir.file("mnist/train-images-idx3-ubyte"), images);
  for (const char* stem : {"train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"})
    write_bytes(dir.file(std::string("mnist/") + stem), images);
  DatasetOptions options;
  options.data_dir = dir.path();
  const std::string msg = data_error([&] { load_dataset("mnist", options); });
  EXPECT_CONTAINS(msg, "IDX file " + dir.file("mnist/train-images-idx3-ubyte") + " is not the published mnist file");
  EXPECT_CONTAINS(msg, "its SHA-256 is " + sha256_hex(images));
  EXPECT_CONTAINS(msg, "expected ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db");
}

TEST_F(DatasetTest, OneFlippedPixelOfTheRealTestSetIsRefused) {
  SKIP_WITHOUT_MNIST();
  TempDir dir;
  fs::create_directories(dir.file("mnist"));
  for (const char* stem : {"train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                           "t10k-labels-idx1-ubyte"})
    fs::copy_file(find_idx(real_data_dir() + "/mnist", stem), dir.file(std::string("mnist/") + stem));
  DatasetOptions options;
  options.data_dir = dir.path();
  const Dataset intact = load_dataset("binary-mnist", options);
  ASSERT_EQ(intact.files.size(), 4u);
  EXPECT_EQ(intact.files[0].sha256, "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db");
  EXPECT_EQ(intact.fingerprint().size(), 64u);
  auto bytes = read_file(dir.file("mnist/t10k-images-idx3-ubyte"));
  bytes[16 + 28 * 14 + 14] ^= 0x80;
  write_bytes(dir.file("mnist/t10k-images-idx3-ubyte"), bytes);
  const std::string msg = data_error([&] { load_dataset("binary-mnist", options); });
  EXPECT_CONTAINS(msg, "t10k-images-idx3-ubyte is not the published mnist file");
}

// The grey levels (0..255) of images read as value/255.
torch::Tensor levels(const torch::Tensor& images) { return images.mul(255.0f).round().to(torch::kLong); }

// Checks colour images [N, 3, 32, 32] (levels) against the grey digits [N, 28, 28] they were
// made from: the 2-pixel border is the background colour, a pixel of grey level 255 the
// foreground colour, every pixel (m * fg + (255 - m) * bg + 127) / 255, and the two colours'
// luma (BT.601, times 1000) at least 100,000 apart. Returns how many images had a pixel of level
// 255 (those whose foreground is known).
int64_t expect_colour_blend(const torch::Tensor& colour, const torch::Tensor& grey) {
  int64_t checked = 0;
  for (int64_t i = 0; i < colour.size(0); ++i) {
    const torch::Tensor c = colour[i], m = torch::constant_pad_nd(grey[i], {2, 2, 2, 2}, 0);
    const torch::Tensor bg = c.select(2, 0).select(1, 0).reshape({3, 1, 1});
    const auto full = m.eq(255).nonzero();
    if (full.size(0) == 0) continue;
    const torch::Tensor fg =
        c.index({torch::indexing::Slice(), full[0][0].item<int64_t>(), full[0][1].item<int64_t>()}).reshape({3, 1, 1});
    const torch::Tensor expected = torch::div(m * fg + (255 - m) * bg + 127, 255, "floor");
    EXPECT_TRUE(torch::equal(c, expected)) << "image " << i;
    const torch::Tensor weights = torch::tensor({299, 587, 114}, torch::kLong);
    const int64_t luma_gap = (weights * (fg - bg).reshape({3})).sum().abs().item<int64_t>();
    EXPECT_GE(luma_gap, 100000) << "image " << i;
    ++checked;
  }
  return checked;
}

TEST_F(DatasetTest, ColourMnistShapesLevelsAndLabels) {
  SKIP_WITHOUT_MNIST();
  SKIP_WITHOUT_COLOUR_MNIST();
  const Dataset& ds = cached_dataset("colour-mnist");
  const Dataset& grey = cached_dataset("mnist");
  EXPECT_EQ(ds.name, "colour-mnist");
  EXPECT_EQ(ds.image_shape, (std::vector<int64_t>{3, 32, 32}));
  EXPECT_EQ(ds.dim(), 3072);
  EXPECT_EQ(ds.train.size(), 50000);
  EXPECT_EQ(ds.validation.size(), 10000);
  EXPECT_EQ(ds.test.size(), 10000);
  EXPECT_TRUE(ds.eight_bit);
  EXPECT_FALSE(ds.binary);
  EXPECT_FALSE(ds.dynamic);
  EXPECT_CONTAINS(ds.reading, "value/255");
  ASSERT_EQ(ds.files.size(), 4u);
  EXPECT_EQ(fs::path(ds.files[0].path).filename(), "train-images-idx4-ubyte");
  EXPECT_EQ(ds.files[0].sha256, "8c803995e0390174b8b5240c2d0a696d91e026de17a0af2c9fbb8a02db2e606a");
  EXPECT_EQ(ds.files[2].sha256, "a0bc835baae700d3a722052a41d792d006586f56319c5b365d92ae65820d89c8");
  for (const char* split : {"train", "validation", "test"}) {
    const Split& s = ds.split(split);
    EXPECT_EQ(s.images.scalar_type(), torch::kFloat) << split;
    EXPECT_EQ(s.images.sizes().vec(), (std::vector<int64_t>{s.size(), 3072})) << split;
    EXPECT_GE(s.images.min().item<float>(), 0.f) << split;
    EXPECT_LE(s.images.max().item<float>(), 1.f) << split;
    // Labels are MNIST's, split alike.
    EXPECT_TRUE(torch::equal(s.labels, grey.split(split).labels)) << split;
    // The digits too: the first images of each split are MNIST's drawn in colour.
    const int64_t n = 50;
    const torch::Tensor colour = levels(s.images.slice(0, 0, n)).reshape({n, 3, 32, 32});
    EXPECT_TRUE(torch::equal(s.images.slice(0, 0, n), colour.reshape({n, 3072}).to(torch::kFloat).div(255.0f)))
        << split << ": values are not k/255";
    EXPECT_GE(expect_colour_blend(colour, levels(grey.split(split).images.slice(0, 0, n)).reshape({n, 28, 28})), n / 2)
        << split;
  }
  // Every value is k/255 (eight_bit's promise), over a whole split.
  EXPECT_TRUE(torch::equal(ds.test.images, levels(ds.test.images).to(torch::kFloat).div(255.0f)));
  // Colours differ from image to image.
  const torch::Tensor corners = levels(ds.train.images.slice(0, 0, 100).select(1, 0));
  std::set<int64_t> distinct(corners.data_ptr<int64_t>(), corners.data_ptr<int64_t>() + corners.numel());
  EXPECT_GT(distinct.size(), 50u);
}

TEST_F(DatasetTest, ColourMnistWithAFlippedByteIsRefused) {
  SKIP_WITHOUT_COLOUR_MNIST();
  TempDir dir;
  fs::create_directories(dir.file("colour-mnist"));
  const std::string real = fs::absolute(real_data_dir() + "/colour-mnist").string();
  for (const char* stem : {"train-labels-idx1-ubyte", "t10k-images-idx4-ubyte", "t10k-labels-idx1-ubyte"})
    fs::create_symlink(real + "/" + stem, dir.file(std::string("colour-mnist/") + stem));
  const std::string images = dir.file("colour-mnist/train-images-idx4-ubyte");
  auto bytes = read_file(real + "/train-images-idx4-ubyte");
  bytes[20 + 3072 * 7 + 1024 + 32 * 16 + 16] ^= 0x01;  // image 7, green, the middle pixel
  write_bytes(images, bytes);
  DatasetOptions options;
  options.data_dir = dir.path();
  const std::string msg = data_error([&] { load_dataset("colour-mnist", options); });
  EXPECT_CONTAINS(msg, "IDX file " + images + " is not the colour-mnist file train-images-idx4-ubyte");
  EXPECT_CONTAINS(msg, "its SHA-256 is " + sha256_hex(bytes));
  EXPECT_CONTAINS(msg, "expected 8c803995e0390174b8b5240c2d0a696d91e026de17a0af2c9fbb8a02db2e606a");
  EXPECT_CONTAINS(msg, "make it again with scripts/setup.sh");
}

TEST_F(DatasetTest, MissingColourMnistSaysHowToMakeIt) {
  TempDir dir;
  DatasetOptions options;
  options.data_dir = dir.path();
  const std::string msg = data_error([&] { load_dataset("colour-mnist", options); });
  EXPECT_CONTAINS(msg, dir.path() + "/colour-mnist/train-images-idx4-ubyte");
  EXPECT_CONTAINS(msg, "scripts/setup.sh fetches the data sets");
}

// tools/make_colour_mnist on a tiny MNIST of its own.
std::string idx_header(std::vector<uint32_t> sizes) {
  std::string b = {0, 0, 0x08, static_cast<char>(sizes.size())};
  for (const uint32_t s : sizes)
    for (int shift = 24; shift >= 0; shift -= 8) b.push_back(static_cast<char>((s >> shift) & 0xFF));
  return b;
}

std::string tiny_digits(int n, int offset) {
  std::string b = idx_header({static_cast<uint32_t>(n), 28, 28});
  for (int i = 0; i < n; ++i)
    for (int p = 0; p < 28 * 28; ++p) b.push_back(static_cast<char>((offset + i * 37 + p) % 256));
  return b;
}

int run_tool(const std::string& args) {
  return std::system((std::string(VAE_EBM_MAKE_COLOUR_MNIST) + " " + args + " 2>/dev/null").c_str());
}

TEST_F(DatasetTest, MakeColourMnistPadsBlendsAndIsDeterministic) {
  TempDir dir;
  fs::create_directories(dir.file("mnist"));
  write_bytes(dir.file("mnist/train-images-idx3-ubyte"), tiny_digits(3, 0));
  write_bytes(dir.file("mnist/train-labels-idx1-ubyte"), idx_header({3}) + std::string{7, 1, 4});
  write_bytes(dir.file("mnist/t10k-images-idx3-ubyte"), tiny_digits(2, 0));  // the same digits as train's first
  write_bytes(dir.file("mnist/t10k-labels-idx1-ubyte"), idx_header({2}) + std::string{2, 9});
  ASSERT_EQ(run_tool(dir.file("mnist") + " " + dir.file("out/a")), 0);
  ASSERT_EQ(run_tool(dir.file("mnist") + " " + dir.file("out/b")), 0);
  EXPECT_EQ(list_dir(dir.file("out/a")), (std::vector<std::string>{"t10k-images-idx4-ubyte", "t10k-labels-idx1-ubyte",
                                                                    "train-images-idx4-ubyte", "train-labels-idx1-ubyte"}));
  for (const auto& name : list_dir(dir.file("out/a")))
    EXPECT_EQ(read_file(dir.file("out/a/" + name)), read_file(dir.file("out/b/" + name))) << name;
  EXPECT_EQ(read_file(dir.file("out/a/train-labels-idx1-ubyte")), read_file(dir.file("mnist/train-labels-idx1-ubyte")));
  const torch::Tensor train = read_idx(dir.file("out/a/train-images-idx4-ubyte")).to(torch::kLong);
  const torch::Tensor test = read_idx(dir.file("out/a/t10k-images-idx4-ubyte")).to(torch::kLong);
  EXPECT_EQ(train.sizes().vec(), (std::vector<int64_t>{3, 3, 32, 32}));
  EXPECT_EQ(test.sizes().vec(), (std::vector<int64_t>{2, 3, 32, 32}));
  const torch::Tensor digits = read_idx(dir.file("mnist/train-images-idx3-ubyte")).to(torch::kLong);
  EXPECT_EQ(expect_colour_blend(train, digits), 3);
  EXPECT_EQ(expect_colour_blend(test, digits.slice(0, 0, 2)), 2);
  // Colours are keyed by split and index: the same digit differs between splits and images.
  EXPECT_FALSE(torch::equal(train[0], test[0]));
  EXPECT_FALSE(torch::equal(train[0].select(1, 0).select(1, 0), train[1].select(1, 0).select(1, 0)));

  // Bad input: nothing is written.
  EXPECT_NE(run_tool(dir.file("nowhere") + " " + dir.file("out/c")), 0);
  EXPECT_TRUE(list_dir(dir.file("out/c")).empty());
  write_bytes(dir.file("mnist/t10k-labels-idx1-ubyte"), idx_header({3}) + std::string{2, 9, 9});
  EXPECT_NE(run_tool(dir.file("mnist") + " " + dir.file("out/d")), 0);
  EXPECT_EQ(list_dir(dir.file("out/d")), (std::vector<std::string>{"train-images-idx4-ubyte", "train-labels-idx1-ubyte"}));
  EXPECT_NE(run_tool(""), 0);
}

TEST_F(DatasetTest, UnknownNameListsValidNames) {
  DatasetOptions options;
  const std::string msg = data_error([&] { load_dataset("cifar-10", options); });
  EXPECT_CONTAINS(msg, "cifar-10");
  EXPECT_CONTAINS(msg, "binary-mnist");
  EXPECT_CONTAINS(msg, "colour-mnist");
  EXPECT_CONTAINS(msg, "fashion-mnist");
  EXPECT_CONTAINS(msg, "hdf5:");
  const auto names = dataset_names();
  EXPECT_NE(std::find(names.begin(), names.end(), "binary-mnist"), names.end());
}

TEST_F(DatasetTest, DefaultDataDirFollowsEnvironment) {
  const char* old = std::getenv("VAE_EBM_DATA");
  const std::string saved = old ? old : "";
  ::setenv("VAE_EBM_DATA", "/some/where", 1);
  EXPECT_EQ(default_data_dir(), "/some/where");
  ::unsetenv("VAE_EBM_DATA");
  EXPECT_EQ(default_data_dir(), "data-cache");
  if (old) ::setenv("VAE_EBM_DATA", saved.c_str(), 1);
}

// A small user data set: uint8 [N, 3, 2] images, optional labels.
void write_user_h5(const std::string& path, std::map<std::string, torch::Tensor> datasets) {
  H5Writer writer(path);
  for (const auto& [name, tensor] : datasets) writer.write(name, tensor);
  writer.close();
}

torch::Tensor bytes_tensor(std::vector<int64_t> shape, int offset) {
  int64_t n = 1;
  for (const int64_t s : shape) n *= s;
  return torch::arange(offset, offset + n, torch::kLong).remainder(256).to(torch::kUInt8).reshape(shape);
}

TEST_F(DatasetTest, Hdf5Uint8Images) {
  TempDir dir;
  const std::string path = dir.file("user.h5");
  write_user_h5(path, {{"train", bytes_tensor({4, 3, 2}, 0)},
                       {"validation", bytes_tensor({2, 3, 2}, 100)},
                       {"test", bytes_tensor({3, 3, 2}, 250)},
                       {"train_labels", torch::tensor({3, 1, 4, 1}, torch::kLong)},
                       {"test_labels", torch::tensor({5, 9, 2}, torch::kInt)}});
  const Dataset ds = load_dataset("hdf5:" + path, DatasetOptions{});
  EXPECT_EQ(ds.name, "hdf5:" + path);
  EXPECT_EQ(ds.image_shape, (std::vector<int64_t>{1, 3, 2}));
  EXPECT_EQ(ds.dim(), 6);
  EXPECT_FALSE(ds.binary);
  EXPECT_FALSE(ds.dynamic);
  EXPECT_TRUE(ds.eight_bit);
  EXPECT_EQ(ds.train.size(), 4);
  EXPECT_EQ(ds.validation.size(), 2);
  EXPECT_EQ(ds.test.size(), 3);
  EXPECT_EQ(ds.train.images.sizes().vec(), (std::vector<int64_t>{4, 6}));
  EXPECT_EQ(ds.train.images.scalar_type(), torch::kFloat);
  EXPECT_FLOAT_EQ(ds.train.images[1][5].item<float>(), 11.0f / 255.0f);
  EXPECT_FLOAT_EQ(ds.test.images[0][5].item<float>(), 255.0f / 255.0f);
  EXPECT_FLOAT_EQ(ds.test.images[1][0].item<float>(), 0.0f);  // (250 + 6) mod 256
  ASSERT_TRUE(ds.train.labels.defined());
  EXPECT_EQ(ds.train.labels.scalar_type(), torch::kLong);
  EXPECT_TRUE(torch::equal(ds.train.labels, torch::tensor({3, 1, 4, 1}, torch::kLong)));
  EXPECT_FALSE(ds.validation.labels.defined());
  EXPECT_TRUE(torch::equal(ds.test.labels, torch::tensor({5, 9, 2}, torch::kLong)));
}

TEST_F(DatasetTest, Hdf5Uint8ZerosAndOnesAreBinaryImages) {
  // A binarised MNIST stored as uint8 0/1: read as 0 and 1, not as 0 and 1/255.
  TempDir dir;
  const std::string path = dir.file("binary.h5");
  auto gen = at::make_generator<at::CPUGeneratorImpl>(3);
  auto bits = [&](int64_t n) { return torch::bernoulli(torch::full({n, 3, 2}, 0.5), gen).to(torch::kUInt8); };
  const auto train = bits(4);
  write_user_h5(path, {{"train", train}, {"validation", bits(2)}, {"test", bits(3)}});
  const Dataset ds = load_dataset("hdf5:" + path, DatasetOptions{});
  EXPECT_TRUE(ds.binary);
  EXPECT_FALSE(ds.eight_bit);
  EXPECT_TRUE(torch::equal(ds.train.images, train.reshape({4, 6}).to(torch::kFloat)));
  EXPECT_CONTAINS(ds.reading, "only 0 and 1: binary images");
  // One grey value anywhere makes every split grey levels.
  write_user_h5(dir.file("grey.h5"), {{"train", train}, {"validation", bits(2)}, {"test", bits(3).index_fill_(0, torch::tensor({0}), 2)}});
  const Dataset grey = load_dataset("hdf5:" + dir.file("grey.h5"), DatasetOptions{});
  EXPECT_FLOAT_EQ(grey.train.images.max().item<float>(), 1.0f / 255.0f);
  EXPECT_CONTAINS(grey.reading, "value/255");
  EXPECT_TRUE(grey.eight_bit);
}

TEST_F(DatasetTest, Hdf5FlatFloatBinary) {
  TempDir dir;
  const std::string path = dir.file("flat.h5");
  auto bits = [](int64_t n) { return torch::randint(0, 2, {n, 5}).to(torch::kFloat); };
  write_user_h5(path, {{"train", bits(8)}, {"validation", bits(3)}, {"test", bits(4).to(torch::kDouble)}});
  const Dataset ds = load_dataset("hdf5:" + path, DatasetOptions{});
  EXPECT_EQ(ds.image_shape, std::vector<int64_t>{5});
  EXPECT_EQ(ds.dim(), 5);
  EXPECT_TRUE(ds.binary);
  EXPECT_FALSE(ds.eight_bit);
  EXPECT_EQ(ds.test.images.scalar_type(), torch::kFloat);
  EXPECT_FALSE(ds.train.labels.defined());
}

TEST_F(DatasetTest, Hdf5FloatOutOfRangeNamesDataset) {
  TempDir dir;
  const std::string path = dir.file("bad.h5");
  torch::Tensor validation = torch::rand({3, 4});
  validation[1][2] = 1.5;
  write_user_h5(path, {{"train", torch::rand({5, 4})}, {"validation", validation}, {"test", torch::rand({2, 4})}});
  const std::string msg = data_error([&] { load_dataset("hdf5:" + path, DatasetOptions{}); });
  EXPECT_CONTAINS(msg, path);
  EXPECT_CONTAINS(msg, "/validation");
  EXPECT_CONTAINS(msg, "[0, 1]");
}

TEST_F(DatasetTest, Hdf5NaNIsAnError) {
  TempDir dir;
  const std::string path = dir.file("nan.h5");
  torch::Tensor test = torch::rand({3, 4});
  test[0][0] = std::numeric_limits<float>::quiet_NaN();
  write_user_h5(path, {{"train", torch::rand({5, 4})}, {"validation", torch::rand({2, 4})}, {"test", test}});
  const std::string msg = data_error([&] { load_dataset("hdf5:" + path, DatasetOptions{}); });
  EXPECT_CONTAINS(msg, "/test");
  EXPECT_CONTAINS(msg, "NaN");
}

TEST_F(DatasetTest, Hdf5MismatchedShapes) {
  TempDir dir;
  const std::string path = dir.file("mismatch.h5");
  write_user_h5(path, {{"train", bytes_tensor({4, 3, 2}, 0)},
                       {"validation", bytes_tensor({2, 3, 2}, 0)},
                       {"test", bytes_tensor({3, 2, 3}, 0)}});
  const std::string msg = data_error([&] { load_dataset("hdf5:" + path, DatasetOptions{}); });
  EXPECT_CONTAINS(msg, path);
  EXPECT_CONTAINS(msg, "[3, 2]");
  EXPECT_CONTAINS(msg, "[2, 3]");
  EXPECT_CONTAINS(msg, "/test");
}

TEST_F(DatasetTest, Hdf5MissingDatasetFileAndRank) {
  TempDir dir;
  const std::string path = dir.file("no-test.h5");
  write_user_h5(path, {{"train", bytes_tensor({4, 6}, 0)}, {"validation", bytes_tensor({2, 6}, 0)}});
  std::string msg = data_error([&] { load_dataset("hdf5:" + path, DatasetOptions{}); });
  EXPECT_CONTAINS(msg, path);
  EXPECT_CONTAINS(msg, "/test");

  msg = data_error([&] { load_dataset("hdf5:" + dir.file("absent.h5"), DatasetOptions{}); });
  EXPECT_CONTAINS(msg, dir.file("absent.h5"));

  write_bytes(dir.file("not-hdf5.h5"), "plain text");
  msg = data_error([&] { load_dataset("hdf5:" + dir.file("not-hdf5.h5"), DatasetOptions{}); });
  EXPECT_CONTAINS(msg, dir.file("not-hdf5.h5"));

  const std::string rank_path = dir.file("rank.h5");
  write_user_h5(rank_path, {{"train", bytes_tensor({4}, 0)}, {"validation", bytes_tensor({2, 6}, 0)},
                            {"test", bytes_tensor({2, 6}, 0)}});
  msg = data_error([&] { load_dataset("hdf5:" + rank_path, DatasetOptions{}); });
  EXPECT_CONTAINS(msg, rank_path);
  EXPECT_CONTAINS(msg, "/train");

  const std::string label_path = dir.file("labels.h5");
  write_user_h5(label_path, {{"train", bytes_tensor({4, 6}, 0)}, {"validation", bytes_tensor({2, 6}, 0)},
                             {"test", bytes_tensor({2, 6}, 0)}, {"train_labels", torch::zeros({3}, torch::kLong)}});
  msg = data_error([&] { load_dataset("hdf5:" + label_path, DatasetOptions{}); });
  EXPECT_CONTAINS(msg, "/train_labels");
}

// ---------------------------------------------------------------- HDF5 images with channels

// A user data set with attributes: {object, key, value} string attributes after the datasets.
struct StringAttribute {
  std::string object, key, value;
};

void write_user_h5(const std::string& path, std::map<std::string, torch::Tensor> datasets,
                   const std::vector<StringAttribute>& attributes) {
  H5Writer writer(path);
  for (const auto& [name, tensor] : datasets) writer.write(name, tensor);
  for (const auto& a : attributes) writer.attribute(a.object, a.key, a.value);
  writer.close();
}

torch::Tensor nhwc(const torch::Tensor& nchw) { return nchw.permute({0, 2, 3, 1}).contiguous(); }

// Three channels of 2x5 images: train 4, validation 2, test 3, as [N, C, H, W].
std::map<std::string, torch::Tensor> colour_nchw(bool as_float) {
  std::map<std::string, torch::Tensor> out = {{"train", bytes_tensor({4, 3, 2, 5}, 0)},
                                              {"validation", bytes_tensor({2, 3, 2, 5}, 120)},
                                              {"test", bytes_tensor({3, 3, 2, 5}, 200)}};
  if (as_float)
    for (auto& [name, t] : out) t = t.to(torch::kFloat).div(255.0f);
  return out;
}

std::map<std::string, torch::Tensor> to_nhwc(std::map<std::string, torch::Tensor> data) {
  for (auto& [name, t] : data) t = nhwc(t);
  return data;
}

void expect_same_data(const Dataset& a, const Dataset& b) {
  for (const char* split : {"train", "validation", "test"})
    EXPECT_TRUE(torch::equal(a.split(split).images, b.split(split).images)) << split;
  EXPECT_EQ(a.image_shape, b.image_shape);
  EXPECT_EQ(a.eight_bit, b.eight_bit);
  EXPECT_EQ(a.binary, b.binary);
}

TEST_F(DatasetTest, Hdf5BothLayoutsGiveTheSameImages) {
  TempDir dir;
  const auto data = colour_nchw(false);
  // NCHW said on the file root; NHWC said on each dataset.
  write_user_h5(dir.file("nchw.h5"), data, {{"/", "layout", "NCHW"}});
  write_user_h5(dir.file("nhwc.h5"), to_nhwc(data),
                {{"train", "layout", "NHWC"}, {"validation", "layout", "NHWC"}, {"test", "layout", "NHWC"}});
  // A dataset's own attribute wins over the root's: validation NHWC, the others NCHW from the root.
  auto mixed = data;
  mixed["validation"] = nhwc(mixed["validation"]);
  write_user_h5(dir.file("mixed.h5"), mixed, {{"/", "layout", "NCHW"}, {"validation", "layout", "NHWC"}});

  const Dataset a = load_dataset("hdf5:" + dir.file("nchw.h5"), DatasetOptions{});
  EXPECT_EQ(a.image_shape, (std::vector<int64_t>{3, 2, 5}));
  EXPECT_EQ(a.dim(), 30);
  EXPECT_TRUE(a.eight_bit);
  EXPECT_FALSE(a.binary);
  EXPECT_EQ(a.train.images.sizes().vec(), (std::vector<int64_t>{4, 30}));
  EXPECT_EQ(a.train.images.scalar_type(), torch::kFloat);
  // Rows are C*H*W values, channel-major: [i][c*10 + h*5 + w] is pixel (c, h, w) of image i.
  for (const auto& [split, nchw] : data) {
    EXPECT_TRUE(torch::equal(a.split(split).images, nchw.reshape({nchw.size(0), 30}).to(torch::kFloat).div(255.0f)))
        << split;
  }
  EXPECT_FLOAT_EQ(a.validation.images[1][2 * 10 + 1 * 5 + 3].item<float>(),
                  data.at("validation")[1][2][1][3].item<float>() / 255.0f);
  EXPECT_CONTAINS(a.reading, "uint8 colour levels, read as value/255");
  EXPECT_CONTAINS(a.reading, "layout NCHW");

  const Dataset b = load_dataset("hdf5:" + dir.file("nhwc.h5"), DatasetOptions{});
  expect_same_data(a, b);
  EXPECT_CONTAINS(b.reading, "NHWC permuted to C, H, W");
  const Dataset c = load_dataset("hdf5:" + dir.file("mixed.h5"), DatasetOptions{});
  expect_same_data(a, c);
  EXPECT_CONTAINS(c.reading, "layouts NCHW (train), NHWC (validation), NCHW (test)");

  // Floats in [0, 1]: the same in both layouts, and not 8-bit.
  const auto floats = colour_nchw(true);
  write_user_h5(dir.file("float-nchw.h5"), floats, {{"/", "layout", "NCHW"}});
  write_user_h5(dir.file("float-nhwc.h5"), to_nhwc(floats), {{"/", "layout", "NHWC"}});
  const Dataset f = load_dataset("hdf5:" + dir.file("float-nchw.h5"), DatasetOptions{});
  const Dataset g = load_dataset("hdf5:" + dir.file("float-nhwc.h5"), DatasetOptions{});
  expect_same_data(f, g);
  EXPECT_FALSE(f.eight_bit);
  EXPECT_EQ(f.image_shape, (std::vector<int64_t>{3, 2, 5}));
  EXPECT_TRUE(torch::allclose(f.train.images, a.train.images));
}

TEST_F(DatasetTest, Hdf5OneChannelFourDimensionalIsLikeThreeDimensional) {
  TempDir dir;
  const torch::Tensor train = bytes_tensor({4, 3, 2}, 0), validation = bytes_tensor({2, 3, 2}, 9),
                      test = bytes_tensor({3, 3, 2}, 77);
  write_user_h5(dir.file("3d.h5"), {{"train", train}, {"validation", validation}, {"test", test}});
  write_user_h5(dir.file("4d.h5"),
                {{"train", train.unsqueeze(3)}, {"validation", validation.unsqueeze(3)}, {"test", test.unsqueeze(3)}},
                {{"/", "layout", "NHWC"}});
  const Dataset a = load_dataset("hdf5:" + dir.file("3d.h5"), DatasetOptions{});
  const Dataset b = load_dataset("hdf5:" + dir.file("4d.h5"), DatasetOptions{});
  expect_same_data(a, b);
  EXPECT_EQ(b.image_shape, (std::vector<int64_t>{1, 3, 2}));
  EXPECT_CONTAINS(b.reading, "uint8 grey levels");
}

TEST_F(DatasetTest, Hdf5FourDimensionalWithoutAValidLayoutIsRefused) {
  TempDir dir;
  const auto data = colour_nchw(false);
  const std::string none = dir.file("none.h5");
  write_user_h5(none, data);
  std::string msg = data_error([&] { load_dataset("hdf5:" + none, DatasetOptions{}); });
  EXPECT_CONTAINS(msg, "HDF5 file " + none + ", dataset /train");
  EXPECT_CONTAINS(msg, "[4, 3, 2, 5]");
  EXPECT_CONTAINS(msg, "neither it nor the file root has a layout attribute");
  EXPECT_CONTAINS(msg, "add a string attribute layout=NCHW or NHWC");

  const std::string bad_root = dir.file("bad-root.h5");
  write_user_h5(bad_root, data, {{"/", "layout", "CHW"}});
  msg = data_error([&] { load_dataset("hdf5:" + bad_root, DatasetOptions{}); });
  EXPECT_CONTAINS(msg, bad_root);
  EXPECT_CONTAINS(msg, "/train");
  EXPECT_CONTAINS(msg, "the attribute layout on the file root is \"CHW\", not NCHW or NHWC");
  EXPECT_CONTAINS(msg, "[4, 3, 2, 5]");
  EXPECT_CONTAINS(msg, "layout=NCHW or NHWC");

  // Lower case is not accepted, and a dataset's bad value is not rescued by a good root.
  const std::string bad_dataset = dir.file("bad-dataset.h5");
  write_user_h5(bad_dataset, data, {{"/", "layout", "NCHW"}, {"test", "layout", "nchw"}});
  msg = data_error([&] { load_dataset("hdf5:" + bad_dataset, DatasetOptions{}); });
  EXPECT_CONTAINS(msg, bad_dataset + ", dataset /test");
  EXPECT_CONTAINS(msg, "the attribute layout on the dataset is \"nchw\"");
  EXPECT_CONTAINS(msg, "[3, 3, 2, 5]");

  // Not a string.
  const std::string number = dir.file("number.h5");
  {
    H5Writer writer(number);
    for (const auto& [name, tensor] : data) writer.write(name, tensor);
    writer.attribute("/", "layout", int64_t{4});
    writer.close();
  }
  msg = data_error([&] { load_dataset("hdf5:" + number, DatasetOptions{}); });
  EXPECT_CONTAINS(msg, number);
  EXPECT_CONTAINS(msg, "attribute layout: expected a string, found an integer value");
  EXPECT_CONTAINS(msg, "/train");
  EXPECT_CONTAINS(msg, "layout=NCHW or NHWC");

  // 5-D data: a wrong rank, as before.
  const std::string five = dir.file("five.h5");
  write_user_h5(five, {{"train", bytes_tensor({2, 1, 3, 2, 2}, 0)}, {"validation", bytes_tensor({2, 6}, 0)},
                       {"test", bytes_tensor({2, 6}, 0)}},
                {{"/", "layout", "NCHW"}});
  msg = data_error([&] { load_dataset("hdf5:" + five, DatasetOptions{}); });
  EXPECT_CONTAINS(msg, five + ", dataset /train");
  EXPECT_CONTAINS(msg, "[2, 1, 3, 2, 2]");
}

TEST_F(DatasetTest, Hdf5ChannelCountsMustAgreeBetweenSplits) {
  TempDir dir;
  const std::string path = dir.file("channels.h5");
  // validation: one channel, stored NHWC; the others three, NCHW.
  write_user_h5(path, {{"train", bytes_tensor({4, 3, 2, 5}, 0)}, {"validation", bytes_tensor({2, 2, 5, 1}, 0)},
                       {"test", bytes_tensor({3, 3, 2, 5}, 0)}},
                {{"/", "layout", "NCHW"}, {"validation", "layout", "NHWC"}});
  std::string msg = data_error([&] { load_dataset("hdf5:" + path, DatasetOptions{}); });
  EXPECT_CONTAINS(msg, path);
  EXPECT_CONTAINS(msg, "/train has examples of shape [3, 2, 5] (C, H, W; stored [4, 3, 2, 5] with layout NCHW)");
  EXPECT_CONTAINS(msg, "/validation has examples of shape [1, 2, 5] (C, H, W; stored [2, 2, 5, 1] with layout NHWC)");
  EXPECT_CONTAINS(msg, "3 channels against 1");

  // The same stored shape read with the other layout is another image shape.
  const std::string swapped = dir.file("swapped.h5");
  write_user_h5(swapped, {{"train", bytes_tensor({4, 3, 2, 3}, 0)}, {"validation", bytes_tensor({2, 3, 2, 3}, 0)},
                          {"test", bytes_tensor({3, 3, 2, 3}, 0)}},
                {{"/", "layout", "NCHW"}, {"test", "layout", "NHWC"}});
  msg = data_error([&] { load_dataset("hdf5:" + swapped, DatasetOptions{}); });
  EXPECT_CONTAINS(msg, "/test has examples of shape [3, 3, 2]");
  EXPECT_CONTAINS(msg, "/train has examples of shape [3, 2, 3]");
  EXPECT_EQ(msg.find("channels against"), std::string::npos) << "the same C, other H and W: " << msg;
}

TEST_F(DatasetTest, EightBitIsSetForLevelsOnly) {
  TempDir dir;
  // uint8 grey levels, 3-D.
  write_user_h5(dir.file("grey.h5"), {{"train", bytes_tensor({4, 3, 2}, 0)}, {"validation", bytes_tensor({2, 3, 2}, 0)},
                                      {"test", bytes_tensor({3, 3, 2}, 0)}});
  EXPECT_TRUE(load_dataset("hdf5:" + dir.file("grey.h5"), DatasetOptions{}).eight_bit);
  // uint8 holding only 0 and 1: binary, not levels.
  auto bits = [](std::vector<int64_t> shape) { return torch::randint(0, 2, shape).to(torch::kUInt8); };
  write_user_h5(dir.file("bits.h5"), {{"train", bits({4, 3, 2, 2})}, {"validation", bits({2, 3, 2, 2})},
                                      {"test", bits({3, 3, 2, 2})}},
                {{"/", "layout", "NCHW"}});
  const Dataset binary = load_dataset("hdf5:" + dir.file("bits.h5"), DatasetOptions{});
  EXPECT_TRUE(binary.binary);
  EXPECT_FALSE(binary.eight_bit);
  // Floats, even when they happen to be multiples of 1/255.
  write_user_h5(dir.file("float.h5"), {{"train", torch::rand({4, 6})}, {"validation", torch::rand({2, 6})},
                                       {"test", torch::full({3, 6}, 3.0f / 255.0f)}});
  EXPECT_FALSE(load_dataset("hdf5:" + dir.file("float.h5"), DatasetOptions{}).eight_bit);
}

// ---------------------------------------------------------------- HDF5 writer

class Hdf5Test : public SeedingFixture {};

TEST_F(Hdf5Test, WriteReadRoundTripWithGroups) {
  TempDir dir;
  const std::string path = dir.file("model.h5");
  const torch::Tensor w = torch::randn({3, 4});
  const torch::Tensor d = torch::randn({2}, torch::kDouble);
  const torch::Tensor i = torch::tensor(std::vector<int64_t>{-5, int64_t{1} << 40});
  const torch::Tensor b = torch::tensor({0, 7, 255}, torch::kUInt8);
  {
    H5Writer writer(path);
    writer.write("encoder/fc1/weight", w);
    writer.write("encoder/fc1/bias", d);
    writer.write("/ints", i);
    writer.write("bytes", b);
    writer.write("scalar", torch::tensor(2.5f));
    writer.attribute("/", "format", std::string("vae-ebm"));
    writer.attribute("encoder", "layers", int64_t{2});
    writer.attribute("encoder/fc1/weight", "scale", 0.5);
    writer.attribute("/", "format", std::string("vae-ebm 2"));  // overwrite
    EXPECT_CONTAINS(data_error([&] { writer.write("ints", i); }), "ints");
    EXPECT_CONTAINS(data_error([&] { writer.attribute("missing/object", "k", 1.0); }), "missing/object");
    EXPECT_FALSE(fs::exists(path)) << "written in place before close()";
    writer.close();
  }
  EXPECT_TRUE(fs::exists(path));
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  EXPECT_TRUE(h5_has(path, "encoder/fc1/weight"));
  EXPECT_TRUE(h5_has(path, "/encoder/fc1"));
  EXPECT_FALSE(h5_has(path, "encoder/fc2/weight"));
  EXPECT_TRUE(torch::equal(h5_read(path, "encoder/fc1/weight"), w));
  EXPECT_TRUE(torch::equal(h5_read(path, "/encoder/fc1/bias"), d));
  EXPECT_TRUE(torch::equal(h5_read(path, "ints"), i));
  const torch::Tensor bytes = h5_read(path, "bytes");
  EXPECT_EQ(bytes.scalar_type(), torch::kUInt8);
  EXPECT_TRUE(torch::equal(bytes, b));
  EXPECT_EQ(h5_read(path, "scalar").dim(), 0);
  EXPECT_EQ(h5_read(path, "scalar").item<float>(), 2.5f);
  const std::string msg = data_error([&] { h5_read(path, "nothing/here"); });
  EXPECT_CONTAINS(msg, path);
  EXPECT_CONTAINS(msg, "/nothing/here");
  EXPECT_CONTAINS(data_error([&] { h5_read(path, "encoder"); }), "not a dataset");
}

TEST_F(Hdf5Test, StringAttributes) {
  TempDir dir;
  const std::string path = dir.file("attributes.h5");
  {
    H5Writer writer(path);
    writer.write("x", torch::zeros({2}));
    writer.attribute("/", "variable", std::string("NCHW"));  // variable-length UTF-8, as h5py writes a str
    writer.attribute("x", "variable", std::string("NHWC"));
    writer.attribute("x", "number", 1.5);
    writer.close();
  }
  {
    // Fixed-length strings: null-padded as h5py writes numpy bytes, and space-padded and
    // null-terminated as other writers do.
    H5::H5File file(path, H5F_ACC_RDWR);
    H5::DataSet x = file.openDataSet("x");
    auto fixed = [&](const std::string& key, const std::string& stored, H5T_str_t pad) {
      H5::StrType type(H5::PredType::C_S1, stored.size());
      type.setStrpad(pad);
      H5::Attribute attr = x.createAttribute(key, type, H5::DataSpace(H5S_SCALAR));
      attr.write(type, stored.data());
    };
    fixed("nullpad", "NCHW", H5T_STR_NULLPAD);
    fixed("nullpad-long", std::string("NCHW\0\0", 6), H5T_STR_NULLPAD);
    fixed("spacepad", "NHWC  ", H5T_STR_SPACEPAD);
    fixed("nullterm", std::string("NCHW\0", 5), H5T_STR_NULLTERM);
    H5::StrType four(H5::PredType::C_S1, 4);
    const hsize_t two = 2;
    x.createAttribute("pair", four, H5::DataSpace(1, &two)).write(four, "NCHWNHWC");
  }
  EXPECT_EQ(h5_string_attribute(path, "/", "variable"), std::optional<std::string>("NCHW"));
  EXPECT_EQ(h5_string_attribute(path, "x", "variable"), std::optional<std::string>("NHWC"));
  EXPECT_EQ(h5_string_attribute(path, "/x", "nullpad"), std::optional<std::string>("NCHW"));
  EXPECT_EQ(h5_string_attribute(path, "/x", "nullpad-long"), std::optional<std::string>("NCHW"));
  EXPECT_EQ(h5_string_attribute(path, "/x", "spacepad"), std::optional<std::string>("NHWC"));
  EXPECT_EQ(h5_string_attribute(path, "/x", "nullterm"), std::optional<std::string>("NCHW"));
  EXPECT_EQ(h5_string_attribute(path, "/", "absent"), std::nullopt);
  EXPECT_EQ(h5_string_attribute(path, "x", "absent"), std::nullopt);
  std::string msg = data_error([&] { h5_string_attribute(path, "x", "number"); });
  EXPECT_CONTAINS(msg, "HDF5 file " + path + ", object /x, attribute number: expected a string, found a float value");
  EXPECT_CONTAINS(data_error([&] { h5_string_attribute(path, "x", "pair"); }), "expected one string, found 2");
  msg = data_error([&] { h5_string_attribute(path, "y", "layout"); });
  EXPECT_CONTAINS(msg, path);
  EXPECT_CONTAINS(msg, "object /y");
  EXPECT_CONTAINS(data_error([&] { h5_string_attribute(dir.file("absent.h5"), "/", "layout"); }), dir.file("absent.h5"));
}

TEST_F(Hdf5Test, DestructorWithoutCloseLeavesNothing) {
  TempDir dir;
  const std::string path = dir.file("abandoned.h5");
  {
    H5Writer writer(path);
    writer.write("x", torch::ones({2}));
  }
  EXPECT_TRUE(list_dir(dir.path()).empty());
  // An existing file is not replaced by an abandoned writer.
  write_user_h5(path, {{"x", torch::zeros({1})}});
  {
    H5Writer writer(path);
    writer.write("y", torch::ones({2}));
  }
  EXPECT_EQ(list_dir(dir.path()), std::vector<std::string>{"abandoned.h5"});
  EXPECT_TRUE(h5_has(path, "x"));
  EXPECT_FALSE(h5_has(path, "y"));
}

TEST_F(Hdf5Test, UnwritableDirectory) {
  const std::string msg = data_error([] { H5Writer writer("/nonexistent-dir-vae-ebm/x.h5"); });
  EXPECT_CONTAINS(msg, "/nonexistent-dir-vae-ebm/x.h5");
}

// ---------------------------------------------------------------- batcher

class BatcherTest : public SeedingFixture {};

torch::Tensor numbered_rows(int64_t n, int64_t d = 3) {
  return torch::arange(n * d, torch::kFloat).reshape({n, d});
}

torch::Tensor row_ids(const torch::Tensor& batch) { return batch.select(1, 0).div(3).to(torch::kLong); }

TEST_F(BatcherTest, SameKeysSameBatch) {
  Batcher a(numbered_rows(100), BatcherOptions(8).seed(11));
  Batcher b(numbered_rows(100), BatcherOptions(8).seed(11));
  a.batch(0, 0);  // different cache state in a
  EXPECT_TRUE(torch::equal(a.batch(3, 5), b.batch(3, 5)));
  EXPECT_TRUE(torch::equal(a.batch(3, 5), a.batch(3, 5)));
  EXPECT_TRUE(torch::equal(a.batch(0, 0), b.batch(0, 0)));
  Batcher other(numbered_rows(100), BatcherOptions(8).seed(12));
  EXPECT_FALSE(torch::equal(a.batch(3, 5), other.batch(3, 5)));
}

TEST_F(BatcherTest, EpochsShuffleDifferently) {
  Batcher batcher(numbered_rows(50), BatcherOptions(50).seed(1));
  const torch::Tensor e0 = row_ids(batcher.batch(0, 0));
  const torch::Tensor e1 = row_ids(batcher.batch(1, 0));
  EXPECT_FALSE(torch::equal(e0, e1));
  EXPECT_TRUE(torch::equal(std::get<0>(e0.sort()), torch::arange(50, torch::kLong)));
  EXPECT_FALSE(torch::equal(e0, torch::arange(50, torch::kLong)));
  EXPECT_TRUE(torch::equal(row_ids(batcher.batch(0, 0)), e0));
}

TEST_F(BatcherTest, EpochCoversEveryExampleOnce) {
  Batcher batcher(numbered_rows(103), BatcherOptions(10).seed(3).drop_last(false));
  ASSERT_EQ(batcher.batches_per_epoch(), 11);
  for (int64_t epoch : {0, 7}) {
    std::vector<torch::Tensor> ids;
    for (int64_t i = 0; i < batcher.batches_per_epoch(); ++i) {
      const torch::Tensor batch = batcher.batch(epoch, i);
      EXPECT_EQ(batch.size(0), i == 10 ? 3 : 10);
      EXPECT_EQ(batch.size(1), 3);
      ids.push_back(row_ids(batch));
    }
    EXPECT_TRUE(torch::equal(std::get<0>(torch::cat(ids).sort()), torch::arange(103, torch::kLong)));
  }
  Batcher dropping(numbered_rows(103), BatcherOptions(10).seed(3));
  EXPECT_EQ(dropping.batches_per_epoch(), 10);
  EXPECT_THROW(dropping.batch(0, 10), DataError);
  EXPECT_THROW(dropping.batch(0, -1), DataError);
}

TEST_F(BatcherTest, NoShuffleKeepsOrder) {
  Batcher batcher(numbered_rows(10), BatcherOptions(4).shuffle(false).drop_last(false));
  EXPECT_TRUE(torch::equal(row_ids(batcher.batch(5, 1)), torch::tensor({4, 5, 6, 7}, torch::kLong)));
  EXPECT_TRUE(torch::equal(row_ids(batcher.batch(5, 2)), torch::tensor({8, 9}, torch::kLong)));
}

TEST_F(BatcherTest, ValidatesOptions) {
  EXPECT_CONTAINS(data_error([] { Batcher b(numbered_rows(10), BatcherOptions(0)); }), "0");
  EXPECT_CONTAINS(data_error([] { Batcher b(numbered_rows(10), BatcherOptions(-3)); }), "-3");
  EXPECT_CONTAINS(data_error([] { Batcher b(numbered_rows(10), BatcherOptions(11)); }), "11");
  EXPECT_NO_THROW({ Batcher b(numbered_rows(10), BatcherOptions(11).drop_last(false)); });
  data_error([] { Batcher b(torch::zeros({0, 3}), BatcherOptions(1)); });
  data_error([] { Batcher b(torch::zeros({4}), BatcherOptions(1)); });
}

TEST_F(BatcherTest, DynamicBinarisation) {
  const torch::Tensor grey = torch::full({64, 50}, 0.3f);
  Batcher a(grey, BatcherOptions(32).seed(5).dynamic_binarisation(true));
  Batcher b(grey, BatcherOptions(32).seed(5).dynamic_binarisation(true));
  const torch::Tensor x = a.batch(2, 1);
  EXPECT_EQ(x.sizes().vec(), (std::vector<int64_t>{32, 50}));
  EXPECT_TRUE(all_binary(x));
  EXPECT_NEAR(x.mean().item<double>(), 0.3, 0.05);
  EXPECT_TRUE(torch::equal(x, b.batch(2, 1)));
  EXPECT_TRUE(torch::equal(x, a.batch(2, 1)));
  EXPECT_FALSE(torch::equal(x, a.batch(2, 0)));
  EXPECT_FALSE(torch::equal(x, a.batch(3, 1)));
  // Global generator state does not matter.
  torch::manual_seed(123);
  EXPECT_TRUE(torch::equal(x, a.batch(2, 1)));
  // Without the option the data come back unchanged.
  Batcher plain(grey, BatcherOptions(32).seed(5));
  EXPECT_TRUE(torch::equal(plain.batch(2, 1), torch::full({32, 50}, 0.3f)));
}

// ---------------------------------------------------------------- files

class FilesTest : public SeedingFixture {};

TEST_F(FilesTest, AtomicWriteRoundTrip) {
  TempDir dir;
  const std::string path = dir.file("x.bin");
  std::string bytes = "hello";
  bytes.push_back('\0');
  bytes += std::string(100000, '\xff');
  atomic_write(path, bytes);
  EXPECT_EQ(read_file(path), bytes);
  atomic_write(path, "second");
  EXPECT_EQ(read_file(path), "second");
  atomic_write(dir.file("empty"), "");
  EXPECT_EQ(read_file(dir.file("empty")), "");
  EXPECT_EQ(list_dir(dir.path()), (std::vector<std::string>{"empty", "x.bin"}));
  EXPECT_TRUE(file_exists(path));
  EXPECT_FALSE(file_exists(dir.file("nope")));
  const auto perms = fs::status(path).permissions();
  EXPECT_NE(perms & fs::perms::owner_read, fs::perms::none);
  EXPECT_NE(perms & fs::perms::group_read, fs::perms::none);
}

TEST_F(FilesTest, AtomicWriteFailuresLeaveNoTemporaries) {
  TempDir dir;
  const std::string missing = dir.file("no/such/dir/file.txt");
  const std::string msg = data_error([&] { atomic_write(missing, "data"); });
  EXPECT_CONTAINS(msg, missing);
  EXPECT_CONTAINS(msg, "No such file or directory");
  EXPECT_TRUE(list_dir(dir.path()).empty());
  // The rename fails (the target is a directory): the temporary file is removed.
  fs::create_directories(dir.file("target"));
  EXPECT_CONTAINS(data_error([&] { atomic_write(dir.file("target"), "data"); }), dir.file("target"));
  EXPECT_EQ(list_dir(dir.path()), std::vector<std::string>{"target"});
}

TEST_F(FilesTest, ReadFileNamesMissingFile) {
  TempDir dir;
  const std::string msg = data_error([&] { read_file(dir.file("missing.txt")); });
  EXPECT_CONTAINS(msg, dir.file("missing.txt"));
  EXPECT_CONTAINS(data_error([&] { read_file(dir.path()); }), dir.path());
}

// ---------------------------------------------------------------- JSON

class JsonTest : public SeedingFixture {};

TEST_F(JsonTest, NestedWithEscapes) {
  Json root = Json::object();
  root.set("name", "a\"b\\c\n\t\x01/\xc3\xa9");
  root.set("n", 0.1);
  root.set("i", int64_t{-3});
  root.set("k", 42);
  root.set("ok", true);
  Json arr = Json::array();
  arr.push(Json::number(1.5)).push(Json::boolean(false)).push(Json::number(std::nan(""))).push(Json::object());
  root.set("nested", Json::object().set("arr", arr).set("empty", Json::array()));
  EXPECT_EQ(root.dump(),
            "{\"name\":\"a\\\"b\\\\c\\n\\t\\u0001/\xc3\xa9\",\"n\":0.1,\"i\":-3,\"k\":42,\"ok\":true,"
            "\"nested\":{\"arr\":[1.5,false,null,{}],\"empty\":[]}}");
  EXPECT_EQ(Json::object().set("a", 1).set("b", Json::array().push(Json::integer(2))).dump(2),
            "{\n  \"a\": 1,\n  \"b\": [\n    2\n  ]\n}");
  // Setting a key again replaces the value in place.
  EXPECT_EQ(Json::object().set("a", 1).set("b", 2).set("a", 3).dump(), "{\"a\":3,\"b\":2}");
}

TEST_F(JsonTest, NumbersRoundTrip) {
  EXPECT_EQ(Json::number(std::numeric_limits<double>::quiet_NaN()).dump(), "null");
  EXPECT_EQ(Json::number(std::numeric_limits<double>::infinity()).dump(), "null");
  EXPECT_EQ(Json::number(-std::numeric_limits<double>::infinity()).dump(), "null");
  EXPECT_EQ(Json::number(0.1).dump(), "0.1");
  EXPECT_EQ(Json::number(-2.0).dump(), "-2");
  EXPECT_EQ(Json::number(0.1 + 0.2).dump(), "0.30000000000000004");
  EXPECT_EQ(Json::number(1e300).dump(), "1e+300");
  EXPECT_EQ(Json::integer(std::numeric_limits<int64_t>::min()).dump(), "-9223372036854775808");
  for (double v : {3.141592653589793, -2.718281828459045e-200, 1.0 / 3.0, 123456789.123456789, 5e-324, 1.7976931348623157e308}) {
    EXPECT_EQ(std::strtod(Json::number(v).dump().c_str(), nullptr), v) << Json::number(v).dump();
  }
}

TEST_F(JsonTest, WrongKindThrowsLogicError) {
  Json arr = Json::array();
  EXPECT_THROW(arr.set("a", 1), std::logic_error);
  Json obj = Json::object();
  EXPECT_THROW(obj.push(Json::integer(1)), std::logic_error);
  Json scalar = Json::integer(1);
  EXPECT_THROW(scalar.push(Json::integer(1)), std::logic_error);
}

// ---------------------------------------------------------------- PNG

class PngTest : public SeedingFixture {};

uint32_t big_endian(const std::string& s, size_t at) {
  uint32_t v = 0;
  for (size_t k = 0; k < 4; ++k) v = (v << 8) | static_cast<uint8_t>(s[at + k]);
  return v;
}

TEST_F(PngTest, GridHasHeaderPaddingAndPixels) {
  TempDir dir;
  const std::string path = dir.file("grid.png");
  // Five 4x3 images with pixel value 20 (i + 1) / 255, laid out 3 per row, padding 2.
  torch::Tensor images = torch::empty({5, 1, 4, 3});
  for (int64_t i = 0; i < 5; ++i) images[i].fill_(20.0 * static_cast<double>(i + 1) / 255.0);
  write_png_grid(path, images, 3, 2);
  const std::string png = read_file(path);
  ASSERT_GE(png.size(), 33u);
  EXPECT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  EXPECT_EQ(png.substr(12, 4), "IHDR");
  const uint32_t width = 3 * (3 + 2) + 2, height = 2 * (4 + 2) + 2;
  EXPECT_EQ(big_endian(png, 16), width);
  EXPECT_EQ(big_endian(png, 20), height);
  EXPECT_EQ(static_cast<uint8_t>(png[24]), 8);  // bit depth
  EXPECT_EQ(static_cast<uint8_t>(png[25]), 0);  // grey

  int w = 0, h = 0, c = 0;
  unsigned char* pixels = stbi_load_from_memory(reinterpret_cast<const unsigned char*>(png.data()),
                                                static_cast<int>(png.size()), &w, &h, &c, 1);
  ASSERT_NE(pixels, nullptr);
  ASSERT_EQ(w, static_cast<int>(width));
  ASSERT_EQ(h, static_cast<int>(height));
  auto at = [&](int x, int y) { return static_cast<int>(pixels[y * w + x]); };
  EXPECT_EQ(at(0, 0), 255);                        // border
  EXPECT_EQ(at(2, 2), 20);                         // image 0
  EXPECT_EQ(at(4, 5), 20);
  EXPECT_EQ(at(5, 2), 255);                        // gap between images 0 and 1
  EXPECT_EQ(at(7, 2), 40);                         // image 1
  EXPECT_EQ(at(12, 2), 60);                        // image 2
  EXPECT_EQ(at(2, 8), 80);                         // image 3, second row
  EXPECT_EQ(at(7, 8), 100);                        // image 4
  EXPECT_EQ(at(12, 8), 255);                       // no sixth image: white
  stbi_image_free(pixels);
  EXPECT_EQ(list_dir(dir.path()), std::vector<std::string>{"grid.png"});
}

TEST_F(PngTest, RgbAndThreeDimensionalAndClamped) {
  TempDir dir;
  write_png_grid(dir.file("rgb.png"), torch::rand({4, 3, 5, 5}) * 3 - 1, 2, 0);
  const std::string rgb = read_file(dir.file("rgb.png"));
  EXPECT_EQ(big_endian(rgb, 16), 10u);
  EXPECT_EQ(big_endian(rgb, 20), 10u);
  EXPECT_EQ(static_cast<uint8_t>(rgb[25]), 2);  // RGB
  write_png_grid(dir.file("flat.png"), torch::rand({2, 6, 7}), 8);
  const std::string flat = read_file(dir.file("flat.png"));
  EXPECT_EQ(big_endian(flat, 16), 2u * 9 + 2);
  EXPECT_EQ(big_endian(flat, 20), 6u + 4);
}

TEST_F(PngTest, OtherChannelCountsAreGreyTilesSideBySide) {
  TempDir dir;
  // Three 2-channel 4x4 images, 2 images per row: each row holds 2 x 2 grey tiles. Channel k of
  // image i has the value (10 i + k + 1) / 255.
  torch::Tensor images = torch::empty({3, 2, 4, 4});
  for (int64_t i = 0; i < 3; ++i)
    for (int64_t k = 0; k < 2; ++k) images[i][k].fill_(static_cast<double>(10 * i + k + 1) / 255.0);
  write_png_grid(dir.file("two.png"), images, 2, 1);
  const std::string png = read_file(dir.file("two.png"));
  EXPECT_EQ(big_endian(png, 16), 4u * (4 + 1) + 1);
  EXPECT_EQ(big_endian(png, 20), 2u * (4 + 1) + 1);
  EXPECT_EQ(static_cast<uint8_t>(png[25]), 0);  // grey
  int w = 0, h = 0, c = 0;
  unsigned char* pixels = stbi_load_from_memory(reinterpret_cast<const unsigned char*>(png.data()),
                                                static_cast<int>(png.size()), &w, &h, &c, 1);
  ASSERT_NE(pixels, nullptr);
  auto at = [&](int x, int y) { return static_cast<int>(pixels[y * w + x]); };
  EXPECT_EQ(at(1, 1), 1);    // image 0, channel 0
  EXPECT_EQ(at(6, 1), 2);    // image 0, channel 1
  EXPECT_EQ(at(11, 1), 11);  // image 1, channel 0
  EXPECT_EQ(at(16, 1), 12);  // image 1, channel 1
  EXPECT_EQ(at(1, 6), 21);   // image 2 starts the second row
  EXPECT_EQ(at(11, 6), 255);  // no fourth image
  stbi_image_free(pixels);
}

TEST_F(PngTest, BadShapeOrPath) {
  TempDir dir;
  EXPECT_CONTAINS(data_error([&] { write_png_grid(dir.file("a.png"), torch::rand({2, 0, 4, 4}), 2); }),
                  "[2, 0, 4, 4]");
  data_error([&] { write_png_grid(dir.file("a.png"), torch::rand({4, 4}), 2); });
  data_error([&] { write_png_grid(dir.file("a.png"), torch::rand({2, 4, 4}), 0); });
  data_error([&] { write_png_grid(dir.file("no/dir/a.png"), torch::rand({2, 4, 4}), 2); });
  EXPECT_TRUE(list_dir(dir.path()).empty());
}

// ---------------------------------------------------------------- run directories

class RunDirTest : public SeedingFixture {};

TEST_F(RunDirTest, CreateOpenAndMetrics) {
  TempDir dir;
  const RunDir run = RunDir::create(dir.file("run"));
  EXPECT_EQ(run.path(), dir.file("run"));
  EXPECT_TRUE(fs::is_directory(dir.file("run/checkpoints")));
  EXPECT_EQ(run.config_path(), dir.file("run/config.ini"));
  EXPECT_EQ(run.file("samples.png"), dir.file("run/samples.png"));
  EXPECT_CONTAINS(data_error([&] { RunDir::open(dir.file("run")); }), "config.ini");
  atomic_write(run.config_path(), "[train]\n");
  EXPECT_EQ(RunDir::open(dir.file("run")).path(), dir.file("run"));
  EXPECT_CONTAINS(data_error([&] { RunDir::open(dir.file("elsewhere")); }), dir.file("elsewhere"));

  run.append_metrics(Json::object().set("step", 1).set("loss", 0.5));
  run.append_metrics(Json::object().set("step", 2).set("loss", std::nan("")));
  EXPECT_EQ(read_file(run.file("metrics.jsonl")),
            "{\"step\":1,\"loss\":0.5}\n{\"step\":2,\"loss\":null}\n");

  // An existing empty directory is fine; a non-empty one is not.
  fs::create_directories(dir.file("empty"));
  EXPECT_NO_THROW(RunDir::create(dir.file("empty")));
  const std::string msg = data_error([&] { RunDir::create(dir.file("run")); });
  EXPECT_CONTAINS(msg, dir.file("run"));
  EXPECT_CONTAINS(msg, "not empty");
  atomic_write(dir.file("plain"), "x");
  data_error([&] { RunDir::create(dir.file("plain")); });
}

TEST_F(RunDirTest, CheckpointsSortedAndPruned) {
  TempDir dir;
  const RunDir run = RunDir::create(dir.file("run"));
  EXPECT_EQ(run.checkpoint_path(42), dir.file("run/checkpoints/step-000000042.pt"));
  EXPECT_EQ(run.best_checkpoint_path(), dir.file("run/checkpoints/best.pt"));
  EXPECT_TRUE(run.checkpoints().empty());
  for (int64_t step : {500, 20, 1234567890, 1000, 7}) atomic_write(run.checkpoint_path(step), "ckpt");
  EXPECT_EQ(run.checkpoint_path(1234567890), dir.file("run/checkpoints/step-1234567890.pt"));
  atomic_write(run.best_checkpoint_path(), "best");
  atomic_write(run.checkpoint_path(9) + ".tmp-abcdef", "partial");
  atomic_write(dir.file("run/checkpoints/notes.txt"), "x");
  atomic_write(dir.file("run/checkpoints/step-00000000x.pt"), "x");
  EXPECT_EQ(run.checkpoints(), (std::vector<std::string>{run.checkpoint_path(7), run.checkpoint_path(20),
                                                         run.checkpoint_path(500), run.checkpoint_path(1000),
                                                         run.checkpoint_path(1234567890)}));
  run.prune_checkpoints(2);
  EXPECT_EQ(run.checkpoints(),
            (std::vector<std::string>{run.checkpoint_path(1000), run.checkpoint_path(1234567890)}));
  EXPECT_TRUE(fs::exists(run.best_checkpoint_path()));
  EXPECT_TRUE(fs::exists(dir.file("run/checkpoints/notes.txt")));
  run.prune_checkpoints(5);
  EXPECT_EQ(run.checkpoints().size(), 2u);
  run.prune_checkpoints(0);
  EXPECT_TRUE(run.checkpoints().empty());
  EXPECT_TRUE(fs::exists(run.best_checkpoint_path()));
}

// ---------------------------------------------------------------- seeds and generators

class SeedTest : public SeedingFixture {};

TEST_F(SeedTest, SameSeedSameDraws) {
  at::Generator a = make_generator(7);
  at::Generator b = make_generator(7);
  EXPECT_TRUE(torch::equal(torch::randn({10}, a), torch::randn({10}, b)));
  at::Generator c = make_generator(8);
  EXPECT_FALSE(torch::equal(torch::randn({10}, make_generator(7)), torch::randn({10}, c)));
}

TEST_F(SeedTest, StateSaveRestore) {
  at::Generator gen = make_generator(99);
  torch::randn({17}, gen);  // advance, including the cached normal
  const torch::Tensor state = generator_state(gen);
  EXPECT_EQ(state.scalar_type(), torch::kUInt8);
  EXPECT_EQ(state.device(), torch::Device(torch::kCPU));
  const torch::Tensor first = torch::randn({5, 3}, gen);
  const torch::Tensor uniform = torch::rand({4}, gen);
  set_generator_state(gen, state);
  EXPECT_TRUE(torch::equal(torch::randn({5, 3}, gen), first));
  EXPECT_TRUE(torch::equal(torch::rand({4}, gen), uniform));
  // Into another generator too.
  at::Generator other = make_generator(1);
  set_generator_state(other, state);
  EXPECT_TRUE(torch::equal(torch::randn({5, 3}, other), first));
}

TEST_F(SeedTest, MixSeedSeparatesKeys) {
  std::set<uint64_t> seen;
  for (uint64_t a = 0; a < 4; ++a)
    for (uint64_t b = 0; b < 4; ++b)
      for (uint64_t c = 0; c < 4; ++c) seen.insert(mix_seed(a, b, c));
  EXPECT_EQ(seen.size(), 64u);
  EXPECT_EQ(mix_seed(1, 2), mix_seed(1, 2, 0));
  EXPECT_NE(mix_seed(1, 2), mix_seed(2, 1));
}

}  // namespace
}  // namespace vae_ebm
