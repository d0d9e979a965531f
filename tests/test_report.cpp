// vae-ebm report: the JSON reader, the SVG charts' coordinates, the paired gain, the tables'
// formats, and the command end to end on tiny runs (the page in a real browser:
// tests/browser/test_report.sh).
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>

#include "apps/cli.h"
#include "apps/command.h"
#include "apps/report.h"
#include "data/dataset.h"
#include "data/files.h"
#include "report/compare.h"
#include "report/html.h"
#include "report/json_read.h"
#include "report/run_files.h"
#include "report/run_page.h"
#include "report/svg.h"
#include "tests/support.h"

namespace vae_ebm::test {

using namespace vae_ebm::report;

// ---- JSON reader ------------------------------------------------------------------------------

TEST(ReportJson, ReadsEscapesNestingNullsAndExponents) {
  const auto v = parse_json(
      R"( {"s": "a\"b\\c\/d\n\tE\u00e9\ud83d\ude00", "n": [0, -2.5e-3, 1E+2, 12.75e1, null],
           "o": {"p": {"q": [true, false, null, []]}}, "e": {}, "dup": 1, "dup": 2} )");
  ASSERT_TRUE(v.is_object());
  EXPECT_EQ(v.text("s"), "a\"b\\c/d\n\tE\xc3\xa9\xf0\x9f\x98\x80");
  const auto& n = v.find("n")->as_array();
  ASSERT_EQ(n.size(), 5u);
  EXPECT_EQ(n[0].as_number(), 0);
  EXPECT_DOUBLE_EQ(n[1].as_number(), -0.0025);
  EXPECT_DOUBLE_EQ(n[2].as_number(), 100);
  EXPECT_DOUBLE_EQ(n[3].as_number(), 127.5);
  EXPECT_TRUE(n[4].is_null());
  EXPECT_TRUE(std::isnan(n[4].as_number())) << "null reads as NaN where a number is expected";
  const auto& q = v.find("o")->find("p")->find("q")->as_array();
  ASSERT_EQ(q.size(), 4u);
  EXPECT_TRUE(q[0].as_bool());
  EXPECT_FALSE(q[1].as_bool());
  EXPECT_TRUE(q[2].is_null());
  EXPECT_TRUE(q[3].as_array().empty());
  EXPECT_TRUE(v.find("e")->members().empty());
  EXPECT_EQ(v.number("dup"), 2) << "a repeated key reads as its last value";
  EXPECT_TRUE(std::isnan(v.number("absent")));
  EXPECT_EQ(v.text("absent", "fallback"), "fallback");
}

TEST(ReportJson, ReadsWhatTheWriterWrites) {
  // data/json.h writes NaN as null and numbers at full precision.
  const auto v = parse_json(R"({"event":"validation","step":975,"train_seconds":17.87352994099997,"b":null})");
  EXPECT_EQ(v.text("event"), "validation");
  EXPECT_EQ(v.number("step"), 975);
  EXPECT_EQ(v.number("train_seconds"), 17.87352994099997);
  EXPECT_TRUE(std::isnan(v.number("b")));
}

