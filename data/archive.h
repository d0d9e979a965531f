#pragma once
// The project's own archives (checkpoints, feature classifiers): LibTorch's archive, sealed
// with a SHA-256 of its bytes when written, and on reading loaded from bytes onto a device,
// checked against its seal, with tensors read by key and the integer "format" record every
// such file starts with checked.
//
// LibTorch does not verify the zip's CRCs, so without the seal a flipped byte in a tensor is
// read as a different number; and its parser trusts its input (a damaged file can crash it, in
// PyTorch as here). So a sealed file is a header line, "vae-ebm sealed archive 1 sha256 HEX\n",
// then the archive's bytes, and the digest is checked before LibTorch reads a byte.
#include <torch/torch.h>

#include <string>

namespace vae_ebm {

// The bytes of `archive`, sealed: what a checkpoint or classifier file holds.
std::string sealed_archive_bytes(torch::serialize::OutputArchive& archive);

class ArchiveReader {
 public:
  // Throws LibTorch's error for bytes that are not an archive (callers name the file), and
  // DataError "WHAT: its contents do not match ..." when a sealed archive's bytes differ from
  // its seal (`what` names the file: "checkpoint PATH").
  ArchiveReader(const std::string& bytes, torch::Device device, const std::string& what);
  // A fresh tensor each time: reading into a defined one would re-target its storage.
  torch::Tensor tensor(const std::string& key);
  // DataError "WHAT has format F, expected EXPECTED" unless the "format" record is `expected`.
  void check_format(int64_t expected, const std::string& what);
  torch::serialize::InputArchive& archive() { return archive_; }
  // False for an archive written before sealing (vae-ebm 0.1): its bytes cannot be verified.
  bool sealed() const { return sealed_; }

 private:
  torch::serialize::InputArchive archive_;
  bool sealed_ = false;
};

}  // namespace vae_ebm
