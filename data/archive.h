#pragma once
// Reading the project's own archives (checkpoints, feature classifiers): LibTorch's archive,
// loaded from bytes onto a device, with tensors read by key and the integer "format" record
// every such file starts with checked.
#include <torch/torch.h>

#include <string>

namespace vae_ebm {

class ArchiveReader {
 public:
  // Throws LibTorch's error for bytes that are not an archive (callers name the file).
  ArchiveReader(const std::string& bytes, torch::Device device);
  // A fresh tensor each time: reading into a defined one would re-target its storage.
  torch::Tensor tensor(const std::string& key);
  // DataError "WHAT has format F, expected EXPECTED" unless the "format" record is `expected`.
  void check_format(int64_t expected, const std::string& what);
  torch::serialize::InputArchive& archive() { return archive_; }

 private:
  torch::serialize::InputArchive archive_;
};

}  // namespace vae_ebm
