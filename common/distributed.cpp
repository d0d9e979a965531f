// Data-parallel collectives over c10d (see distributed.h).
#include <torch/torch.h>

#include "common/distributed.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <thread>

#include "common/text.h"

// Gloo needs its own headers (Debian: libgloo-dev) besides LibTorch's; LibTorch's CMake config
// passes USE_C10D_GLOO where its library holds the Gloo process group.
#if defined(USE_C10D_GLOO) && __has_include(<gloo/config.h>) && \
    __has_include(<torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>)
#define VAE_EBM_HAVE_GLOO 1
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#endif
// NCCL where LibTorch has CUDA and was built with it. Untested: no CUDA machine here.
#if defined(VAE_EBM_HAVE_GLOO) && defined(USE_C10D_NCCL) && \
    __has_include(<torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>)
#define VAE_EBM_HAVE_NCCL 1
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

namespace vae_ebm {

namespace {

constexpr int64_t kBucketBytes = int64_t{64} << 20;

std::string seconds_text(std::chrono::milliseconds t) {
  std::ostringstream out;
  out << static_cast<double>(t.count()) / 1000.0 << " s";
  return out.str();
}

const char* env(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? v : nullptr;
}

// An environment variable holding an integer in [low, high]; LaunchError naming it otherwise.
int env_int(const char* name, int low, int high, const std::string& hint) {
  const char* v = env(name);
  if (!v) throw LaunchError(std::string(name) + " is not set" + hint);
  char* end = nullptr;
  errno = 0;
  const long x = std::strtol(v, &end, 10);
  if (errno || *end || x < low || x > high)
    throw LaunchError(std::string(name) + "=" + v + " is not an integer in [" + std::to_string(low) + ", " +
                      std::to_string(high) + "]" + hint);
  return static_cast<int>(x);
}

// "rank 3", "ranks 1 and 3", "ranks 1, 2 and 3".
std::string rank_list(const std::vector<int>& ranks) {
  std::string out = ranks.size() == 1 ? "rank " : "ranks ";
  for (size_t i = 0; i < ranks.size(); ++i)
    out += (i == 0 ? "" : i + 1 == ranks.size() ? " and " : ", ") + std::to_string(ranks[i]);
  return out;
}

// Adds the wall time of its scope to `total` (Distributed::collective_seconds).
class ScopeTimer {
 public:
  explicit ScopeTimer(double& total) : total_(total), start_(std::chrono::steady_clock::now()) {}
  ~ScopeTimer() { total_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count(); }
  ScopeTimer(const ScopeTimer&) = delete;
  ScopeTimer& operator=(const ScopeTimer&) = delete;

