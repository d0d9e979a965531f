// Data a user brings as HDF5 (hdf5:PATH): layouts, dtypes, shapes, and what is refused.
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

class Hdf5DatasetTest : public SeedingFixture {};

torch::Tensor bytes_tensor(std::vector<int64_t> shape, int offset) {
  int64_t n = 1;
  for (const int64_t s : shape) n *= s;
  return torch::arange(offset, offset + n, torch::kLong).remainder(256).to(torch::kUInt8).reshape(shape);
}

TEST_F(Hdf5DatasetTest, Uint8Images) {
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

TEST_F(Hdf5DatasetTest, Uint8ZerosAndOnesAreBinaryImages) {
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

TEST_F(Hdf5DatasetTest, FlatFloatBinary) {
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

TEST_F(Hdf5DatasetTest, FloatOutOfRangeNamesDataset) {
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

TEST_F(Hdf5DatasetTest, NaNIsAnError) {
  TempDir dir;
  const std::string path = dir.file("nan.h5");
  torch::Tensor test = torch::rand({3, 4});
  test[0][0] = std::numeric_limits<float>::quiet_NaN();
  write_user_h5(path, {{"train", torch::rand({5, 4})}, {"validation", torch::rand({2, 4})}, {"test", test}});
  const std::string msg = data_error([&] { load_dataset("hdf5:" + path, DatasetOptions{}); });
  EXPECT_CONTAINS(msg, "/test");
  EXPECT_CONTAINS(msg, "NaN");
}

TEST_F(Hdf5DatasetTest, MismatchedShapes) {
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

TEST_F(Hdf5DatasetTest, MissingDatasetFileAndRank) {
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

using test::write_user_h5;  // and, with attributes:
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

TEST_F(Hdf5DatasetTest, BothLayoutsGiveTheSameImages) {
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

TEST_F(Hdf5DatasetTest, OneChannelFourDimensionalIsLikeThreeDimensional) {
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

TEST_F(Hdf5DatasetTest, FourDimensionalWithoutAValidLayoutIsRefused) {
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

TEST_F(Hdf5DatasetTest, ChannelCountsMustAgreeBetweenSplits) {
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

TEST_F(Hdf5DatasetTest, EightBitIsSetForLevelsOnly) {
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

}  // namespace
}  // namespace vae_ebm
