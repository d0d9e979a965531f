#pragma once
// HDF5: reading a user's data set, writing exported models and per-image results.
#include <torch/torch.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace vae_ebm {

// Reads one dataset of a file as a tensor: uint8 -> uint8, integer -> int64,
// float/double -> float32/float64. Throws DataError naming file and dataset.
torch::Tensor h5_read(const std::string& path, const std::string& dataset);
bool h5_has(const std::string& path, const std::string& dataset);
// The string attribute `key` of `object` ("/" for the file root, or a dataset or group path), or
// std::nullopt when the object has no such attribute. Variable- and fixed-length strings are
// read alike (fixed-length ones without their padding). Throws DataError naming the file, the
// object and the attribute when the object is missing or the attribute is not one string.
std::optional<std::string> h5_string_attribute(const std::string& path, const std::string& object,
                                               const std::string& key);

// Writes a new HDF5 file (to a temporary name; `close()` renames it into place).
class H5Writer {
 public:
  explicit H5Writer(const std::string& path);
  ~H5Writer();
  // Writes a float32, float64, int64 or uint8 tensor (made contiguous, moved to CPU).
  // Intermediate groups in `name` ("encoder/fc1/weight") are created as needed.
  void write(const std::string& name, const torch::Tensor& tensor);
  // Attributes on an object ("/" for the file, or a dataset or group path).
  void attribute(const std::string& object, const std::string& key, const std::string& value);
  void attribute(const std::string& object, const std::string& key, double value);
  void attribute(const std::string& object, const std::string& key, int64_t value);
  void close();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace vae_ebm