 private:
  double& total_;
  std::chrono::steady_clock::time_point start_;
};

bool is_loopback(const std::string& host) {
  return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

// The buckets of all_reduce_sum and broadcast: consecutive runs of tensors of one dtype, each
// at most kBucketBytes (a larger tensor is a bucket of its own).
std::vector<std::vector<torch::Tensor>> buckets(const std::vector<torch::Tensor>& tensors) {
  std::vector<std::vector<torch::Tensor>> out;
  int64_t bytes = 0;
  for (const auto& t : tensors) {
    TORCH_CHECK(t.defined(), "Distributed: an undefined tensor in a collective");
    if (t.numel() == 0) continue;
    const int64_t n = t.numel() * static_cast<int64_t>(t.element_size());
    if (out.empty() || out.back().front().scalar_type() != t.scalar_type() || bytes + n > kBucketBytes) {
      out.emplace_back();
      bytes = 0;
    }
    out.back().push_back(t);
    bytes += n;
  }
  return out;
}

torch::Tensor flatten(const std::vector<torch::Tensor>& bucket, torch::Device device) {
  std::vector<torch::Tensor> flat;
  flat.reserve(bucket.size());
  for (const auto& t : bucket) flat.push_back(t.detach().reshape({-1}).to(device));
  return flat.size() == 1 ? flat.front().clone() : torch::cat(flat);
}

void unflatten(const torch::Tensor& flat, const std::vector<torch::Tensor>& bucket) {
  torch::NoGradGuard no_grad;
  int64_t offset = 0;
  for (const auto& t : bucket) {
    t.copy_(flat.narrow(0, offset, t.numel()).view(t.sizes()));
    offset += t.numel();
  }
}

}  // namespace

BatchShard BatchShard::of(int64_t global, int rank, int world) {
  TORCH_CHECK(world >= 1 && rank >= 0 && rank < world, "BatchShard: rank ", rank, " of ", world);
  BatchShard s;
  s.global = global;
  s.begin = global * rank / world;
  s.size = global * (rank + 1) / world - s.begin;
  return s;
}

torch::Tensor BatchShard::rows(const torch::Tensor& t, int64_t dim) const {
  TORCH_CHECK(t.size(dim) == global, "BatchShard: ", t.size(dim), " rows where the batch has ", global);
  return whole() ? t : t.narrow(dim, begin, size);
}

int64_t Distributed::fingerprint(const std::vector<torch::Tensor>& tensors) {
  // FNV-1a over 64-bit words: the dtype, the shape and the bytes of each tensor.
  uint64_t h = 14695981039346656037ULL;
  auto mix = [&h](uint64_t word) {
    h ^= word;
    h *= 1099511628211ULL;
  };
  for (const auto& t : tensors) {
    mix(static_cast<uint64_t>(t.scalar_type()));
    mix(static_cast<uint64_t>(t.dim()));
    for (auto s : t.sizes()) mix(static_cast<uint64_t>(s));
    auto c = t.detach().to(torch::kCPU).contiguous();
    const auto* bytes = static_cast<const unsigned char*>(c.data_ptr());
    const size_t n = static_cast<size_t>(c.numel()) * c.element_size();
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
      uint64_t word;
      std::memcpy(&word, bytes + i, 8);
      mix(word);
    }
    uint64_t tail = 0;
    std::memcpy(&tail, bytes + i, n - i);
    mix(tail ^ (static_cast<uint64_t>(n - i) << 56));
  }
  return static_cast<int64_t>(h);
}

#ifdef VAE_EBM_HAVE_GLOO

struct Distributed::Engine {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroup> group;
  std::string address;          // MASTER_ADDR:MASTER_PORT
  bool store_on_rank0 = true;   // false where torchrun's agent holds it
  std::string backend = "gloo";
  torch::Device device = torch::kCPU;  // where the collectives' buffers live
  bool failed = false;

