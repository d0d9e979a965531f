#include <torch/torch.h>

#include "data/archive.h"

#include <sstream>

#include "data/error.h"
#include "data/sha256.h"

namespace vae_ebm {

namespace {
constexpr const char kSealHeader[] = "vae-ebm sealed archive 1 sha256 ";
constexpr size_t kDigestLength = 64;
}  // namespace

std::string sealed_archive_bytes(torch::serialize::OutputArchive& archive) {
  std::ostringstream inner;
  archive.save_to(inner);
  const std::string bytes = inner.str();
  return kSealHeader + sha256_hex(bytes) + "\n" + bytes;
}

ArchiveReader::ArchiveReader(const std::string& bytes, torch::Device device, const std::string& what) {
  const std::string header = kSealHeader;
  if (bytes.compare(0, header.size(), header) != 0) {
    // Written before the seal (vae-ebm 0.1): a bare LibTorch archive; or sealed the way the
    // commits of 2026-11-29 before cf82d1c did, as records of an outer archive (the digest then
    // checked after LibTorch has parsed the outer archive).
    std::istringstream in(bytes);
    archive_.load_from(in, device);
    torch::Tensor payload;
    c10::IValue seal;
    if (!archive_.try_read("sealed_payload", payload) || !archive_.try_read("sealed_sha256", seal) || !seal.isString())
      return;
    const std::string inner(static_cast<const char*>(payload.contiguous().data_ptr()), static_cast<size_t>(payload.numel()));
    if (sha256_hex(inner) != seal.toStringRef())
      throw DataError(what + ": its contents do not match their SHA-256 seal: the file was changed or damaged after it "
                             "was written");
    std::istringstream in_inner(inner);
    archive_ = torch::serialize::InputArchive();
    archive_.load_from(in_inner, device);
    sealed_ = true;
    return;
  }
  const size_t start = header.size() + kDigestLength + 1;
  if (bytes.size() < start || bytes[start - 1] != '\n')
    throw DataError(what + ": its seal line is cut short (" + std::to_string(bytes.size()) + " bytes)");
  const std::string recorded = bytes.substr(header.size(), kDigestLength);
  const std::string inner = bytes.substr(start);
  const auto actual = sha256_hex(inner);
  if (actual != recorded)
    throw DataError(what + ": its contents do not match their SHA-256 seal (recorded " + recorded.substr(0, 16) + "..., now " +
                    actual.substr(0, 16) + "...): the file was changed or damaged after it was written");
  std::istringstream in(inner);
  archive_.load_from(in, device);
  sealed_ = true;
}

torch::Tensor ArchiveReader::tensor(const std::string& key) {
  torch::Tensor t;
  archive_.read(key, t);
  return t;
}

void ArchiveReader::check_format(int64_t expected, const std::string& what) {
  const auto format = tensor("format").item<int64_t>();
  if (format != expected)
    throw DataError(what + " has format " + std::to_string(format) + ", expected " + std::to_string(expected));
}

}  // namespace vae_ebm
