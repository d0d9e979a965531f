// libFuzzer harness: vae_ebm::read_idx (data/idx.cpp), raw or gzip-compressed IDX files.
// A DataError (or any std::exception) is the expected answer to a bad file; a crash, an ASan
// report, a leak or a result that contradicts the header is a bug.
#include <torch/torch.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>

#include "data/idx.h"
#include "fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  torch::set_num_threads(1);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = vae_ebm::fuzz::temp_path("idx");
  vae_ebm::fuzz::write_input(path, data, size);
  torch::Tensor t;
  try {
    t = vae_ebm::read_idx(path);
  } catch (const std::exception& e) {
    vae_ebm::fuzz::refused(e);
    return 0;
  }
  // What idx.h promises of a file it accepts.
  if (t.scalar_type() != torch::kUInt8 || t.dim() < 1 || t.dim() > 4 || !t.is_contiguous()) std::abort();
  for (const int64_t s : t.sizes())
    if (s < 1) std::abort();
  const bool gzip = size >= 2 && data[0] == 0x1f && data[1] == 0x8b;
  if (!gzip) {
    // A raw file is its header and then exactly the payload, which the tensor holds.
    const size_t header = 4 + 4 * static_cast<size_t>(t.dim());
    if (size != header + static_cast<size_t>(t.numel()) || data[3] != t.dim()) std::abort();
    if (std::memcmp(t.data_ptr<uint8_t>(), data + header, static_cast<size_t>(t.numel())) != 0) std::abort();
  }
  return 0;
}
