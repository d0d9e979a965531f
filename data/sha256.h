#pragma once
// SHA-256 (FIPS 180-4), self-contained: fingerprints of feature networks and files.
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace vae_ebm {

// Incremental hashing: update() any number of times, then hex_digest() once.
class Sha256 {
 public:
  Sha256();
  Sha256& update(const void* data, size_t size);
  Sha256& update(const std::string& bytes) { return update(bytes.data(), bytes.size()); }
  // The 64 lowercase hex digits. Finalises: a second call, or update() after it, throws
  // std::logic_error.
  std::string hex_digest();

 private:
  void compress(const uint8_t* block);
  std::array<uint32_t, 8> state_;
  std::array<uint8_t, 64> buffer_{};
  size_t buffered_ = 0;
  uint64_t length_ = 0;  // bytes hashed so far
  bool finished_ = false;
};

// SHA-256 of `bytes` as 64 lowercase hex digits.
std::string sha256_hex(const std::string& bytes);

}  // namespace vae_ebm
