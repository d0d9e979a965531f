#pragma once
// IDX files (the MNIST format), raw or gzip-compressed.
#include <torch/torch.h>

#include <string>

namespace vae_ebm {

// Reads an IDX file of unsigned bytes (type code 0x08). Gzip is detected from the
// file's first bytes, not its name. Checks the magic number, the rank (1..4), that every
// size is positive and that the payload length matches the header exactly.
// Returns a uint8 tensor whose shape is the header's sizes. Throws DataError naming
// the file and the problem. With `sha256`, also the SHA-256 of the file's uncompressed bytes
// (the same for the raw and the gzipped file).
torch::Tensor read_idx(const std::string& path, std::string* sha256 = nullptr);

// Returns `dir/stem` if it exists, else `dir/stem.gz`; throws DataError naming both.
std::string find_idx(const std::string& dir, const std::string& stem);

}  // namespace vae_ebm
