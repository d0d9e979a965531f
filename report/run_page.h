#pragma once
// The sections of a report that come from a run's files alone (run_files.h): its summary,
// events, evaluation tables, training curves, Langevin diagnostics and configuration, each as
// an HTML fragment. The sections that need the model (images, chains, latent space) are made
// by apps/report.cpp.
#include <string>
#include <vector>

#include "report/run_files.h"
#include "report/svg.h"

namespace vae_ebm::report {

// <figure> around a chart or image, with its caption; `kind` ("chart" or "image") is its
// class, which the browser test counts.
std::string figure(const std::string& content, const std::string& caption, const std::string& kind);
// A figure of the chart's SVG, or a note saying what is missing when it has no points.
std::string chart_figure(const Chart& chart, const std::string& caption, const std::string& missing);
// <p class="note">.
std::string note(const std::string& text);

std::string summary_html(const RunFiles& run);
// The diverged, resumed, interrupted and initialised events, and a partial metrics line.
std::string events_html(const RunFiles& run);
// A table per evaluation record, its warning (low ESS) shown above it.
std::string evaluations_html(const RunFiles& run);
// Training loss and validation bound against steps and seconds, log Z, b and ESS at each
// validation (energy priors), throughput.
std::string training_html(const RunFiles& run);
// The Langevin diagnostics the MCMC objectives record in training, or a note that there are none.
std::string langevin_metrics_html(const RunFiles& run);
std::string config_html(const RunFiles& run);
// Several runs' validation bounds (with their standard-error bands) on one chart.
std::string validation_overlay_html(const std::vector<const RunFiles*>& runs, const std::vector<std::string>& labels);

// Whether the run's prior is an energy prior (config.ini's prior=ebm).
bool is_energy_prior(const RunFiles& run);

}  // namespace vae_ebm::report
