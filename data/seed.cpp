// Seeding and random generators (see seed.h).
#include <torch/torch.h>

#include "data/seed.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/detail/CUDAHooksInterface.h>

#include <mutex>

#include "data/error.h"

namespace vae_ebm {
at::Generator make_generator(uint64_t seed, torch::Device device) {
  if (device.is_cpu()) return at::detail::createCPUGenerator(seed);
  if (device.is_cuda()) {
    at::Generator generator = at::detail::getCUDAHooks().getDefaultCUDAGenerator(device.index());
    std::lock_guard<std::mutex> lock(generator.mutex());
    generator.set_current_seed(seed);
    return generator;
  }
  throw DataError("make_generator: unsupported device " + device.str());
}

uint64_t mix_seed(uint64_t a, uint64_t b, uint64_t c) {
  uint64_t h = splitmix64(a);
  h = splitmix64(h ^ b);
  h = splitmix64(h ^ c);
  return h;
}

torch::Tensor generator_state(const at::Generator& generator) {
  at::Generator g = generator;  // shares the implementation; needed for the mutex
  std::lock_guard<std::mutex> lock(g.mutex());
  return g.get_state();
}

void set_generator_state(at::Generator& generator, const torch::Tensor& state) {
  std::lock_guard<std::mutex> lock(generator.mutex());
  generator.set_state(state.to(torch::kCPU, torch::kUInt8).contiguous());
}

}  // namespace vae_ebm
