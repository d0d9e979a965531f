#pragma once
// Whole-file reads and crash-safe writes.
#include <cstdint>
#include <string>

namespace vae_ebm {

// Writes `bytes` to `path` atomically: a temporary file in the same directory is
// written, flushed and fsync'ed, then renamed over `path` (and the directory fsync'ed).
// A crash leaves either the old file or the new one, never a mix.
void atomic_write(const std::string& path, const std::string& bytes);
// Removes the temporary files that atomic_write left in `dir` when its process was killed
// mid-write, for targets whose name starts with `prefix` ("" for any). Only call it where no
// other process may be writing there. Returns how many were removed.
int remove_partial_writes(const std::string& dir, const std::string& prefix = "");

// Reads a whole file; throws DataError naming the file if it cannot.
std::string read_file(const std::string& path);

bool file_exists(const std::string& path);

// The memory this machine has available now, in bytes (MemAvailable of /proc/meminfo, else the
// free physical pages); 0 when unknown.
uint64_t available_memory_bytes();
// "2.3 GB"
std::string gigabytes(double bytes);

// Makes `dir` (and its parents) if missing, then creates and removes a file in it: throws
// DataError naming the directory and the cause (read-only, no space, not a directory) if it
// cannot. For commands that compute long before they write.
void check_writable(const std::string& dir);

}  // namespace vae_ebm
