#pragma once
// The subcommands as a table: each entry has its name, the line `vae-ebm --help` shows for
// it, and its entry point (parse the flags, then run). Each command is one file in apps/
// (train.cpp, evaluate.cpp, ...) that returns its entry; the table that lists them, the usage
// text and the dispatch are apps/commands.cpp. Adding a command: a new file, a line in that
// table, a line in apps/CMakeLists.txt.
#include <functional>
#include <utility>
#include <string>
#include <vector>

namespace vae_ebm::cli {

struct Command {
  std::string name;
  std::string summary;
  std::function<int(const std::vector<std::string>& args)> run;  // args exclude the command's name
};

// The entry of a command whose flags `parse` reads into a Config (false: --help was shown)
// and whose `run` takes that Config and returns the exit code.
template <class Config, class Run>
Command command_of(std::string name, std::string summary, bool (*parse)(const std::vector<std::string>&, Config&),
                   Run run) {
  return {std::move(name), std::move(summary), [parse, run](const std::vector<std::string>& args) {
            Config config;
            return parse(args, config) ? run(config) : 0;
          }};
}

// Every command, in the order `vae-ebm --help` lists them.
const std::vector<Command>& command_table();
// The command of that name in the table, or nullptr.
const Command* find_command(const std::string& name);
// The text of `vae-ebm --help`, made from the table.
std::string usage_text();

}  // namespace vae_ebm::cli