TEST(ReportJson, MalformedTextIsAnErrorThatSaysWhere) {
  EXPECT_THROW_WITH(parse_json(R"({"event":"train","step":12,"loss":1)"), "column 36: the text ends inside an object (truncated?)");
  EXPECT_THROW_WITH(parse_json(R"({"a": "unterminated)"), "ends inside a string");
  EXPECT_THROW_WITH(parse_json(R"({"a": 1.})"), "column 9: expected a digit after '.'");
  EXPECT_THROW_WITH(parse_json(R"({"a": "\x"})"), "unknown escape '\\x'");
  EXPECT_THROW_WITH(parse_json(R"({"a": 1} x)"), "unexpected 'x' after the value");
  EXPECT_THROW_WITH(parse_json("{\n  \"a\": tru\n}"), "line 2, column 8: expected 'true'");
  EXPECT_THROW_WITH(parse_json(R"({"a" 1})"), "expected ':' after the key \"a\"");
  EXPECT_THROW_WITH(parse_json("[1, 2"), "ends inside an array");
  EXPECT_THROW_WITH(parse_json(""), "ends inside a value");
  EXPECT_THROW_WITH(parse_json(std::string(100000, '[')), "nested deeper than");
  EXPECT_THROW_WITH(parse_json(R"({"a": 1})").as_array(), "expected an array, found an object");
}

TEST(ReportJson, JsonLinesLeaveOutAPartialLastLineButNotABadMiddleOne) {
  TempDir tmp;
  {
    std::ofstream(tmp.file("partial.jsonl")) << "{\"event\":\"train\",\"step\":1}\n\n{\"event\":\"train\",\"step\":2}\n{\"event\":\"tr";
    std::ofstream(tmp.file("bad.jsonl")) << "{\"step\":1}\n{\"step\":}\n{\"step\":3}\n";
  }
  const auto lines = read_json_lines(tmp.file("partial.jsonl"));
  ASSERT_EQ(lines.records.size(), 2u);
  EXPECT_EQ(lines.records[1].number("step"), 2);
  EXPECT_NE(lines.note.find("the last line (4) is incomplete"), std::string::npos) << lines.note;
  EXPECT_THROW_WITH(read_json_lines(tmp.file("bad.jsonl")), "bad.jsonl: line 2 is not valid JSON: column 9");
}

// ---- SVG charts -------------------------------------------------------------------------------

TEST(ReportSvg, TicksAreRoundAndCoverTheData) {
  auto expect_ticks = [](const std::vector<double>& ticks, const std::vector<double>& expected) {
    ASSERT_EQ(ticks.size(), expected.size());
    for (size_t i = 0; i < ticks.size(); ++i) EXPECT_NEAR(ticks[i], expected[i], 1e-12) << i;
  };
  expect_ticks(nice_ticks(0, 0.87), {0, 0.2, 0.4, 0.6, 0.8, 1.0});
  expect_ticks(nice_ticks(-113.4, -99.5), {-114, -112, -110, -108, -106, -104, -102, -100, -98});
  expect_ticks(nice_ticks(15, 53510), {0, 10000, 20000, 30000, 40000, 50000, 60000});
  const auto flat = nice_ticks(3, 3);  // one value: a small range around it
  EXPECT_LT(flat.front(), 3);
  EXPECT_GT(flat.back(), 3);
  EXPECT_EQ(tick_label(0.6000000000000001, 0.2), "0.6");
  EXPECT_EQ(tick_label(-110, 5), "-110");
  EXPECT_EQ(tick_label(2500000, 500000), "2.5e+06");
}

TEST(ReportSvg, PointsMapOntoThePlotArea) {
  Chart chart("loss", "step", "nats");
  Series s;
  s.name = "loss";
  s.x = {0, 5, 10};
  s.y = {100, std::nan(""), 50};
  chart.add(s);
  const auto xs = chart.x_scale(), ys = chart.y_scale();
  EXPECT_EQ(xs.lo, 0);
  EXPECT_EQ(xs.hi, 10);
  EXPECT_EQ(ys.lo, 50);
  EXPECT_EQ(ys.hi, 100);
  // The first point, (0, 100), is the plot area's top left; (10, 50) its bottom right.
  EXPECT_DOUBLE_EQ(xs(0), Chart::kLeft);
  EXPECT_DOUBLE_EQ(ys(100), Chart::kTop);
  EXPECT_DOUBLE_EQ(xs(10), 520 - Chart::kRight);
  EXPECT_DOUBLE_EQ(ys(50), 300 - Chart::kBottom);
  EXPECT_DOUBLE_EQ(ys(75), (Chart::kTop + 300.0 - Chart::kBottom) / 2);
  const auto svg = chart.svg();
  EXPECT_EQ(svg.rfind("<svg xmlns=\"http://www.w3.org/2000/svg\"", 0), 0u);
  // The NaN in the middle breaks the line: two pieces, each starting with M.
  EXPECT_NE(svg.find("d=\"M64.0 30.0M504.0 256.0\""), std::string::npos) << svg;
  EXPECT_NE(svg.find(">loss</text>"), std::string::npos) << "the legend names the series";
}

TEST(ReportSvg, TheBandIsShadedAroundTheLine) {
  Chart chart("bound", "step", "nats");
  Series s;
  s.name = "SNELBO_10 ± 1 s.e.";
  s.x = {0, 10};
  s.y = {-110, -100};
  s.band_low = {-111, -101};
  s.band_high = {-109, -99};
  chart.add(s);
  EXPECT_EQ(chart.y_scale().lo, -112);
  EXPECT_EQ(chart.y_scale().hi, -98);
  const auto svg = chart.svg();
  // Along the top (band_high) left to right, back along the bottom (band_low); a nat is
  // (256 - 30) / 14 pixels.
  EXPECT_NE(svg.find("class=\"band\" d=\"M64.0 207.6L504.0 46.1L504.0 78.4L64.0 239.9Z\""), std::string::npos) << svg;
  EXPECT_NE(svg.find("SNELBO_10 ± 1 s.e."), std::string::npos);
  EXPECT_TRUE(Chart("empty", "x", "y").empty());
  EXPECT_NE(xml_escape("a<b & \"c\"").find("a&lt;b &amp; &quot;c&quot;"), std::string::npos);
}

// ---- Paired gain and the comparison table ----------------------------------------------------

TEST(ReportCompare, PairedGainIsTheMeanDifferenceWithItsStandardErrors) {
  // Differences 0.5, 1, 0.5, 1: mean 0.75, sd (n - 1) sqrt(0.25 / 3), s.e. that / 2.
  const auto g = paired_gain({1, 2, 3, 4}, {0.5, 1, 2.5, 3}, 0.03, 0.04);
  EXPECT_DOUBLE_EQ(g.mean, 0.75);
  EXPECT_NEAR(g.se_differences, std::sqrt(0.25 / 3) / 2, 1e-12);
  EXPECT_NEAR(g.se_log_z, 0.05, 1e-12);
  EXPECT_NEAR(g.se_total, std::sqrt(0.25 / 3 / 4 + 0.0025), 1e-12);
  EXPECT_EQ(g.count, 4);
  EXPECT_THROW_WITH(paired_gain({1, 2}, {1, 2, 3}, 0, 0), "the run has 2 per-image values, the baseline 3");
  EXPECT_THROW_WITH(paired_gain({1, std::nan("")}, {1, 2}, 0, 0), "image 1 has a NaN or infinite bound");
  EXPECT_EQ(bound_kind("SNELBO_100"), "bound");
  EXPECT_EQ(bound_kind("SN-IWAE_10"), "importance-weighted");
  EXPECT_EQ(bound_kind("reconstruction_10"), "");
}

namespace {
EvaluatedRun evaluated(const std::string& label, const std::string& split, int images, const std::string& log_z,
                       const std::map<std::string, std::vector<double>>& per_image) {
  EvaluatedRun e;
  e.label = label;
  std::string estimates;
  for (const auto& [name, values] : per_image) {
    double mean = 0;
    for (double v : values) mean += v / values.size();
    estimates += std::string(estimates.empty() ? "" : ",") + R"({"estimator":")" + name + R"(","value":)" +
                 std::to_string(mean) + R"(,"std_error":0.5})";
  }
  e.record = parse_json(R"({"dataset":"hdf5:x.h5","split":")" + split + R"(","images":)" + std::to_string(images) +
                        (log_z.empty() ? "" : R"(,"log_z":{"value":0.2,"std_error":)" + log_z + "}") +
                        R"(,"estimates":[)" + estimates + "]}");
  e.per_image = per_image;
  return e;
}
}  // namespace

TEST(ReportCompare, TheTablePairsEachRunWithTheBaseline) {
  const std::vector<EvaluatedRun> runs = {
      evaluated("vae", "test", 4, "", {{"ELBO_5", {-10, -20, -30, -40}}, {"IWAE_5", {-9, -19, -29, -39}}}),
      evaluated("ebm", "test", 4, "0.04", {{"SNELBO_5", {-9.5, -19, -29.5, -39}}, {"SN-IWAE_5", {-8, -18, -28, -38}}})};
  const auto table = comparison_table(runs, 0);
  ASSERT_EQ(table.rows.size(), 4u);
  EXPECT_EQ(table.rows[0], (std::vector<std::string>{"vae", "ELBO_5", "-25.00 ± 0.50", "baseline", "", ""}));
  // Differences 0.5, 1, 0.5, 1 (as above); the baseline's exact prior adds no log Z error.
  const double se = std::sqrt(0.25 / 3 / 4 + 0.04 * 0.04);
  char gain[64];
  std::snprintf(gain, sizeof gain, "+0.75 ± %.2f", se);
  EXPECT_EQ(table.rows[1], (std::vector<std::string>{"ebm", "SNELBO_5", "-24.25 ± 0.50", gain, "0.144", "0.040"}));
  EXPECT_EQ(table.rows[3][1], "SN-IWAE_5");
  EXPECT_EQ(table.rows[3][3], "+1.00 ± 0.04");

  auto other_split = runs;
  other_split[1] = evaluated("ebm", "validation", 4, "", {{"SNELBO_5", {1, 2, 3, 4}}});
  EXPECT_THROW_WITH(comparison_table(other_split, 0),
                    "cannot compare ebm with vae: they were evaluated on different images (split 'validation' against 'test')");
  auto other_count = runs;
  other_count[1] = evaluated("ebm", "test", 3, "", {{"SNELBO_5", {1, 2, 3}}});
  EXPECT_THROW_WITH(comparison_table(other_count, 0), "(images 3 against 4)");
}

TEST(ReportTables, MarkdownAndLatexOfATwoRowTable) {
  Table t;
  t.caption = "Test bounds";
  t.header = {"run", "bound ± s.e.", "gain"};
  t.rows = {{"vae_1", "-95.40 ± 0.26", "baseline"}, {"a|b & 50%", "-94.12 ± 0.27", "+1.28 ± 0.02"}};
  EXPECT_EQ(t.markdown(),
            "Test bounds\n\n"
            "| run | bound ± s.e. | gain |\n"
            "|---|---:|---:|\n"
            "| vae_1 | -95.40 ± 0.26 | baseline |\n"
            "| a\\|b & 50% | -94.12 ± 0.27 | +1.28 ± 0.02 |\n");
  EXPECT_EQ(t.latex(),
            "\\begin{table}\n\\centering\n\\caption{Test bounds}\n"
            "\\begin{tabular}{lrr}\n\\toprule\n"
            "run & bound $\\pm$ s.e. & gain \\\\\n\\midrule\n"
            "vae\\_1 & -95.40 $\\pm$ 0.26 & baseline \\\\\n"
            "a|b \\& 50\\% & -94.12 $\\pm$ 0.27 & +1.28 $\\pm$ 0.02 \\\\\n"
            "\\bottomrule\n\\end{tabular}\n\\end{table}\n");
  EXPECT_NE(t.html().find("<td class=\"text\">a|b &amp; 50%</td><td>-94.12 ± 0.27</td>"), std::string::npos) << t.html();
  EXPECT_EQ(base64("Man"), "TWFu");
  EXPECT_EQ(base64("Ma"), "TWE=");
  EXPECT_EQ(base64("M"), "TQ==");
  EXPECT_EQ(table_format("latex"), TableFormat::Latex);
  EXPECT_THROW_WITH(table_format("pdf"), "--format must be one of html, markdown, latex, got 'pdf'");
}

// ---- A run's files ----------------------------------------------------------------------------

TEST(ReportRunFiles, EventsWarningsAndTheClockOfTrainRecords) {
  TempDir tmp;
  const auto run = tmp.file("run");
  std::filesystem::create_directories(run + "/evaluations");
  std::ofstream(run + "/config.ini") << "# comment\nrun-dir=" << run << "\nprior=ebm\nobjective=short-run-mcmc\n";
  std::ofstream(run + "/metrics.jsonl")
      << R"({"event":"train","step":50,"loss":120.5,"energy_negative":-1.5,"acceptance":0.8})" "\n"
      << R"({"event":"validation","step":100,"train_seconds":10,"validation":{"estimator":"SNELBO_10","value":-110,"std_error":0.3}})" "\n"
      << R"({"event":"diverged","step":130,"quantity":"training loss","value":1e12,"value_text":"1e+12","likely_cause":"--mcmc-step-size","action":"rollback","lowered":"--mcmc-step-size","was":0.4,"now":0.2})" "\n"
      << R"({"event":"train","step":150,"loss":110.25})" "\n"
      << R"({"event":"spike","step":160,"quantity":"training loss","value":1720.08,"median":94.7,"diagnostics":{"b":0.03,"log_z_hat":7.43}})" "\n"
      << R"({"event":"interrupted","step":200,"seconds":25,"train_seconds":30,"signal":"SIGTERM"})" "\n"
      << R"({"event":"resumed","step":200,"changed":{"epochs":{"was":"10","now":"20"}},"rolled_back_records":3,"skipped_checkpoints":[]})" "\n"
      << R"({"event":"train","step":250,"loss":105})" "\n";
  const std::string record =
      R"json({"dataset":"binary-mnist","split":"test","images":10000,"samples_K":100,"checkpoint":"c/best.pt","seconds":45.5,
          "warning":"WARNING: the log Z estimate has ESS 9 of 100000 samples (below 1%)",
          "log_z":{"estimator":"IS(base, S=100000)","value":0.44,"std_error":0.11,"count":100000,"ess":9},
          "estimates":[{"estimator":"SNELBO_100","value":-94.52,"std_error":0.27,"count":10000}]})json";
  std::ofstream(run + "/evaluations/binary-mnist.test.best.json") << record;
  std::ofstream(run + "/evaluation.json") << record;  // the same evaluation, written twice
  const auto files = read_run_files(run);
  EXPECT_EQ(files.config_value("prior"), "ebm");
  EXPECT_EQ(files.config_value("absent"), "");
  ASSERT_EQ(files.evaluations.size(), 1u) << "evaluation.json repeats evaluations/'s record";
  EXPECT_EQ(files.events("train").size(), 3u);

  // Train records carry no time: read off (0, 0), (100, 10 s) and (200, 30 s); none past 200.
  const StepClock clock(files);
  EXPECT_DOUBLE_EQ(clock.seconds_at(50), 5);
  EXPECT_DOUBLE_EQ(clock.seconds_at(150), 20);
  EXPECT_TRUE(std::isnan(clock.seconds_at(250)));

  const auto evaluations = evaluations_html(files);
  EXPECT_NE(evaluations.find("<p class=\"warning\">WARNING: the log Z estimate has ESS 9 of 100000"), std::string::npos)
      << evaluations;
  EXPECT_NE(evaluations.find("<td class=\"text\">SNELBO_100</td><td>-94.520</td><td>0.270</td>"), std::string::npos)
      << evaluations;
  EXPECT_NE(evaluations.find("<td>0.440</td><td>0.110</td><td>100000</td><td>9.0</td>"), std::string::npos) << evaluations;
  const auto events = events_html(files);
  EXPECT_NE(events.find("diverged at step 130: training loss = 1e+12; likely cause --mcmc-step-size; rolled back, "
                        "--mcmc-step-size lowered from 0.400000 to 0.200000"),
            std::string::npos)
      << events;
  EXPECT_NE(events.find("<li class=\"warning\">training loss spiked at step 160: 1720.08 against a median of 94.70 "
                        "(b 0.0300, log_z_hat 7.4300); the step was taken"),
            std::string::npos)
      << events;
  EXPECT_NE(events.find("interrupted at step 200 by SIGTERM"), std::string::npos) << events;
  EXPECT_NE(events.find("resumed at step 200; --epochs 10 → 20; 3 records of later steps moved"), std::string::npos)
      << events;
  EXPECT_NE(langevin_metrics_html(files).find("Langevin acceptance in training"), std::string::npos);
  EXPECT_THROW_WITH(read_run_files(tmp.file("nothing")), "no run directory");
  std::filesystem::create_directories(tmp.file("empty"));
  EXPECT_THROW_WITH(read_run_files(tmp.file("empty")), "is not a run directory: it has no config.ini");
}

