// IDX files (data/idx.h): raw and gzip, their headers, and every way a file can be wrong.
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

}  // namespace
}  // namespace vae_ebm
