#include <torch/torch.h>

#include "data/archive.h"

#include <sstream>

#include "data/error.h"

namespace vae_ebm {

ArchiveReader::ArchiveReader(const std::string& bytes, torch::Device device) {
  std::istringstream in(bytes);
  archive_.load_from(in, device);
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
