#pragma once
// Transposed 2-D convolution on channels-last activations, as matrix products over many
// images at once.
//
// Why: LibTorch 1.13's CPU ConvTranspose2d (slow_conv_transpose2d) runs one small product per
// image, [Cout k^2, Cin] x [Cin, Hin Win] with Hin Win = 16 or 49 columns, then col2im. On the
// SNL reference decoder that reached 64% of the machine's product rate and took most of a conv
// training step (bench/results/conv/). Here the images of a chunk share one product:
//   cols [n Hin Win, k^2 Cout] = X [n Hin Win, Cin] x W [Cin, k^2 Cout],
// then each column block is added into the output pixel it lands on (col2im). The backward
// pass gathers the output gradient into the same column layout (im2col) and needs two more
// products: dX = Gcols W^T and dW = X^T Gcols. With channels-last (NHWC) activations X is the
// activation tensor itself, so no copy precedes a product; the chunks keep cols within the
// last-level cache.
//
// weight keeps LibTorch's ConvTranspose2d layout [Cin, Cout, k, k] (and its checkpoints); the
// result equals torch::conv_transpose2d on the NCHW tensors to float rounding (tests/test_vae.cpp).
#include <torch/torch.h>

namespace vae_ebm {

// x: [N, Hin, Win, Cin]; weight: [Cin, Cout, k, k]; bias: [Cout] or undefined.
// Returns [N, Hout, Wout, Cout], Hout = (Hin - 1) stride - 2 padding + k. Differentiable in
// x, weight and bias.
torch::Tensor conv_transpose2d_nhwc(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias,
                                    int64_t stride, int64_t padding);

}  // namespace vae_ebm
