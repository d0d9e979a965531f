// The trainer's checkpoints: what a checkpoint holds (the layout save_checkpoint writes and
// every reader here reads: the model, the optimisers, the objective's state, each process's own
// part, the loop's position and generator), all-or-nothing loading, resuming from the newest
// intact one, and the loaders of the model and the objective's flow that evaluate, sample,
// export, report and post-hoc fitting use.
#include <torch/torch.h>

#include "vae/trainer.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <stdexcept>

#include "common/error.h"
#include "common/text.h"
#include "data/archive.h"
#include "data/error.h"
#include "data/files.h"
#include "data/json.h"
#include "data/seed.h"

namespace vae_ebm {

namespace {
constexpr int64_t kCheckpointFormat = 1;

torch::Tensor scalar(int64_t v) { return torch::full({}, v, torch::kLong); }
torch::Tensor scalar(double v) { return torch::full({}, v, torch::kDouble); }

// Bytes (an archive of their own) as a tensor of an archive, and back.
torch::Tensor bytes_tensor(const std::string& bytes) {
  auto t = torch::empty({static_cast<int64_t>(bytes.size())}, torch::kByte);
  std::memcpy(t.data_ptr(), bytes.data(), bytes.size());
  return t;
}
std::string rank_bytes(torch::serialize::InputArchive& ranks, int rank) {
  torch::Tensor t;
  ranks.read(std::to_string(rank), t);
  t = t.to(torch::kCPU).contiguous();
  return std::string(static_cast<const char*>(t.data_ptr()), static_cast<size_t>(t.numel()));
}

}  // namespace

void Trainer::save_checkpoint(const std::string& path) const {
  // A checkpoint is what a rollback returns to: never one with NaN or infinite parameters.
  if (const auto bad = first_non_finite(*model_); !bad.empty())
    throw Divergence(state_.step, "parameters (" + bad + ")", std::nan(""));
  // An objective's state of each process's own (MCMC chains) comes to rank 0 from every process.
  std::vector<std::string> per_process;
  if (dist_->parallel() && objective_->per_process_state()) {
    torch::serialize::OutputArchive own;
    objective_->save(own);
    std::ostringstream bytes;
    own.save_to(bytes);
    per_process = dist_->all_gather_bytes(bytes.str(), "the gathering of every rank's chains for a checkpoint");
  }
  if (!writes_) return;  // only rank 0 writes (the parameters are the same on every process)
  torch::serialize::OutputArchive archive;
  archive.write("format", scalar(kCheckpointFormat));
  write_learned_state(archive);
  if (!per_process.empty()) {
    // Rank r's objective archive, as bytes; rank 0's is "objective" above.
    torch::serialize::OutputArchive ranks;
    for (size_t r = 1; r < per_process.size(); ++r) ranks.write(std::to_string(r), bytes_tensor(per_process[r]));
    archive.write("objective_of_rank", ranks);
  }
  archive.write("world_size", scalar(static_cast<int64_t>(dist_->world_size())));
  archive.write("generator", generator_state(generator_));
  archive.write("step", scalar(state_.step));
  archive.write("epoch", scalar(state_.epoch));
  archive.write("batch_index", scalar(state_.batch_index));
  archive.write("best_validation", scalar(state_.best_validation));
  archive.write("train_seconds", scalar(state_.train_seconds));
  archive.write("allreduce_seconds", scalar(state_.allreduce_seconds));
  atomic_write(path, sealed_archive_bytes(archive));
  keep_reference();
}

void Trainer::write_learned_state(torch::serialize::OutputArchive& archive) const {
  torch::serialize::OutputArchive model_archive, objective_archive;
  model_->save(model_archive);
  archive.write("model", model_archive);
  if (vae_optimizer_) {
    torch::serialize::OutputArchive a;
    vae_optimizer_->save(a);
    archive.write("vae_optimizer", a);
  }
  if (prior_optimizer_) {
    torch::serialize::OutputArchive a;
    prior_optimizer_->save(a);
    archive.write("prior_optimizer", a);
  }
  objective_->save(objective_archive);
  archive.write("objective", objective_archive);
}

void Trainer::read_optimizers(torch::serialize::InputArchive& archive) {
  if (vae_optimizer_) {
    torch::serialize::InputArchive a;
    archive.read("vae_optimizer", a);
    vae_optimizer_->load(a);
  }
  if (prior_optimizer_) {
    torch::serialize::InputArchive a;
    archive.read("prior_optimizer", a);
    prior_optimizer_->load(a);
  }
}

void Trainer::load_checkpoint(const std::string& path) { load_checkpoint_bytes(read_file(path), path); }

// Everything a checkpoint load sets, as it is now, unchecked (no seal, no finiteness test): what
// a load that fails half-way puts back.
std::string Trainer::snapshot() const {
  torch::serialize::OutputArchive archive;
  write_learned_state(archive);
  std::ostringstream bytes;
  archive.save_to(bytes);
  return bytes.str();
}

void Trainer::restore(const std::string& snapshot) {
  std::istringstream in(snapshot);
  torch::serialize::InputArchive archive, model_archive, objective_archive;
  archive.load_from(in, options_.device());
  archive.read("model", model_archive);
  model_->load(model_archive);
  read_optimizers(archive);
  archive.read("objective", objective_archive);
  objective_->load(objective_archive);
}

void Trainer::load_checkpoint_bytes(const std::string& bytes, const std::string& path) {
  // Opening: a file that is cut short, changed after it was written (its seal) or not an
  // archive at all is damaged (DataError: resume_latest sets it aside). Nothing is touched yet.
  // A pointer, not std::optional: InputArchive's copy constructor takes a non-const reference,
  // which clang's std::optional refuses to instantiate.
  std::unique_ptr<ArchiveReader> opened;
  try {
    opened = std::make_unique<ArchiveReader>(bytes, options_.device(), "checkpoint " + path);
  } catch (const DataError&) {
    throw;
  } catch (const std::exception& e) {
    throw DataError("checkpoint " + path + " is truncated, corrupt or not a checkpoint: " + first_line(e.what()));
  }
  auto& reader = *opened;
  if (writes_ && !reader.sealed()) listener_->unsealed_checkpoint(path);
  // An intact file that does not fit this run (another format, model, optimiser or objective)
  // is not damage: ResumeError naming both sides, the file left where it is. The load is all or
  // nothing: what it set before it failed is put back, so a caller that goes on (a fresh start,
  // an older checkpoint) goes on from the trainer as it was.
  const std::string config = run_dir_.path().empty() ? std::string("this run's configuration")
                                                     : run_dir_.config_path() + " (this run's configuration)";
  auto mismatch = [&](const std::string& detail) {
    return ResumeError("checkpoint " + path + " does not fit the model, optimiser and objective that " + config +
                       " describes: " + detail + ". Nothing was changed or set aside: the checkpoint was written by "
                       "another configuration (was config.ini edited, or the checkpoint copied from another run?); "
                       "restore the config.ini it was written with, or move the checkpoint out of the run" +
                       (reader.sealed() ? "" : " (it has no seal, so damage is possible too)"));
  };
  {
    torch::Tensor format;
    if (!reader.archive().try_read("format", format))
      throw mismatch("it has no format record");
    if (format.item<int64_t>() != kCheckpointFormat)
      throw mismatch("it has format " + std::to_string(format.item<int64_t>()) + ", this version reads " +
                     std::to_string(kCheckpointFormat));
  }
  const auto before = snapshot();
  const auto state_before = state_;
  const auto generator_before = generator_state(generator_);
  try {
    load_checkpoint_state(reader, path);
    // A step file whose name says another step than it records (a copy, or a stray such as
    // step-9999999999999999999.pt) would pin every resume to it and never be pruned: it is set
    // aside like a damaged one.
    const auto name = std::filesystem::path(path).filename().string();
    if (!run_dir_.path().empty() && name.rfind("step-", 0) == 0 &&
        name != std::filesystem::path(run_dir_.checkpoint_path(state_.step)).filename().string())
      throw DataError("checkpoint " + path + " records step " + std::to_string(state_.step) +
                      ", not the step its name says: a copy or a stray file, not one this run wrote there");
    keep_reference();
  } catch (...) {
    restore(before);
    state_ = state_before;
    set_generator_state(generator_, generator_before);
    try {
      throw;
    } catch (const ResumeError&) {
      throw;
    } catch (const DataError&) {
      throw;
    } catch (const std::exception& e) {
      throw mismatch(first_line(e.what()));
    }
  }
}

void Trainer::load_checkpoint_state(ArchiveReader& reader, const std::string& path) {
  auto& archive = reader.archive();
  auto read = [&reader](const char* key) { return reader.tensor(key); };
  torch::serialize::InputArchive model_archive;
  archive.read("model", model_archive);
  load_module_checked(*model_, model_archive);
  read_optimizers(archive);
  // A checkpoint without a world size is one process's (written before data-parallel training).
  torch::Tensor world;
  const int64_t wrote = archive.try_read("world_size", world) ? world.item<int64_t>() : 1;
  if (wrote != dist_->world_size() && objective_->per_process_state())
    throw ResumeError("checkpoint " + path + " was written by " + std::to_string(wrote) + " process" +
                      (wrote == 1 ? "" : "es") + ", and its '" + objective_->name() + "' chains are each process's "
                      "own: resume it with " + std::to_string(wrote) + " process" + (wrote == 1 ? "" : "es") +
                      ", not " + std::to_string(dist_->world_size()),
                      wrote);
  torch::serialize::InputArchive objective_archive;
  if (dist_->rank() == 0 || !objective_->per_process_state()) {
    archive.read("objective", objective_archive);
  } else {
    torch::serialize::InputArchive ranks;
    archive.read("objective_of_rank", ranks);
    const auto bytes = rank_bytes(ranks, dist_->rank());
    objective_archive.load_from(bytes.data(), bytes.size(), options_.device());
  }
  objective_->load(objective_archive);
  set_generator_state(generator_, read("generator"));
  TrainState s;
  s.step = read("step").item<int64_t>();
  s.epoch = read("epoch").item<int64_t>();
  s.batch_index = read("batch_index").item<int64_t>();
  s.best_validation = read("best_validation").item<double>();
  s.train_seconds = read("train_seconds").item<double>();
  torch::Tensor allreduce;  // absent from checkpoints written before it was timed
  if (archive.try_read("allreduce_seconds", allreduce)) s.allreduce_seconds = allreduce.item<double>();
  state_ = s;
}

bool Trainer::resume_latest() {
  // In data-parallel training rank 0 finds the checkpoint and sends its bytes to the others.
  std::string bytes, refused;
  if (writes_) {
    auto all = run_dir_.checkpoints();
    while (!all.empty()) {
      try {
        bytes = read_file(all.back());
        load_checkpoint_bytes(bytes, all.back());
        break;
      } catch (const ResumeError& e) {
        if (!dist_->parallel()) throw;
        // Said to every process below, so that all of them stop with it: "PROCESSES\nMESSAGE".
        refused = std::to_string(e.processes) + "\n" + e.what();
        bytes.clear();
        break;
      } catch (const DataError& e) {
        bytes.clear();
        // Set aside, not deleted: the user may want to look at it; it no longer counts as a checkpoint.
        const std::string aside = all.back() + ".corrupt";
        std::error_code ec;
        std::filesystem::rename(all.back(), aside, ec);
        if (writes_) listener_->damaged_checkpoint_set_aside(aside, e.what());
        skipped_.push_back(all.back() + ": " + first_line(e.what()));
        all.pop_back();
      }
    }
  }
  if (!dist_->parallel()) return !bytes.empty();
  refused = dist_->broadcast_bytes(refused, 0, "the broadcast of whether rank 0 can resume");
  if (!refused.empty()) {
    const auto eol = refused.find('\n');
    throw ResumeError(refused.substr(eol + 1), std::stoll(refused.substr(0, eol)));
  }
  bytes = dist_->broadcast_bytes(bytes, 0, "the broadcast of the checkpoint to resume from");
  if (!bytes.empty() && !writes_) load_checkpoint_bytes(bytes, "rank 0's checkpoint");
  return !bytes.empty();
}

std::string first_non_finite(const torch::nn::Module& module) {
  torch::NoGradGuard no_grad;
  for (const auto& p : module.named_parameters())
    if (p.value().defined() && !torch::isfinite(p.value()).all().item<bool>()) return p.key();
  for (const auto& b : module.named_buffers())
    if (b.value().defined() && b.value().is_floating_point() && !torch::isfinite(b.value()).all().item<bool>())
      return b.key();
  return "";
}

void load_module_checked(torch::nn::Module& module, torch::serialize::InputArchive& archive) {
  auto shapes = [&module] {
    std::vector<std::pair<std::string, std::vector<int64_t>>> out;
    for (const auto& p : module.named_parameters()) out.emplace_back(p.key(), p.value().sizes().vec());
    for (const auto& b : module.named_buffers()) out.emplace_back(b.key(), b.value().sizes().vec());
    return out;
  };
  const auto expected = shapes();
  // Module::load re-targets each tensor in turn: on a failure the ones before it would hold the
  // checkpoint's values. These share the old storage, so that the module can be put back.
  std::vector<std::pair<torch::Tensor, torch::Tensor>> was;
  for (auto& p : module.named_parameters()) was.emplace_back(p.value(), p.value().detach());
  for (auto& b : module.named_buffers()) was.emplace_back(b.value(), b.value().detach());
  try {
    module.load(archive);
    const auto stored = shapes();
    for (size_t i = 0; i < expected.size(); ++i)
      if (stored[i].second != expected[i].second)
        throw std::runtime_error("tensor " + expected[i].first + " has shape " +
                                 c10::str(c10::IntArrayRef(stored[i].second)) + " in the checkpoint where the model has " +
                                 c10::str(c10::IntArrayRef(expected[i].second)));
    if (const auto bad = first_non_finite(module); !bad.empty())
      throw std::runtime_error("tensor " + bad + " holds NaN or infinite values");
  } catch (...) {
    torch::NoGradGuard no_grad;
    for (auto& [tensor, old] : was) tensor.set_(old);
    throw;
  }
}

Flow load_objective_flow_from_checkpoint(const std::string& path, torch::Device device) {
  try {
    ArchiveReader reader(read_file(path), device, "checkpoint " + path);
    torch::serialize::InputArchive objective, archive;
    torch::Tensor dim;
    if (!reader.archive().try_read("objective", objective) || !objective.try_read(TrainedFlow::kDimKey, dim) ||
        !objective.try_read(TrainedFlow::kFlowKey, archive))
      return Flow{nullptr};
    Flow flow(dim.item<int64_t>());
    load_module_checked(*flow, archive);
    flow->to(device);
    for (auto& p : flow->parameters()) p.set_requires_grad(false);
    return flow;
  } catch (const DataError&) {
    throw;  // names the file already
  } catch (const std::exception& e) {
    throw DataError("checkpoint " + path + ": cannot read the objective's flow: " + first_line(e.what()));
  }
}

bool load_model_from_checkpoint(const std::string& path, VaeModel& model, torch::Device device) {
  auto bytes = read_file(path);
  try {
    ArchiveReader reader(bytes, device, "checkpoint " + path);
    torch::serialize::InputArchive model_archive;
    reader.archive().read("model", model_archive);
    load_module_checked(model, model_archive);
    return reader.sealed();
  } catch (const DataError&) {
    throw;  // names the file already
  } catch (const std::exception& e) {
    throw DataError("checkpoint " + path + " is truncated, corrupt or from another model: " + first_line(e.what()));
  }
}

}  // namespace vae_ebm
