// Tests of the data layer's small modules: HDF5 files, batches, atomic files, JSON, PNG, run
// directories and generators.
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
#include "tests/data_support.h"
#include "tests/support.h"

namespace vae_ebm {
namespace {

namespace fs = std::filesystem;
using namespace test;

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
