// libFuzzer harness: a user's HDF5 data set, as `--dataset hdf5:PATH` reads it: the loader,
// vae_ebm::load_dataset("hdf5:PATH") (data/dataset.cpp: /train, /validation and /test, each
// [N, H, W], [N, D], or 4-D with a string attribute layout, with optional /SPLIT_labels, and its
// shape, type and range checks), which reads them with vae_ebm::h5_has, vae_ebm::h5_read and
// vae_ebm::h5_string_attribute (data/hdf5_io.cpp). A DataError (or any
// std::exception) is the expected answer to a bad file; a crash or an ASan report is a bug: in
// our code, or in libhdf5 itself, which is not instrumented (the stack says which).
// Every file open costs libhdf5 a fresh metadata cache (most of the time of an input), so the
// harness opens no more files than the loader does.
#include <torch/torch.h>

#include <cstdint>
#include <cstdlib>
#include <exception>

#include "data/dataset.h"
#include "fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  torch::set_num_threads(1);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = vae_ebm::fuzz::temp_path("hdf5", ".h5");
  vae_ebm::fuzz::write_input(path, data, size);
  try {
    const vae_ebm::Dataset ds = vae_ebm::load_dataset("hdf5:" + path, vae_ebm::DatasetOptions());
    // What the loader promises of a set it accepts.
    for (const auto* split : {&ds.train, &ds.validation, &ds.test}) {
      if (split->images.dim() != 2 || split->images.size(0) < 1 || split->images.size(1) != ds.dim() ||
          split->images.scalar_type() != torch::kFloat)
        std::abort();
      if (split->labels.defined() && (split->labels.dim() != 1 || split->labels.size(0) != split->size()))
        std::abort();
    }
  } catch (const std::exception& e) {
    vae_ebm::fuzz::refused(e);
  }
  return 0;
}
