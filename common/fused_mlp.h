#pragma once
// The forward pass of an MLP held as a torch::nn::Sequential of Linear layers and activations,
// with each Linear and the ReLU or LeakyReLU after it run as one autograd node:
//  - forward: the product with the bias inside it (addmm), then the activation in place;
//  - backward: the activation's mask and the bias gradient in one pass split over the
//    threads (common/parallel.h), then the two products. Under a plain backward() the weight
//    and bias gradients are added straight into .grad (the product with beta = 1), so a
//    gradient tensor that the optimiser zeroed in its own pass (FusedAdam) is reused with no
//    allocation and no zeroing pass of its own.
// Under torch::autograd::grad (or backward with inputs) the gradients are returned as usual,
// and leaves are not touched. Double backward is not supported, and hooks registered on the
// parameters do not see the gradients added in place. Input that is not a 2-d
// float32 CPU tensor, and any other module in the Sequential, take the modules' own forward;
// the result is the same as net->forward(x). Checked against autograd in tests/test_vae.cpp;
// measured by bench_train.
#include <torch/torch.h>

namespace vae_ebm {

torch::Tensor fused_mlp_forward(torch::nn::Sequential& net, const torch::Tensor& x);

}  // namespace vae_ebm
