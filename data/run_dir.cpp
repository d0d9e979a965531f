// Run directories (see run_dir.h).
#include "data/run_dir.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <system_error>
#include <utility>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/error.h"
#include "data/files.h"
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

bool unstarted_run(const std::string& path) {
  std::error_code ec;
  if (fs::exists(fs::path(path) / "config.ini", ec)) return false;
  bool partial = false;
  for (const auto& entry : fs::directory_iterator(path, ec)) {
    const auto name = entry.path().filename().string();
    if (name == "checkpoints" && entry.is_directory() && fs::is_empty(entry.path(), ec)) continue;
    if (name == ".lock" && entry.is_regular_file()) continue;
    if (name.rfind("config.ini.tmp-", 0) == 0 && entry.is_regular_file()) {
      partial = true;
      continue;
    }
    return false;
  }
  return partial;
}

RunDir RunDir::create(const std::string& path) {
  if (path.empty()) throw DataError("RunDir::create: empty path");
  std::error_code ec;
  if (fs::exists(path, ec)) {
    if (!fs::is_directory(path, ec)) {
      throw DataError("cannot create run directory " + path + ": it exists and is not a directory");
    }
    if (!fs::is_empty(path, ec)) {
      if (!unstarted_run(path))
        throw DataError("cannot create run directory " + path +
                        ": it exists and is not empty (choose another run directory, or remove it)");
      // A run killed before its config.ini was whole: nothing of it is worth keeping. Its
      // partial writes go (under the run's lock, so that a live run's are never touched).
      const auto held = RunDir(path).lock();
      remove_partial_writes(path);
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
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) throw DataError("cannot open " + path + ": " + std::strerror(errno));
  struct stat before {};
  const bool sized = ::fstat(fd, &before) == 0;
  size_t done = 0;
  int err = 0;
  while (done < line.size()) {
    const ssize_t n = ::write(fd, line.data() + done, line.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      err = n < 0 ? errno : EIO;
      break;
    }
    done += static_cast<size_t>(n);
  }
  if (err != 0 && sized && ::ftruncate(fd, before.st_size) != 0) {
    // The cut failed too: the next open (repair_metrics) drops the partial line.
  }
  ::close(fd);
  if (err != 0) throw DataError("cannot append to " + path + ": " + std::strerror(err));
}

int64_t RunDir::repair_metrics() const {
  const std::string path = file("metrics.jsonl");
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return 0;
  const auto size = static_cast<int64_t>(fs::file_size(path, ec));
  if (ec || size == 0) return 0;
  FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) throw DataError("cannot read " + path + ": " + std::strerror(errno));
  // Find the last newline, reading backwards in blocks.
  int64_t keep = 0;
  char buf[4096];
  for (int64_t end = size; end > 0 && keep == 0;) {
    const int64_t start = std::max<int64_t>(0, end - static_cast<int64_t>(sizeof buf));
    std::fseek(f, static_cast<long>(start), SEEK_SET);
    const size_t n = std::fread(buf, 1, static_cast<size_t>(end - start), f);
    for (int64_t i = static_cast<int64_t>(n) - 1; i >= 0; --i)
      if (buf[i] == '\n') {
        keep = start + i + 1;
        break;
      }
    end = start;
  }
  std::fclose(f);
  if (keep == size) return 0;
  fs::resize_file(path, static_cast<uintmax_t>(keep), ec);
  if (ec) throw DataError("cannot cut the partial last line of " + path + ": " + ec.message());
  return size - keep;
}

namespace {
// The value of a top-level "key": in one of our compact JSON lines ("" if absent).
std::string field(const std::string& line, const std::string& key) {
  const std::string needle = "\"" + key + "\":";
  const auto at = line.find(needle);
  if (at == std::string::npos) return "";
  auto begin = at + needle.size();
  auto end = begin;
  if (begin < line.size() && line[begin] == '"') {
    end = line.find('"', begin + 1);
    return end == std::string::npos ? "" : line.substr(begin + 1, end - begin - 1);
  }
  while (end < line.size() && line[end] != ',' && line[end] != '}') ++end;
  return line.substr(begin, end - begin);
}
}  // namespace

int64_t RunDir::roll_back_metrics(int64_t step) const {
  const std::string path = file("metrics.jsonl");
  if (!file_exists(path)) return 0;
  const std::string text = read_file(path);
  std::string kept, moved;
  int64_t count = 0;
  for (size_t begin = 0; begin < text.size();) {
    auto end = text.find('\n', begin);
    end = end == std::string::npos ? text.size() : end + 1;
    const std::string line = text.substr(begin, end - begin);
    begin = end;
    const auto event = field(line, "event");
    const auto at = field(line, "step");
    char* stop = nullptr;
    const long long line_step = at.empty() ? -1 : std::strtoll(at.c_str(), &stop, 10);
    if ((event == "train" || event == "validation") && line_step > step) {
      moved += line;
      ++count;
    } else {
      kept += line;
    }
  }
  if (count == 0) return 0;
  // The moved records first, so that a process killed in between loses none.
  const std::string aside = file("metrics.rolled-back.jsonl");
  std::string before = file_exists(aside) ? read_file(aside) : std::string();
  atomic_write(aside, before + moved);
  atomic_write(path, kept);
  return count;
}

RunDir::Lock::~Lock() {
  if (fd_ >= 0) ::close(fd_);  // closing releases the flock
}

RunDir::Lock RunDir::lock() const {
  const std::string path = file(".lock");
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) throw DataError("cannot open " + path + ": " + std::strerror(errno));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    char pid[32] = {0};
    const ssize_t n = ::pread(fd, pid, sizeof pid - 1, 0);
    ::close(fd);
    throw DataError("run directory " + path_ + " is in use by another vae-ebm process" +
                    (n > 0 ? std::string(" (pid ") + std::string(pid, static_cast<size_t>(n)) + ")" : std::string()) +
                    "; wait for it to end, or stop it first");
  }
  const std::string me = std::to_string(::getpid());
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, me.data(), me.size(), 0) < 0) {
    // The pid is only for the message above; the lock holds without it.
  }
  return Lock(fd);
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
