// make_colour_mnist: makes the colour-mnist data set from the MNIST IDX files.
//
//   make_colour_mnist MNIST_DIR OUT_DIR
//
// Reads MNIST_DIR/{train,t10k}-images-idx3-ubyte and -labels-idx1-ubyte (uncompressed) and
// writes into OUT_DIR (created if missing):
//   train-images-idx4-ubyte  [60000, 3, 32, 32] uint8, channels R, G, B
//   t10k-images-idx4-ubyte   [10000, 3, 32, 32]
//   train-labels-idx1-ubyte, t10k-labels-idx1-ubyte  copies of MNIST's
// Each 28x28 digit is padded by 2 background pixels on every side and drawn in a foreground
// colour on a background colour, both drawn per image from a splitmix64 stream keyed by a fixed
// seed, the split and the image's index, and redrawn until their luma (ITU-R BT.601 weights)
// differ by at least kMinLumaDifference of 255. A pixel of MNIST grey level m becomes, per
// channel, (m * fg + (255 - m) * bg + 127) / 255. Integer arithmetic only, so the bytes are the
// same on every machine; scripts/setup.sh checks their SHA-256.
// Every file is written to NAME.part and renamed into place.
//
// Standalone C++17 without dependencies: c++ -O2 -std=c++17 make_colour_mnist.cpp
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

constexpr uint64_t kSeed = 0x636f6c6f75722d31ULL;  // "colour-1"
constexpr int kPad = 2;
constexpr int kMnistSide = 28;
constexpr int kSide = kMnistSide + 2 * kPad;
constexpr int kChannels = 3;
constexpr int32_t kMinLumaDifference = 100;  // of 255

struct Failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// splitmix64 (Steele, Lea and Flood): a 64-bit counter through a mixing function.
uint64_t mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t state) : state_(state) {}
  uint64_t next() { return mix(state_ += 0x9E3779B97F4A7C15ULL); }

 private:
  uint64_t state_;
};

// The stream of one image: keyed by the seed, the split (0 train, 1 test) and the index.
SplitMix64 image_stream(uint64_t split, uint64_t index) {
  return SplitMix64(mix(mix(mix(kSeed) ^ split) ^ index));
}

struct Rgb {
  int32_t c[kChannels];
};

int32_t luma_times_1000(const Rgb& x) { return 299 * x.c[0] + 587 * x.c[1] + 114 * x.c[2]; }

// A foreground and a background colour whose luma differ by at least kMinLumaDifference.
void draw_colours(SplitMix64& rng, Rgb& fg, Rgb& bg) {
  for (;;) {
    const uint64_t bits = rng.next();  // six bytes: fg R, G, B, bg R, G, B
    for (int k = 0; k < kChannels; ++k) {
      fg.c[k] = static_cast<int32_t>((bits >> (8 * k)) & 0xFF);
      bg.c[k] = static_cast<int32_t>((bits >> (8 * (k + kChannels))) & 0xFF);
    }
    const int32_t d = luma_times_1000(fg) - luma_times_1000(bg);
    if (d >= kMinLumaDifference * 1000 || -d >= kMinLumaDifference * 1000) return;
  }
}

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Failure("cannot open " + path + " (expected uncompressed MNIST IDX files)");
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw Failure("cannot read " + path);
  return bytes;
}

uint32_t big_endian(const std::string& b, size_t at) {
  return (uint32_t{static_cast<uint8_t>(b[at])} << 24) | (uint32_t{static_cast<uint8_t>(b[at + 1])} << 16) |
         (uint32_t{static_cast<uint8_t>(b[at + 2])} << 8) | uint32_t{static_cast<uint8_t>(b[at + 3])};
}

void put_big_endian(std::string& b, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) b.push_back(static_cast<char>((v >> shift) & 0xFF));
}

// The sizes of an IDX file of unsigned bytes of the given rank, its payload checked.
std::vector<uint32_t> idx_sizes(const std::string& path, const std::string& bytes, int rank) {
  const size_t header = 4 + 4 * static_cast<size_t>(rank);
  if (bytes.size() < header || bytes[0] != 0 || bytes[1] != 0 || bytes[2] != 0x08 || bytes[3] != rank)
    throw Failure(path + ": not an IDX file of unsigned bytes of rank " + std::to_string(rank));
  std::vector<uint32_t> sizes;
  uint64_t n = 1;
  for (int k = 0; k < rank; ++k) {
    sizes.push_back(big_endian(bytes, 4 + 4 * static_cast<size_t>(k)));
    n *= sizes.back();
  }
  if (bytes.size() - header != n)
    throw Failure(path + ": expected " + std::to_string(n) + " bytes of data, found " +
                  std::to_string(bytes.size() - header));
  return sizes;
}