// ---- The command, end to end -----------------------------------------------------------------

// Two tiny runs (a Gaussian VAE and an energy prior) on 3x4 binary images, evaluated once.
class ReportCommandTest : public ::testing::Test {
 protected:
  static inline TempDir* tmp = nullptr;
  static std::string file(const std::string& name) { return tmp->file(name); }
  static int train(const std::string& dir, const std::string& prior) {
    return command("train").run({"--dataset", "hdf5:" + file("data.h5"), "--hidden", "16", "--latent", "3", "--prior",
                                 prior, "--energy-hidden", "8,8", "--batch-size", "8", "--epochs", "2", "--eval-samples",
                                 "2", "--log-z-samples", "64", "--threads", "1", "--log-every", "1e-9", "--run-dir",
                                 file(dir)});
  }
  static int evaluate(const std::string& dir, std::vector<std::string> more = {}) {
    std::vector<std::string> args = {file(dir), "--samples", "4", "--log-z-samples", "256", "--threads", "1",
                                     "--quality-samples", "0"};
    args.insert(args.end(), more.begin(), more.end());
    return command("evaluate").run(args);
  }
  static void SetUpTestSuite() {
    torch::manual_seed(0);
    tmp = new TempDir();
    write_tiny_binary_data(file("data.h5"), 5);
    ASSERT_EQ(train("vae", "gaussian"), 0);
    ASSERT_EQ(train("ebm", "ebm"), 0);
    ASSERT_EQ(evaluate("vae"), 0);
    ASSERT_EQ(evaluate("ebm", {"--report"}), 0);
  }
  static void TearDownTestSuite() {
    delete tmp;
    tmp = nullptr;
  }
};

