// libFuzzer harness: what `vae-ebm report` reads from a run directory that is not the user's own
// (report/run_files.h): config.ini, metrics.jsonl and evaluation.json, parsed and drawn into the
// comparison table in every format. The input's first byte picks the file it becomes (0:
// config.ini, 1: metrics.jsonl, 2: evaluation.json); the others hold a small valid run's. A
// DataError (or any std::exception) is the expected answer to a bad file; a crash, a hang or an
// ASan report is a bug.
#include <sys/stat.h>

#include <cstdint>
#include <exception>
#include <fstream>
#include <string>

#include "fuzz/fuzz_support.h"
#include "report/compare.h"
#include "report/run_files.h"

namespace {

const char kConfig[] = "# vae-ebm resolved configuration (train)\ndataset=binary-mnist\nprior=ebm\nlatent=16\n";
const char kMetrics[] =
    "{\"event\":\"train\",\"step\":1,\"loss\":120.5}\n"
    "{\"event\":\"validation\",\"step\":4,\"epoch\":1,\"train_seconds\":1.5,\"validation_bound\":-100.25,\"best\":true}\n"
    "{\"event\":\"finished\",\"step\":4,\"seconds\":2,\"train_seconds\":1.5,\"best_validation_bound\":-100.25}\n";
const char kEvaluation[] =
    "{\"dataset\":\"binary-mnist\",\"split\":\"test\",\"checkpoint\":\"best\",\"images\":3,\"seconds\":1,"
    "\"estimates\":[{\"estimator\":\"SNELBO_2\",\"value\":-99.5,\"std_error\":1.25,\"count\":3,\"units\":\"nats\"},"
    "{\"estimator\":\"log Z IS(base, S=1000)\",\"value\":0.5,\"std_error\":0.01,\"count\":1000,\"ess\":900}]}\n";

void write(const std::string& path, const std::string& text) { std::ofstream(path, std::ios::binary) << text; }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& dir = vae_ebm::fuzz::temp_path("report");
  ::mkdir(dir.c_str(), 0755);
  const int which = size > 0 ? data[0] % 3 : 0;
  const std::string input(reinterpret_cast<const char*>(data) + (size > 0 ? 1 : 0), size > 0 ? size - 1 : 0);
  write(dir + "/config.ini", which == 0 ? input : kConfig);
  write(dir + "/metrics.jsonl", which == 1 ? input : kMetrics);
  write(dir + "/evaluation.json", which == 2 ? input : kEvaluation);
  try {
    const auto run = vae_ebm::report::read_run_files(dir);
    const vae_ebm::report::StepClock clock(run);
    (void)clock.seconds_at(3);
    // The per-image bounds come from an HDF5 file beside the record (fuzzed by fuzz/hdf5.cpp):
    // here three made-up values per bound the record names, compared with themselves.
    vae_ebm::report::EvaluatedRun e;
    e.label = "fuzz";
    if (run.evaluation_json) e.record = *run.evaluation_json;
    if (const auto* estimates = e.record.find("estimates"); estimates && estimates->is_array())
      for (const auto& estimate : estimates->as_array()) {
        const auto name = estimate.text("estimator");
        if (!vae_ebm::report::bound_kind(name).empty()) e.per_image[name] = {-1.0, -2.0, -4.0};
      }
    const auto table = vae_ebm::report::comparison_table({e, e}, 0);
    for (auto format : {vae_ebm::report::TableFormat::Html, vae_ebm::report::TableFormat::Markdown,
                        vae_ebm::report::TableFormat::Latex})
      (void)vae_ebm::report::printable(table.render(format));
  } catch (const std::exception& e) {
    vae_ebm::fuzz::refused(e);
  }
  return 0;
}
