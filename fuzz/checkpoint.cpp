// libFuzzer harness: vae_ebm::load_model_from_checkpoint (vae/trainer.cpp, through
// data/archive.cpp's reader) into a small VaeModel, then one forward pass of the loaded model.
// The model must be the one the seed checkpoints in fuzz/corpus/checkpoint/ were trained as
// (scripts/fuzz.sh, make_checkpoint_seeds): an MLP on 4x4 images, hidden width 8, latent 2,
// an energy prior with hidden width 8. A DataError (or any std::exception) is the expected answer
// to a bad file; a crash or an ASan report is a bug. LibTorch's archive reader is not
// instrumented, so a crash inside it (the stack says where) is LibTorch's.
#include <torch/torch.h>

#include <cstdint>
#include <cstdlib>
#include <exception>
#include <memory>

#include "fuzz/fuzz_support.h"
#include "vae/model.h"
#include "vae/trainer.h"

namespace {

std::shared_ptr<vae_ebm::VaeModel> make_model() {
  const auto networks = vae_ebm::NetworkOptions().hidden({8}).latent_dim(2).image_shape({1, 4, 4});
  const auto prior = vae_ebm::PriorOptions("ebm", 2).set("energy-hidden", "8");
  return std::make_shared<vae_ebm::VaeModel>(networks, prior);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  torch::set_num_threads(1);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = vae_ebm::fuzz::temp_path("checkpoint", ".pt");
  vae_ebm::fuzz::write_input(path, data, size);
  // A fresh model each time: a load that fails half-way leaves the model's tensors re-targeted.
  const auto model = make_model();
  const auto reference = make_model();
  try {
    vae_ebm::load_model_from_checkpoint(path, *model);
  } catch (const std::exception& e) {
    vae_ebm::fuzz::refused(e);
    return 0;
  }
  // What trainer.h promises of a checkpoint it accepts: every tensor has the model's shape.
  for (const bool buffers : {false, true}) {
    const auto got = buffers ? model->named_buffers() : model->named_parameters();
    const auto want = buffers ? reference->named_buffers() : reference->named_parameters();
    if (got.size() != want.size()) std::abort();
    for (const auto& p : want)
      if (got[p.key()].sizes() != p.value().sizes()) std::abort();
  }
  // The loaded model is then used as the commands use it; a tensor of another type or device
  // may throw, but it must not read outside its storage.
  try {
    torch::NoGradGuard no_grad;
    const auto q = model->encoder->forward(torch::full({3, 16}, 0.5f));
    (void)model->decoder->params(q.mu);
    (void)model->prior->log_prob_unnormalised(q.mu);
  } catch (const std::exception& e) {
    vae_ebm::fuzz::refused(e);
  }
  return 0;
}
