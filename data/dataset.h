#pragma once
// Data sets by name, held in memory as float tensors.
#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

namespace vae_ebm {

struct Split {
  torch::Tensor images;  // float32 [N, D], values in [0, 1]
  torch::Tensor labels;  // int64 [N], or undefined when the data set has none
  int64_t size() const { return images.size(0); }
};

// A file a data set was read from, and the SHA-256 of its contents (for an IDX file, of its
// uncompressed bytes).
struct DataFile {
  std::string path;
  std::string sha256;
};

struct Dataset {
  std::string name;
  std::vector<int64_t> image_shape;  // {C, H, W} for images; {D} for flat user data
                                     // (the rows of Split::images are C*H*W values, C-major)
  bool binary = false;   // every value the model sees is 0 or 1 (for a dynamic set,
                         // after the per-batch binarisation of train)
  bool dynamic = false;  // training batches are re-binarised at every draw
  // Every value the model sees is k/255 for an integer k, because the data were stored as
  // 8-bit grey or colour levels: mnist, fashion-mnist, colour-mnist, and uint8 HDF5 data that
  // are not all 0 and 1. False for binary sets (their 0 and 1 are not levels) and for float
  // HDF5 data. A discretised likelihood over the 256 levels needs it.
  bool eight_bit = false;
  Split train, validation, test;
  std::vector<DataFile> files;  // what it was read from
  std::string reading;  // how the stored values became the model's, printed when the data load

  // The data's fingerprint: the SHA-256 of the files' names (without their directory) and
  // digests, one "NAME DIGEST" line each, in the order read. config.ini and every evaluation
  // record carry it.
  std::string fingerprint() const;

  int64_t dim() const;
  // "train", "validation" or "test"; anything else throws DataError listing them.
  const Split& split(const std::string& name) const;
};

struct DatasetOptions {
  std::string data_dir;               // where setup.sh put the files
  uint64_t binarisation_seed = 0;     // key of the static binarisation
};

// Names: binary-mnist (static), binary-mnist-dynamic, mnist (grey), fashion-mnist,
// binary-fashion-mnist, colour-mnist (MNIST drawn in colour on colour, 3x32x32, made by
// scripts/setup.sh --data with tools/make_colour_mnist.cpp), and hdf5:PATH (see README, "Bring
// your own data": [N, D], [N, H, W], or [N, C, H, W] / [N, H, W, C] as a string attribute
// layout=NCHW or NHWC says).
// MNIST-like sets split the 60,000 training images into the first 50,000 (train) and
// the last 10,000 (validation); test is the 10,000 t10k images.
// The named IDX sets are checked against the SHA-256 of the published files (for colour-mnist,
// of the files scripts/setup.sh makes): a file that differs (damaged, or other data under the
// name) throws DataError naming the file and both digests. An unknown name throws DataError
// listing the valid ones.
Dataset load_dataset(const std::string& name, const DatasetOptions& options);

std::vector<std::string> dataset_names();

// $VAE_EBM_DATA if set, else "data-cache" (relative to the working directory).
std::string default_data_dir();

}  // namespace vae_ebm