TEST_F(ReportCommandTest, EvaluateReportWritesTheRunsPage) {
  const auto html = read_file(file("ebm") + "/report.html");
  EXPECT_EQ(html.rfind("<!DOCTYPE html>", 0), 0u);
  for (const char* part : {"<h2>Run ebm</h2>", "Training loss", "Validation bound", "log Z and b", "Throughput",
                           "Langevin chains", "Latent space", "SNELBO_4", "data:image/png;base64,", "config.ini"})
    EXPECT_NE(html.find(part), std::string::npos) << part;
  EXPECT_EQ(html.find("http://"), html.find("http://www.w3.org/2000/svg")) << "no link out of the file but SVG's namespace";
  EXPECT_EQ(html.find("<script"), std::string::npos);
}

TEST_F(ReportCommandTest, TwoRunsGetAComparisonTable) {
  ASSERT_EQ(command("report").run({file("vae"), file("ebm"), "--out", file("both.html"), "--threads", "1"}), 0);
  const auto html = read_file(file("both.html"));
  EXPECT_NE(html.find("<table id=\"comparison\">"), std::string::npos);
  // Each row names its own estimator; the pairing is by position (SNELBO against ELBO).
  EXPECT_NE(html.find("SNELBO_4"), std::string::npos);
  EXPECT_EQ(html.find("SNELBO_4 - ELBO_4"), std::string::npos);
  EXPECT_NE(html.find("<table id=\"differing-flags\">"), std::string::npos);
  EXPECT_NE(html.find("<td class=\"text\">prior</td><td class=\"text\">gaussian</td><td class=\"text\">ebm</td>"),
            std::string::npos);

  ASSERT_EQ(command("report").run({file("vae"), file("ebm"), "--format", "markdown", "--out", file("table.md")}), 0);
  const auto markdown = read_file(file("table.md"));
  EXPECT_NE(markdown.find("| run | estimator | bound ± s.e. | gain over vae |"), std::string::npos) << markdown;
  EXPECT_NE(markdown.find("| ebm | SNELBO_4 | -8."), std::string::npos) << markdown;
  ASSERT_EQ(command("report").run({file("vae"), file("ebm"), "--format", "latex", "--baseline", file("ebm"), "--out",
                                   file("table.tex")}),
            0);
  EXPECT_NE(read_file(file("table.tex")).find("vae & ELBO\\_4 & -8."), std::string::npos)
      << read_file(file("table.tex"));
}

