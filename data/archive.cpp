#include <torch/torch.h>

#include "data/archive.h"

#include <sstream>

#include "data/error.h"
#include "data/sha256.h"

namespace vae_ebm {

namespace {
constexpr const char* kSealKey = "sealed_sha256";
constexpr const char* kPayloadKey = "sealed_payload";
}  // namespace

std::string sealed_archive_bytes(torch::serialize::OutputArchive& archive) {
  std::ostringstream inner;
  archive.save_to(inner);
  std::string payload = inner.str();
  torch::serialize::OutputArchive outer;
  outer.write(kSealKey, c10::IValue(sha256_hex(payload)));
  // from_blob does not copy: `payload` outlives save_to below.
  outer.write(kPayloadKey, torch::from_blob(payload.data(), {static_cast<int64_t>(payload.size())}, torch::kUInt8));
  std::ostringstream bytes;
  outer.save_to(bytes);
  return bytes.str();
}

ArchiveReader::ArchiveReader(const std::string& bytes, torch::Device device) {
  std::istringstream in(bytes);
  torch::serialize::InputArchive outer;
  outer.load_from(in, torch::kCPU);
  torch::Tensor payload;
  if (!outer.try_read(kPayloadKey, payload)) {
    std::istringstream again(bytes);
    archive_.load_from(again, device);
    return;
  }
  c10::IValue seal;
  if (!outer.try_read(kSealKey, seal) || !seal.isString())
    throw DataError("it has contents but no seal (" + std::string(kSealKey) + ")");
  if (payload.scalar_type() != torch::kUInt8 || payload.dim() != 1 || !payload.is_contiguous())
    throw DataError("its sealed contents are not a byte string");
  const std::string inner(static_cast<const char*>(payload.data_ptr()), static_cast<size_t>(payload.numel()));
  const auto actual = sha256_hex(inner);
  if (actual != seal.toStringRef())
    throw DataError("its contents do not match their SHA-256 seal (recorded " + seal.toStringRef().substr(0, 16) +
                    "..., now " + actual.substr(0, 16) + "...): the file was changed or damaged after it was written");
  std::istringstream in_inner(inner);
  archive_.load_from(in_inner, device);
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