// Writes `bytes` to path.part, then renames it to path.
void write_atomically(const std::string& path, const std::string& bytes) {
  const std::string part = path + ".part";
  std::FILE* f = std::fopen(part.c_str(), "wb");
  if (f == nullptr) throw Failure("cannot create " + part + ": " + std::strerror(errno));
  const bool written = std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size();
  const bool closed = std::fclose(f) == 0;
  if (!written || !closed) {
    std::remove(part.c_str());
    throw Failure("cannot write " + part);
  }
  if (std::rename(part.c_str(), path.c_str()) != 0) {
    const std::string reason = std::strerror(errno);
    std::remove(part.c_str());
    throw Failure("cannot rename " + part + " to " + path + ": " + reason);
  }
}

void make_split(const std::string& mnist_dir, const std::string& out_dir, const std::string& prefix,
                uint64_t split) {
  const std::string images_path = mnist_dir + "/" + prefix + "-images-idx3-ubyte";
  const std::string labels_path = mnist_dir + "/" + prefix + "-labels-idx1-ubyte";
  const std::string images = read_all(images_path);
  const std::string labels = read_all(labels_path);
  const auto sizes = idx_sizes(images_path, images, 3);
  const auto label_sizes = idx_sizes(labels_path, labels, 1);
  if (sizes[1] != kMnistSide || sizes[2] != kMnistSide)
    throw Failure(images_path + ": expected 28x28 images, found " + std::to_string(sizes[1]) + "x" +
                  std::to_string(sizes[2]));
  if (label_sizes[0] != sizes[0])
    throw Failure(labels_path + " has " + std::to_string(label_sizes[0]) + " labels but " + images_path + " has " +
                  std::to_string(sizes[0]) + " images");
  const uint32_t n = sizes[0];
  const size_t image_bytes = static_cast<size_t>(kChannels) * kSide * kSide;
  std::string out;
  out.reserve(20 + static_cast<size_t>(n) * image_bytes);
  out.append({0, 0, 0x08, 4});
  put_big_endian(out, n);
  put_big_endian(out, kChannels);
  put_big_endian(out, kSide);
  put_big_endian(out, kSide);
  const auto* grey = reinterpret_cast<const uint8_t*>(images.data()) + 16;
  for (uint32_t i = 0; i < n; ++i) {
    SplitMix64 rng = image_stream(split, i);
    Rgb fg{}, bg{};
    draw_colours(rng, fg, bg);
    const uint8_t* digit = grey + static_cast<size_t>(i) * kMnistSide * kMnistSide;
    for (int c = 0; c < kChannels; ++c) {
      for (int y = 0; y < kSide; ++y) {
        for (int x = 0; x < kSide; ++x) {
          const bool inside = y >= kPad && y < kPad + kMnistSide && x >= kPad && x < kPad + kMnistSide;
          const int32_t m = inside ? digit[(y - kPad) * kMnistSide + (x - kPad)] : 0;
          out.push_back(static_cast<char>((m * fg.c[c] + (255 - m) * bg.c[c] + 127) / 255));
        }
      }
    }
  }
  write_atomically(out_dir + "/" + prefix + "-images-idx4-ubyte", out);
  write_atomically(out_dir + "/" + prefix + "-labels-idx1-ubyte", labels);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s MNIST_DIR OUT_DIR\n", argc > 0 ? argv[0] : "make_colour_mnist");
    return 2;
  }
  try {
    std::error_code ec;
    std::filesystem::create_directories(argv[2], ec);
    if (ec) throw Failure(std::string("cannot create ") + argv[2] + ": " + ec.message());
    make_split(argv[1], argv[2], "train", 0);
    make_split(argv[1], argv[2], "t10k", 1);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "make_colour_mnist: %s\n", e.what());
    return 1;
  }
  return 0;
}