TEST_F(ReportCommandTest, RunsOfTheSameNameAreLabelledByTheirPathsLastParts) {
  for (const char* dir : {"x/first/same", "x/second/same"}) {
    std::filesystem::create_directories(file(dir));
    std::filesystem::copy(file("ebm"), file(dir), std::filesystem::copy_options::recursive);
  }
  ASSERT_EQ(command("report").run({file("vae"), file("x/first/same"), file("x/second/same"), "--format", "markdown",
                                   "--out", file("same.md")}),
            0);
  const auto markdown = read_file(file("same.md"));
  EXPECT_NE(markdown.find("| first/same | SNELBO_4 |"), std::string::npos) << markdown;
  EXPECT_NE(markdown.find("| second/same | SNELBO_4 |"), std::string::npos) << markdown;
  EXPECT_NE(markdown.find("| vae | ELBO_4 |"), std::string::npos) << markdown;
}

TEST_F(ReportCommandTest, BadInputIsAClearError) {
  EXPECT_THROW_WITH(command("report").run({file("no-such-run")}), "no run directory " + file("no-such-run"));
  EXPECT_THROW_WITH(command("report").run({file("vae"), "--format", "pdf"}),
                    "--format must be one of html, markdown, latex, got 'pdf'");
  EXPECT_THROW_WITH(command("report").run({file("vae"), file("ebm")}), "a report of several runs needs --out");
  EXPECT_THROW_WITH(command("report").run({}), "report needs at least one run directory");
  ASSERT_EQ(train("unevaluated", "gaussian"), 0);
  EXPECT_THROW_WITH(command("report").run({file("unevaluated"), "--threads", "1"}),
                    file("unevaluated") + " has no evaluation record");
  EXPECT_THROW_WITH(command("report").run({file("vae"), file("unevaluated"), "--format", "markdown"}),
                    file("unevaluated") + " has no evaluation.json to compare");
  // Evaluated on 4 of the 8 test images: not the same images as the other run's.
  ASSERT_EQ(evaluate("unevaluated", {"--limit", "4"}), 0);
  EXPECT_THROW_WITH(command("report").run({file("vae"), file("unevaluated"), "--format", "markdown"}),
                    "cannot compare unevaluated with vae: they were evaluated on different images (images 4 against 8)");
}

TEST_F(ReportCommandTest, APageForARunNotEvaluatedYetSaysSo) {
  ASSERT_EQ(train("fresh", "ebm"), 0);
  cli::CommonConfig common;
  common.threads = 1;
  common.data_dir = default_data_dir();
  cli::RunReportOptions options;
  options.require_evaluation = false;
  const auto path = cli::write_run_report(file("fresh"), common, options);
  EXPECT_EQ(path, file("fresh") + "/report.html");
  const auto html = read_file(path);
  EXPECT_NE(html.find("Not evaluated yet: vae-ebm evaluate"), std::string::npos);
  EXPECT_NE(html.find("metrics.jsonl holds no Langevin traces"), std::string::npos)
      << "SNELBO runs no chains in training, and the page says so";
}

}  // namespace vae_ebm::test
