#pragma once
// Seeding and random generators. Generators are passed in, never hidden globals.
#include <torch/torch.h>

#include <cstdint>

namespace vae_ebm {

// A generator for `device` seeded with `seed`: a fresh CPU generator on the CPU; the
// device's default generator (re-seeded) on CUDA.
at::Generator make_generator(uint64_t seed, torch::Device device = torch::kCPU);

// Mixes several keys into one 64-bit seed (SplitMix64 steps).
uint64_t mix_seed(uint64_t a, uint64_t b, uint64_t c = 0);

// Generator state as a tensor (for checkpoints) and back.
torch::Tensor generator_state(const at::Generator& generator);
void set_generator_state(at::Generator& generator, const torch::Tensor& state);

}  // namespace vae_ebm