  // Which ranks are gone, after a collective failed: each survivor says so in the store and
  // waits (at most `window`) for the others to say so too. Those that do not are lost.
  std::string lost_ranks(int self, int world, std::chrono::milliseconds window) {
    const std::string prefix = "vae-ebm/alive-after-failure/";
    try {
      store->set(prefix + std::to_string(self), {1});
      const auto deadline = std::chrono::steady_clock::now() + window;
      std::vector<int> missing;
      for (;;) {
        missing.clear();
        for (int r = 0; r < world; ++r)
          if (r != self && !store->check({prefix + std::to_string(r)})) missing.push_back(r);
        if (missing.empty() || std::chrono::steady_clock::now() >= deadline) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
      if (missing.empty()) return "";
      return rank_list(missing) + " of " + std::to_string(world) +
             " (no answer within " + seconds_text(window) + ": died, killed or hung; see its own output)";
    } catch (const std::exception&) {
      if (store_on_rank0)
        return "rank 0 of " + std::to_string(world) + " (its store at " + address +
               " is gone: it died or was killed; see its own output)";
      return "the store at " + address + " (torchrun's agent on the first machine is gone)";
    }
  }
};

namespace {

std::shared_ptr<gloo::transport::Device> gloo_device(const std::string& master) {
  if (const char* ifname = env("GLOO_SOCKET_IFNAME")) {
    std::string name = ifname;
    name = name.substr(0, name.find(','));
    return c10d::ProcessGroupGloo::createDeviceForInterface(name);
  }
  // Every process on this machine: loopback needs no name resolution.
  if (is_loopback(master)) return c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1");
  return c10d::ProcessGroupGloo::createDefaultDevice();
}

}  // namespace

#else  // no Gloo

struct Distributed::Engine {
  std::string backend = "none";
};

#endif

Distributed::Distributed() = default;
Distributed::~Distributed() = default;

Distributed::Launch Distributed::launch_from_environment() {
  Launch launch;
  if (!env("WORLD_SIZE")) return launch;
  const std::string hint = " (a data-parallel launch: torchrun sets WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR "
                           "and MASTER_PORT; see README, \"Many processes, many machines\")";
  launch.world_size = env_int("WORLD_SIZE", 1, 1 << 20, hint);
  if (launch.world_size == 1) return launch;
  launch.rank = env_int("RANK", 0, launch.world_size - 1, hint);
  const char* addr = env("MASTER_ADDR");
  if (!addr)
    throw LaunchError("MASTER_ADDR is not set: with WORLD_SIZE=" + std::to_string(launch.world_size) +
                      " every process needs the address of rank 0's machine" + hint);
  launch.master_addr = addr;
  launch.master_port = env_int("MASTER_PORT", 1, 65535, hint);
  launch.local_rank = env("LOCAL_RANK") ? env_int("LOCAL_RANK", 0, launch.world_size - 1, hint) : 0;
  const char* agent = env("TORCHELASTIC_USE_AGENT_STORE");
  launch.agent_store = agent && std::string(agent) == "True";
  if (const char* attempt = env("TORCHELASTIC_RESTART_COUNT")) launch.restart_count = attempt;
  return launch;
}

std::shared_ptr<Distributed> Distributed::connect(const Launch& launch, const Options& options) {
  auto d = std::make_shared<Distributed>();
  d->timeout_ = options.timeout;
  if (launch.world_size <= 1) return d;
  const int world = launch.world_size, rank = launch.rank, port = launch.master_port;
  TORCH_CHECK(rank >= 0 && rank < world && port > 0 && port < 65536, "Distributed::connect: rank ", rank, " of ",
              world, ", port ", port);
  d->world_size_ = world;
  d->rank_ = rank;
  d->local_rank_ = launch.local_rank;
#ifndef VAE_EBM_HAVE_GLOO
  throw LaunchError("WORLD_SIZE=" + std::to_string(world) +
                    ", but this vae-ebm was built without PyTorch's Gloo process group (it needs Gloo's headers, "
                    "Debian's libgloo-dev, and LibTorch with USE_C10D_GLOO): rebuild after scripts/setup.sh --deps");
#else
  const char* addr = launch.master_addr.c_str();
  auto engine = std::make_unique<Engine>();
  engine->address = launch.master_addr + ":" + std::to_string(port);
  engine->store_on_rank0 = !launch.agent_store;
  const std::string who = "rank " + std::to_string(rank) + " of " + std::to_string(world);
  const std::string within = " within " + seconds_text(options.timeout);
  // The store: rank 0 holds it (or torchrun's agent, with its static rendezvous); the others
  // connect to it, retrying until the timeout.
  c10::intrusive_ptr<c10d::Store> store;
  try {
    c10d::TCPStoreOptions o;
    o.port = static_cast<uint16_t>(port);
    o.isServer = engine->store_on_rank0 && rank == 0;
    o.numWorkers = static_cast<size_t>(world);
    o.waitWorkers = false;  // each rank waits for the others below, naming those missing
    o.timeout = options.timeout;
    auto tcp = c10::make_intrusive<c10d::TCPStore>(addr, o);
    // As PyTorch does: under torchrun's agent store, each restart of the workers has its keys.
    const std::string prefix = engine->store_on_rank0 ? "vae-ebm/" : "/worker/attempt_" + launch.restart_count + "/";
    store = c10::make_intrusive<c10d::PrefixStore>(prefix, tcp);
  } catch (const std::exception& e) {
    const std::string msg = first_line(e.what());
    if (engine->store_on_rank0 && rank == 0)
      throw LaunchError(who + " cannot hold the store at " + engine->address + ": " + msg +
                        (msg.find("in use") != std::string::npos
                             ? " (MASTER_PORT is in use, by another run perhaps: choose another, or let torchrun "
                               "choose one: --standalone)"
                             : ""));
    throw LaunchError(who + " could not reach the store at " + engine->address + within +
                      " (is rank 0 running? are MASTER_ADDR and MASTER_PORT the same for all ranks?): " + msg);
  }
  engine->store = store;
  // Every rank says it is here and waits for the others, so that a rank that never came is
  // named (Gloo's own connection would only time out).
  {
    std::vector<std::string> keys;
    for (int r = 0; r < world; ++r) keys.push_back("joined/" + std::to_string(r));
    std::vector<int> missing;
    try {
      store->set(keys[rank], {1});
      store->wait(keys, options.timeout);
    } catch (const std::exception& e) {
      try {
        for (int r = 0; r < world; ++r)
          if (!store->check({keys[r]})) missing.push_back(r);
      } catch (const std::exception&) {
      }
      if (missing.empty())
        throw LaunchError(who + ": the store at " + engine->address + " failed while the processes met: " +
                          first_line(e.what()));
    }
    if (!missing.empty())
      throw LaunchError(who + ": " + rank_list(missing) + " did not join the store at " + engine->address + within +
                        " (did it start? do all ranks have the same MASTER_ADDR, MASTER_PORT and WORLD_SIZE?)");
  }
  try {
#ifdef VAE_EBM_HAVE_NCCL
    if (options.device.is_cuda()) {
      auto o = c10d::ProcessGroupNCCL::Options::create();
      o->timeout = options.timeout;
      engine->group = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, world, o);
      engine->backend = "nccl";
      engine->device = torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(d->local_rank_));
    }
#endif
    if (!engine->group) {
      auto o = c10d::ProcessGroupGloo::Options::create(options.timeout);
      o->devices.push_back(gloo_device(addr));
      engine->group = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world, o);
    }
  } catch (const std::exception& e) {
    throw LaunchError(who + ": connecting the " + std::to_string(world) + " processes (" + engine->backend +
                      ") failed" + within + " (a rank died, or cannot reach this machine; with several machines set "
                      "GLOO_SOCKET_IFNAME to the interface they share): " + first_line(e.what()));
  }
  d->engine_ = std::move(engine);
  return d;
