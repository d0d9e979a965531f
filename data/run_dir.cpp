// Run directories (see run_dir.h).
#include "data/run_dir.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <system_error>
#include <utility>

#include "data/error.h"
#include "data/json.h"

namespace fs = std::filesystem;

namespace vae_ebm {
namespace {

// step-NNNNNNNNN.pt, with at least nine digits.
bool parse_step(const std::string& name, uint64_t& step) {
  const std::string prefix = "step-", suffix = ".pt";
  if (name.size() < prefix.size() + 9 + suffix.size()) return false;
  if (name.compare(0, prefix.size(), prefix) != 0) return false;
  if (name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0) return false;
  const std::string digits = name.substr(prefix.size(), name.size() - prefix.size() - suffix.size());
  if (digits.size() > 19) return false;
  for (const char c : digits) {
    if (c < '0' || c > '9') return false;
  }
  step = std::stoull(digits);
  return true;
}

}  // namespace

RunDir RunDir::open(const std::string& path) {
  std::error_code ec;
  if (!fs::is_directory(path, ec)) {
    throw DataError("not a run directory: " + path + " does not exist or is not a directory");
  }
  if (!fs::is_regular_file(fs::path(path) / "config.ini", ec)) {
    throw DataError("not a run directory: " + path + " has no config.ini");
  }
  return RunDir(path);
}

RunDir RunDir::create(const std::string& path) {
  if (path.empty()) throw DataError("RunDir::create: empty path");
  std::error_code ec;
  if (fs::exists(path, ec)) {
    if (!fs::is_directory(path, ec)) {
      throw DataError("cannot create run directory " + path + ": it exists and is not a directory");
    }
    if (!fs::is_empty(path, ec)) {
      throw DataError("cannot create run directory " + path +
                      ": it exists and is not empty (choose a new --run-dir, or remove it)");
    }
  }
  fs::create_directories(fs::path(path) / "checkpoints", ec);
  if (ec) throw DataError("cannot create run directory " + path + ": " + ec.message());
  return RunDir(path);
}

std::string RunDir::file(const std::string& name) const { return path_ + "/" + name; }

void RunDir::append_metrics(const Json& record) const {
  const std::string path = file("metrics.jsonl");
  const std::string line = record.dump() + "\n";
  FILE* f = std::fopen(path.c_str(), "a");
  if (f == nullptr) throw DataError("cannot open " + path + ": " + std::strerror(errno));
  const bool ok = std::fwrite(line.data(), 1, line.size(), f) == line.size() && std::fflush(f) == 0;
  const int err = errno;
  const bool closed = std::fclose(f) == 0;
  if (!ok || !closed) throw DataError("cannot append to " + path + ": " + std::strerror(err));
}

std::string RunDir::checkpoint_path(int64_t step) const {
  if (step < 0) throw DataError("negative checkpoint step " + std::to_string(step));
  char name[48];
  std::snprintf(name, sizeof name, "step-%09lld.pt", static_cast<long long>(step));
  return path_ + "/checkpoints/" + name;
}

std::string RunDir::best_checkpoint_path() const { return path_ + "/checkpoints/best.pt"; }

std::vector<std::string> RunDir::checkpoints() const {
  std::vector<std::pair<uint64_t, std::string>> found;
  const fs::path dir = fs::path(path_) / "checkpoints";
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return {};
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    uint64_t step = 0;
    const std::string name = it->path().filename().string();
    if (parse_step(name, step) && it->is_regular_file(ec)) {
      found.emplace_back(step, path_ + "/checkpoints/" + name);
    }
  }
  if (ec) throw DataError("cannot list " + dir.string() + ": " + ec.message());
  // By step number (the same as by name while steps have nine digits).
  std::sort(found.begin(), found.end());
  std::vector<std::string> out;
  out.reserve(found.size());
  for (auto& entry : found) out.push_back(std::move(entry.second));
  return out;
}

void RunDir::prune_checkpoints(int keep) const {
  if (keep < 0) throw DataError("prune_checkpoints: keep must be >= 0, got " + std::to_string(keep));
  const std::vector<std::string> all = checkpoints();
  if (all.size() <= static_cast<size_t>(keep)) return;
  const size_t remove = all.size() - static_cast<size_t>(keep);
  for (size_t i = 0; i < remove; ++i) {
    std::error_code ec;
    fs::remove(all[i], ec);
    if (ec) throw DataError("cannot remove checkpoint " + all[i] + ": " + ec.message());
  }
}

}  // namespace vae_ebm
