#pragma once
// The process's CPU threads, and the one way vae-ebm runs work on several of them.
//
// Measured on the 2-core machine (bench_train, MLP VAE, batch 256): OpenBLAS at 2 threads
// with LibTorch's OpenMP pool at 1 trained at ~19,800 images/s, both at 1 at ~11,500, and
// any OpenMP pool above 1 thread at under 1,000 (the two pools fight for the cores). The
// work is nearly all OpenBLAS sgemm, so the threads go to OpenBLAS for one large product, or,
// for independent Langevin chains, to one std::thread per group of chains, each with one
// BLAS thread (small products of 256 x 200 split badly inside the BLAS). Elementwise passes
// that would otherwise stay on one core (Adam's update, the Bernoulli log-likelihood, the
// MLPs' activations when large) are split the same way.
#include <cstdint>
#include <functional>

namespace vae_ebm {

// OpenBLAS gets n threads (if it is the BLAS loaded), LibTorch's intra-op pool 1, and
// parallel_run uses up to n workers. n >= 1.
void set_num_threads(int n);
// What set_num_threads set (1 until it is called).
int num_threads();

// Runs fn(0), ..., fn(n - 1), each on its own thread (fn(0) on the caller's), with
// OpenBLAS at one thread (its idle workers stopped, so that they do not spin on the cores)
// and LibTorch's pool at one thread in every worker; the BLAS thread count is restored
// afterwards. Waits for all and rethrows the first exception. n = 1 simply calls fn(0).
void parallel_run(int n, const std::function<void(int)>& fn);

// How many of the num_threads() threads an elementwise pass over `elements` values should
// use: one per `per_thread` values at most, at least 1. The default, 64k, is where a thread
// starts to repay its start-up for Adam's update and the log-likelihood; passes that sit
// between the BLAS's own products pay more (common/fused_mlp.cpp).
int threads_for(int64_t elements, int64_t per_thread = 65536);

}  // namespace vae_ebm