#endif
}

std::string Distributed::backend() const { return engine_ ? engine_->backend : "none"; }

std::string Distributed::describe() const {
  if (!parallel()) return "1 process";
#ifdef VAE_EBM_HAVE_GLOO
  return std::to_string(world_size_) + " processes (" + backend() + "; store at " + engine_->address +
         (engine_->store_on_rank0 ? " held by rank 0" : " held by torchrun") + "; timeout " + seconds_text(timeout_) + ")";
#else
  return std::to_string(world_size_) + " processes";
#endif
}

#ifdef VAE_EBM_HAVE_GLOO
template <class Start>
void Distributed::collective(const std::string& what, Start&& start) {
  auto& e = *engine_;
  if (e.failed) throw DistributedError("data-parallel training: " + what + " after an earlier collective failed");
  try {
    auto work = start();
    work->wait();
  } catch (const std::exception& ex) {
    e.failed = true;
    const auto window = std::min<std::chrono::milliseconds>(timeout_, std::chrono::seconds(5));
    const auto lost = e.lost_ranks(rank_, world_size_, window);
    const std::string said = first_line(ex.what());
    if (lost.empty())
      throw DistributedError("rank " + std::to_string(rank_) + ": " + what + " failed (every rank still answers): " + said);
    throw DistributedError("rank " + std::to_string(rank_) + ": lost " + lost + " during " + what + " (" + said + ")");
  }
}
#define COLLECTIVE(what, ...) collective(what, [&] { return __VA_ARGS__; })
#endif

void Distributed::all_reduce_sum(const std::vector<torch::Tensor>& tensors, const std::string& what) {
  if (!parallel()) return;
#ifdef VAE_EBM_HAVE_GLOO
  ScopeTimer timer(collective_seconds_);
  for (const auto& bucket : buckets(tensors)) {
    std::vector<torch::Tensor> flat{flatten(bucket, engine_->device)};
    COLLECTIVE(what, engine_->group->allreduce(flat));
    unflatten(flat.front(), bucket);
  }
#endif
}

torch::Tensor Distributed::all_reduce_logsumexp(const torch::Tensor& t, const std::string& what) {
  auto local = t.detach().to(torch::kDouble);
  if (!parallel()) return local.clone();
#ifdef VAE_EBM_HAVE_GLOO
  ScopeTimer timer(collective_seconds_);
  std::vector<torch::Tensor> input{local.to(engine_->device).contiguous()};
  std::vector<std::vector<torch::Tensor>> output(1);
  for (int r = 0; r < world_size_; ++r) output[0].push_back(torch::empty_like(input[0]));
  COLLECTIVE(what, engine_->group->allgather(output, input));
  // logsumexp over the ranks, max-shifted by torch (an all -inf column stays -inf).
  return torch::logsumexp(torch::stack(output[0]), 0).to(t.device());
#else
  return local;
#endif
}

