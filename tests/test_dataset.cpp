// The data sets by name (data/dataset.h) and their binarisation: shapes, splits, labels, the
// published digests, colour-mnist and how it is made.
#include <torch/torch.h>

#include <H5Cpp.h>
#include <gtest/gtest.h>
#include <zlib.h>

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
#include "tests/data_support.h"
#include "tests/support.h"

namespace vae_ebm {
namespace {

namespace fs = std::filesystem;
using namespace test;

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
  SKIP_UNLESS_DATA(fs::exists(options.data_dir + "/fashion-mnist") || fs::exists("/usr/share/datasets/fashion-mnist"),
                   "Fashion-MNIST");
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

}  // namespace
}  // namespace vae_ebm
