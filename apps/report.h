#pragma once
// vae-ebm report: a look at one or more runs as one self-contained HTML page (charts drawn as
// inline SVG, images as data: URIs; report/ holds the pieces), or their comparison table in
// Markdown or LaTeX. Other commands write a run's page through write_run_report.
#include <cstdint>
#include <string>
#include <vector>

#include "apps/cli.h"

namespace vae_ebm::cli {

struct LoadedRun;

struct ReportConfig {
  CommonConfig common;
  std::vector<std::string> runs;
  std::string out;                  // html: default RUN/report.html for one run; markdown, latex: stdout
  std::string baseline;             // the run gains are measured against (default: the first)
  std::string format = "html";      // html | markdown | latex
  std::string checkpoint = "best";  // the model behind the images, chains and latent space
  double model_seconds = 60;        // time the model's sections may take per run, then left out
  uint64_t seed = 1;                // of the prior samples and chains drawn for the page
};

bool parse_report(const std::vector<std::string>& args, ReportConfig& config);
int run_report(const ReportConfig& config);

// One run's page, as `evaluate --report` (and train, fit-prior) write it.
struct RunReportOptions {
  std::string checkpoint = "best";
  // Where the evaluation records are (evaluate --out) and report.html goes; default the run
  // directory.
  std::string records_dir;
  // false: a run not evaluated yet gets a page that says so, rather than an error.
  bool require_evaluation = true;
  // The run as the calling command loaded it (of the run's own data set), so that the model
  // is not loaded twice; nullptr: loaded here.
  LoadedRun* loaded = nullptr;
};
// Writes RECORDS_DIR/report.html; returns its path.
std::string write_run_report(const std::string& run_dir, const CommonConfig& common, const RunReportOptions& options);

}  // namespace vae_ebm::cli