void Distributed::broadcast(const std::vector<torch::Tensor>& tensors, int root, const std::string& what) {
  if (!parallel()) return;
#ifdef VAE_EBM_HAVE_GLOO
  ScopeTimer timer(collective_seconds_);
  c10d::BroadcastOptions o;
  o.rootRank = root;
  for (const auto& bucket : buckets(tensors)) {
    std::vector<torch::Tensor> flat{flatten(bucket, engine_->device)};
    COLLECTIVE(what, engine_->group->broadcast(flat, o));
    if (rank_ != root) unflatten(flat.front(), bucket);
  }
#endif
}

std::string Distributed::broadcast_bytes(const std::string& bytes, int root, const std::string& what) {
  if (!parallel()) return bytes;
#ifdef VAE_EBM_HAVE_GLOO
  auto size = torch::full({1}, rank_ == root ? static_cast<int64_t>(bytes.size()) : int64_t{0}, torch::kLong);
  broadcast({size}, root, what);
  const int64_t n = size.item<int64_t>();
  if (n == 0) return "";
  auto data = torch::empty({n}, torch::kByte);
  if (rank_ == root) std::memcpy(data.data_ptr(), bytes.data(), static_cast<size_t>(n));
  broadcast({data}, root, what);
  return rank_ == root ? bytes : std::string(static_cast<const char*>(data.data_ptr()), static_cast<size_t>(n));
#else
  return bytes;
#endif
}

std::vector<std::string> Distributed::all_gather_bytes(const std::string& bytes, const std::string& what) {
  if (!parallel()) return {bytes};
#ifdef VAE_EBM_HAVE_GLOO
  ScopeTimer timer(collective_seconds_);
  // The sizes first, then every rank's bytes padded to the largest (Gloo's all-gather takes
  // tensors of one size).
  auto gather = [&](const torch::Tensor& t) {
    std::vector<torch::Tensor> input{t.to(engine_->device)};
    std::vector<std::vector<torch::Tensor>> output(1);
    for (int r = 0; r < world_size_; ++r) output[0].push_back(torch::empty_like(input[0]));
    COLLECTIVE(what, engine_->group->allgather(output, input));
    for (auto& o : output[0]) o = o.to(torch::kCPU);
    return output[0];
  };
  const auto sizes = gather(torch::full({1}, static_cast<int64_t>(bytes.size()), torch::kLong));
  int64_t longest = 1;  // a tensor of no bytes cannot be sent
  for (const auto& s : sizes) longest = std::max(longest, s.item<int64_t>());
  auto data = torch::zeros({longest}, torch::kByte);
  std::memcpy(data.data_ptr(), bytes.data(), bytes.size());
  const auto all = gather(data);
  std::vector<std::string> out;
  for (int r = 0; r < world_size_; ++r)
    out.emplace_back(static_cast<const char*>(all[r].data_ptr()), static_cast<size_t>(sizes[r].item<int64_t>()));
  return out;
#else
  return {bytes};
#endif
}

void Distributed::check_identical(const std::vector<torch::Tensor>& tensors, const std::string& what) {
  if (!parallel()) return;
#ifdef VAE_EBM_HAVE_GLOO
  std::vector<torch::Tensor> input{torch::full({1}, fingerprint(tensors), torch::kLong).to(engine_->device)};
  ScopeTimer timer(collective_seconds_);
  std::vector<std::vector<torch::Tensor>> output(1);
  for (int r = 0; r < world_size_; ++r) output[0].push_back(torch::empty_like(input[0]));
  COLLECTIVE("the check that " + what + " are the same on all ranks", engine_->group->allgather(output, input));
  const int64_t reference = output[0][0].item<int64_t>();
  std::vector<int> differ;
  for (int r = 1; r < world_size_; ++r)
    if (output[0][r].item<int64_t>() != reference) differ.push_back(r);
  if (differ.empty()) return;
  std::string ranks;
  for (size_t i = 0; i < differ.size(); ++i) ranks += (i ? ", " : "") + std::to_string(differ[i]);
  throw DistributedError("the " + what + " of rank" + (differ.size() > 1 ? "s " : " ") + ranks +
                         " differ from rank 0's (data-parallel ranks must hold the same bits; a bug, or a rank "
                         "with another build, data or flags)");
#endif
}

void Distributed::barrier(const std::string& what) {
  if (!parallel()) return;
#ifdef VAE_EBM_HAVE_GLOO
  // A barrier is an all-reduce of one number: Gloo's own barrier cannot be given a name.
  all_reduce_sum({torch::zeros({1})}, what);
#endif
}

}  // namespace vae_ebm
