#pragma once
// Comparing evaluated runs: the paired gain of one run's per-image bounds over a baseline's
// on the same images (bench/paired.py's arithmetic), and the comparison table built from it.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "report/html.h"
#include "report/json_read.h"

namespace vae_ebm::report {

// "bound" for ELBO_K and SNELBO_K, "importance-weighted" for IWAE_K and SN-IWAE_K, "" for
// any other name (reconstruction_K, KL_K).
std::string bound_kind(const std::string& estimator);

struct PairedGain {
  double mean = 0;            // mean over the images of run - baseline
  double se_differences = 0;  // standard error of the per-image differences (n - 1 in the variance)
  double se_log_z = 0;        // both runs' log Z standard errors in quadrature
  double se_total = 0;        // the two above in quadrature
  int64_t count = 0;
};

// The images are the same, so the error of the difference is that of the per-image
// differences, far smaller than either bound's own. A bound that holds one log Z estimate
// fixed over the split shifts every image alike: that estimate's standard error (0 for a
// prior with an exact density) is added in quadrature. Throws DataError when the lengths
// differ, there are fewer than 2 images, or a value is NaN or infinite.
PairedGain paired_gain(const std::vector<double>& run, const std::vector<double>& baseline, double run_log_z_se,
                       double baseline_log_z_se);

// A run's evaluation, as the comparison reads it: its record (evaluation.json) and the
// per-image bounds beside it (evaluation-SPLIT.h5), by estimator name.
struct EvaluatedRun {
  std::string label;                // the run as the table names it
  JsonValue record;                 // evaluation.json
  std::map<std::string, std::vector<double>> per_image;
  std::string binarisation_seed;    // from config.ini ("" if unknown): other bits, other images
  // The standard error of the log Z estimate the bounds hold fixed (0 without one).
  double log_z_std_error() const;
};

// Throws DataError naming both runs and what differs when `run` was not evaluated on the
// baseline's images: another data set, split, number of images, data fingerprint or
// binarisation seed.
void check_same_images(const EvaluatedRun& run, const EvaluatedRun& baseline);

// One row per run and kind of bound (the K-sample bound first, then the importance-weighted
// one): the bound with its standard error, and its paired gain over runs[baseline] with the
// error of the differences, the log Z errors and the two together. Checks check_same_images
// for every run.
Table comparison_table(const std::vector<EvaluatedRun>& runs, size_t baseline);

}  // namespace vae_ebm::report
