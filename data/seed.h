#pragma once
// Seeding and random generators. Generators are passed in, never hidden globals.
#include <torch/torch.h>

#include <cstdint>

namespace vae_ebm {

// A generator for `device` seeded with `seed`: a fresh CPU generator on the CPU; the
// device's default generator (re-seeded) on CUDA.
at::Generator make_generator(uint64_t seed, torch::Device device = torch::kCPU);

// SplitMix64's output function: a bijective 64-bit mixer.
inline uint64_t splitmix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// Mixes several keys into one 64-bit seed: splitmix64(splitmix64(splitmix64(a) ^ b) ^ c).
uint64_t mix_seed(uint64_t a, uint64_t b, uint64_t c = 0);

// Generator state as a tensor (for checkpoints) and back.
torch::Tensor generator_state(const at::Generator& generator);
void set_generator_state(at::Generator& generator, const torch::Tensor& state);

}  // namespace vae_ebm
