// IDX files, raw or gzip-compressed (see idx.h).
#include <torch/torch.h>

#include "data/idx.h"

#include <zlib.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <system_error>

#include "data/error.h"
#include "data/sha256.h"
#include "data/files.h"

namespace vae_ebm {
namespace {

std::string hex_byte(unsigned v) {
  char buffer[8];
  std::snprintf(buffer, sizeof buffer, "0x%02X", v & 0xFFu);
  return buffer;
}

bool is_gzip(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) throw DataError("cannot open IDX file " + path + ": " + std::strerror(errno));
  unsigned char magic[2] = {0, 0};
  const size_t n = std::fread(magic, 1, 2, f);
  std::fclose(f);
  return n == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
}

// The size in bytes that an IDX file whose first bytes are `prefix` claims (header and data); 0
// while the header is incomplete; 1 for bytes that are no IDX header.
uint64_t idx_claimed_size(const std::string& prefix) {
  const auto* p = reinterpret_cast<const unsigned char*>(prefix.data());
  if (prefix.size() < 4) return 0;
  if (p[0] != 0 || p[1] != 0 || p[2] != 0x08 || p[3] < 1 || p[3] > 4) return 1;
  const size_t header = 4 + 4 * static_cast<size_t>(p[3]);
  if (prefix.size() < header) return 0;
  uint64_t total = 1;
  for (int k = 0; k < p[3]; ++k) {
    const unsigned char* d = p + 4 + 4 * k;
    const uint64_t size = (uint64_t{d[0]} << 24) | (uint64_t{d[1]} << 16) | (uint64_t{d[2]} << 8) | uint64_t{d[3]};
    if (size == 0 || total > (uint64_t{1} << 62) / size) return 1;  // read_idx says which
    total *= size;
  }
  return total + header;
}

std::string read_gzip(const std::string& path) {
  gzFile gz = gzopen(path.c_str(), "rb");
  if (gz == nullptr) {
    throw DataError("cannot open IDX file " + path + ": " +
                    (errno != 0 ? std::strerror(errno) : "gzopen failed"));
  }
  gzbuffer(gz, 1 << 17);
  std::string out;
  char buffer[1 << 16];
  for (;;) {
    // The header says how many bytes the file holds: past them (or past a header that is no
    // IDX header) decompressing stops, and read_idx names what is wrong from what was read. A
    // small file that inflates to gigabytes is refused after one buffer more than it claims.
    if (const auto claimed = idx_claimed_size(out); claimed != 0 && out.size() > claimed) break;
    const int n = gzread(gz, buffer, sizeof buffer);
    if (n < 0) {
      int code = 0;
      const std::string message = gzerror(gz, &code);
      gzclose(gz);
      throw DataError("cannot decompress IDX file " + path + ": " + message);
    }
    if (n == 0) break;
    try {
      out.append(buffer, static_cast<size_t>(n));
    } catch (const std::bad_alloc&) {
      gzclose(gz);
      throw DataError("cannot decompress IDX file " + path + ": out of memory after " + std::to_string(out.size()) +
                      " bytes");
    }
  }
  // gzread returns 0 both at the end and on a truncated stream: ask which.
  int code = Z_OK;
  const char* message = gzerror(gz, &code);
  if (code != Z_OK && code != Z_STREAM_END) {
    const std::string text = message != nullptr ? message : "unknown error";
    gzclose(gz);
    throw DataError("cannot decompress IDX file " + path + ": " + text);
  }
  gzclose(gz);
  return out;
}

}  // namespace

torch::Tensor read_idx(const std::string& path, std::string* sha256) {
  const std::string bytes = is_gzip(path) ? read_gzip(path) : read_file(path);
  if (sha256 != nullptr) *sha256 = sha256_hex(bytes);
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  const std::string where = "IDX file " + path;
  if (bytes.size() < 4) {
    throw DataError(where + ": truncated: the 4-byte header has only " +
                    std::to_string(bytes.size()) + " bytes");
  }
  if (p[0] != 0 || p[1] != 0) {
    throw DataError(where + ": bad magic number: expected the first two bytes to be 0x00 0x00, found " +
                    hex_byte(p[0]) + " " + hex_byte(p[1]) + " (not an IDX file?)");
  }
  if (p[2] != 0x08) {
    throw DataError(where + ": unsupported data type code " + hex_byte(p[2]) +
                    " (only 0x08, unsigned bytes, is supported)");
  }
  const int rank = p[3];
  if (rank < 1 || rank > 4) {
    throw DataError(where + ": bad magic number: rank " + std::to_string(rank) +
                    " is not between 1 and 4");
  }
  const size_t header = 4 + 4 * static_cast<size_t>(rank);
  if (bytes.size() < header) {
    throw DataError(where + ": truncated: the header needs " + std::to_string(header) +
                    " bytes, found " + std::to_string(bytes.size()));
  }
  std::vector<int64_t> sizes;
  uint64_t expected = 1;
  for (int k = 0; k < rank; ++k) {
    const unsigned char* s = p + 4 + 4 * k;
    const uint32_t size = (uint32_t{s[0]} << 24) | (uint32_t{s[1]} << 16) | (uint32_t{s[2]} << 8) |
                          uint32_t{s[3]};
    if (size == 0 || size > static_cast<uint32_t>(std::numeric_limits<int32_t>::max())) {
      throw DataError(where + ": dimension " + std::to_string(k) + " has invalid size " +
                      std::to_string(size) + " (must be positive)");
    }
    if (expected > std::numeric_limits<uint64_t>::max() / size) {
      throw DataError(where + ": the sizes in the header overflow");
    }
    expected *= size;
    sizes.push_back(static_cast<int64_t>(size));
  }
  const uint64_t found = bytes.size() - header;
  if (found < expected) {
    throw DataError(where + ": truncated: expected " + std::to_string(expected) +
                    " bytes of data, found " + std::to_string(found));
  }
  if (found > expected) {
    throw DataError(where + ": " + std::to_string(found - expected) +
                    " trailing bytes after the expected " + std::to_string(expected) +
                    " bytes of data");
  }
  torch::Tensor out = torch::empty(sizes, torch::kUInt8);
  if (expected > 0) std::memcpy(out.data_ptr<uint8_t>(), p + header, expected);
  return out;
}

std::string find_idx(const std::string& dir, const std::string& stem) {
  const std::string raw = dir + "/" + stem;
  const std::string gz = raw + ".gz";
  std::error_code ec;
  if (std::filesystem::is_regular_file(raw, ec)) return raw;
  if (std::filesystem::is_regular_file(gz, ec)) return gz;
  throw DataError("IDX file not found: neither " + raw + " nor " + gz +
                  " exists (scripts/setup.sh fetches the data sets; or set VAE_EBM_DATA to where they are)");
}

}  // namespace vae_ebm
