// The one registry (common/registry.h) and the registries built on it: names in order,
// duplicates refused, unknown names answered with the value and every valid name.
#include <algorithm>
#include <regex>
#include <set>
#include <iterator>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>

#include "apps/cli.h"
#include "apps/run_support.h"
#include "common/options.h"
#include "prior/energy.h"
#include "common/registry.h"
#include "data/dataset.h"
#include "data/error.h"
#include "prior/objective.h"
#include "prior/prior.h"
#include "tests/support.h"
#include "vae/networks.h"

namespace vae_ebm::test {

TEST(RegistryTest, KeepsOrderRefusesDuplicatesAndNamesTheValidEntries) {
  Registry<int> r("widget");
  r.add("b", 2).add("a", 1);
  EXPECT_EQ(r.names(), (std::vector<std::string>{"b", "a"}));
  EXPECT_EQ(r.at("a"), 1);
  EXPECT_TRUE(r.contains("b"));
  EXPECT_FALSE(r.contains("c"));
  EXPECT_THROW(r.add("a", 3), std::logic_error);
  EXPECT_EQ(r.at("a"), 1) << "a refused duplicate leaves the first";
  EXPECT_THROW_WITH(r.at("c"), "unknown widget 'c' (valid: b, a)");
  EXPECT_EQ(first_line("one\ntwo"), "one");
}

TEST(RegistryTest, EveryChoiceByNameListsItselfInItsError) {
  EXPECT_THROW_WITH(make_objective("no-such"), "unknown objective 'no-such' (valid: " + join_names(objective_names()) + ")");
  EXPECT_THROW_WITH(make_prior(PriorOptions("flowy", 2)), "unknown prior 'flowy' (valid: gaussian, mog, ebm, flow)");
  EXPECT_THROW_WITH(make_encoder(NetworkOptions().architecture("resnet")), "unknown architecture 'resnet' (valid: mlp, conv)");
  DatasetOptions options;
  options.data_dir = "/nonexistent";
  try {
    load_dataset("cifar", options);
    ADD_FAILURE() << "an unknown data set was accepted";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("unknown data set 'cifar' (valid: binary-mnist, "), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("hdf5:PATH"), std::string::npos) << e.what();
  }
  EXPECT_THROW_WITH(cli::log_z_method_from_flag("guess", LogZSettings()), "unknown log-Z method 'guess' (valid: auto, is, flow, flow-ais, ais)");
  EXPECT_EQ(prior_kinds(), (std::vector<std::string>{"gaussian", "mog", "ebm", "flow"}));
}

TEST(RegistryTest, EveryObjectiveSaysWhichPriorsItSupports) {
  auto gaussian = make_prior(PriorOptions("gaussian", 2));
  auto mog = make_prior(PriorOptions("mog", 2));
  auto ebm = make_prior(PriorOptions("ebm", 2).set("energy-hidden", "4"));
  auto flow = make_prior(PriorOptions("flow", 2));
  for (const auto& name : objective_names()) {
    auto objective = make_objective(name);
    const bool energy = name != "exact";
    EXPECT_EQ(objective->supports(*ebm), energy) << name;
    EXPECT_EQ(objective->supports(*gaussian), !energy) << name;
    EXPECT_EQ(objective->supports(*mog), !energy) << name;
    EXPECT_EQ(objective->supports(*flow), !energy) << name;
    const auto& wrong = energy ? *gaussian : *ebm;
    EXPECT_THROW_WITH(objective->check(wrong), "objective '" + name + "' needs " + objective->requirement() +
                                                   ", not the '" + wrong.kind() + "' prior");
  }
  EXPECT_EQ(architectures(), (std::vector<std::string>{"mlp", "conv"}));
}

// Issue 27: an objective with an option of its own is its own code and one registration; its
// flag, help, parsing and validation come from the one declaration. This one lives in the test
// tree and registers itself as prior/objective.cpp registers the project's.
// Registered for the rest of the process: a run trained after it in the same process records
// test-tilt-weight in its config.ini, which the vae-ebm binary does not know. ctest runs each
// test in a process of its own; a whole-binary run should filter this test out or run it last.
namespace {

// An energy objective that trains f like SNELBO would not: the tilt weight times E_q[log p0 - f].
struct TiltOptions {
  TORCH_ARG(double, weight) = 0.5;

 public:
  void validate() const {
    if (!(weight_ >= 0 && weight_ <= 1)) throw OptionError("test-tilt-weight", "must be in [0, 1], got " + option_text(weight_));
  }
};

class TiltObjective : public PriorObjective {
 public:
  explicit TiltObjective(const TiltOptions& options) : options_(options) { options.validate(); }
  std::string name() const override { return "test-tilt"; }
  bool supports(const Prior& prior) const override { return is_energy_prior(prior); }
  std::string requirement() const override { return kEnergyPriorRequirement; }
  PriorTerm prior_term(Prior& prior, const DiagonalGaussian& q, const torch::Tensor& z, at::Generator&) override {
    return {options_.weight() * encoder_prior_term(as_energy_prior(prior), q, z), {}};
  }
  double weight() const { return options_.weight(); }

 private:
  TiltOptions options_;
};

void register_tilt_objective() {
  static const bool registered = [] {
    static const auto options = OptionSet<TiltOptions>().real(
        "test-tilt-weight", [](TiltOptions& o) -> double& { return o.weight(); }, "weight of the tilt, in [0, 1]");
    register_objective("test-tilt", {options.specs(), [](const OptionValues& values) -> std::unique_ptr<PriorObjective> {
                                       return std::make_unique<TiltObjective>(options.read(values));
                                     }});
    return true;
  }();
  (void)registered;
}

}  // namespace

TEST(RegistryTest, AnObjectiveWithAnOptionIsDeclaredOnceAndTheCommandLineFollows) {
  register_tilt_objective();
  const auto names = objective_names();
  ASSERT_NE(std::find(names.begin(), names.end(), "test-tilt"), names.end());
  // Its flag is in train's help, led by the objective that reads it, with its default.
  cli::TrainConfig help;
  testing::internal::CaptureStdout();
  EXPECT_FALSE(cli::parse_train({"--help"}, help));
  const auto text = testing::internal::GetCapturedStdout();
  EXPECT_NE(text.find("--test-tilt-weight arg (=0.5)"), std::string::npos) << text;
  EXPECT_NE(text.find("test-tilt: weight of the tilt"), std::string::npos) << text;
  // It parses, into the values the factory reads, and config.ini records it.
  cli::TrainConfig c;
  ASSERT_TRUE(cli::parse_train({"--prior", "ebm", "--objective", "test-tilt", "--test-tilt-weight", "0.25"}, c));
  ASSERT_NE(c.objective_values.find("test-tilt-weight"), nullptr);
  EXPECT_EQ(*c.objective_values.find("test-tilt-weight"), "0.25");
  EXPECT_NE(c.config_text.find("test-tilt-weight=0.25\n"), std::string::npos) << c.config_text;
  auto objective = make_objective(c.objective_name(), c.objective_values);
  EXPECT_DOUBLE_EQ(dynamic_cast<TiltObjective&>(*objective).weight(), 0.25);
  // A bad value is refused by the flag's name, before any run starts.
  cli::TrainConfig bad;
  EXPECT_THROW_WITH(cli::parse_train({"--prior", "ebm", "--objective", "test-tilt", "--test-tilt-weight", "2"}, bad),
                    "--test-tilt-weight: must be in [0, 1], got 2");
  EXPECT_THROW_WITH(cli::parse_train({"--prior", "ebm", "--objective", "test-tilt", "--test-tilt-weight", "x"}, bad),
                    "test-tilt-weight");
  // Declared again unlike the first declaration, a shared option is a programming error.
  EXPECT_THROW(register_objective("test-tilt-2", {{OptionSpec{"test-tilt-weight", OptionType::real, "0.7", "other"}},
                                                  [](const OptionValues&) -> std::unique_ptr<PriorObjective> {
                                                    return nullptr;
                                                  }}),
               std::logic_error);
}

// Every objective option is a flag of train and fit-prior, once, and an option that no
// objective declares is refused by name rather than ignored.
TEST(RegistryTest, EveryObjectiveOptionIsAFlagOnce) {
  cli::TrainConfig help;
  testing::internal::CaptureStdout();
  EXPECT_FALSE(cli::parse_train({"--help"}, help));
  const auto text = testing::internal::GetCapturedStdout();
  for (const auto& option : all_objective_options()) {
    const auto flag = "\n  --" + option.spec.name + " ";  // a flag's own line, not a mention in a help text
    const auto first = text.find(flag);
    EXPECT_NE(first, std::string::npos) << flag;
    EXPECT_EQ(text.find(flag, first + 1), std::string::npos) << flag << " twice";
  }
  EXPECT_THROW_WITH(make_objective("snelbo", OptionValues().set("base-sample", 3)),
                    "'base-sample' is not an option of any objective");
}

// The README's train table has a row for every objective option, with the declared default
// (run from the source tree, as ctest runs the suite).
TEST(RegistryTest, TheReadmeTablesEveryObjectiveOptionWithItsDefault) {
  std::ifstream in("README.md");
  ASSERT_TRUE(in) << "README.md (the tests run in the source tree)";
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  // The train section's table (the "Work sizes" table before it names some of these flags too).
  const auto train = std::find(lines.begin(), lines.end(), "### `vae-ebm train [flags]`");
  ASSERT_NE(train, lines.end()) << "README.md has no train section";
  for (const auto& option : all_objective_options()) {
    const auto& spec = option.spec;
    if (spec.name.rfind("test-", 0) == 0) continue;  // the test tree's own
    const std::string lead = "| `--" + spec.name + "` |";
    auto row = std::find_if(train, lines.end(), [&](const std::string& l) { return l.rfind(lead, 0) == 0; });
    ASSERT_NE(row, lines.end()) << "README.md has no row " << lead;
    auto cell = row->substr(lead.size());
    cell = cell.substr(0, cell.find('|'));
    cell.erase(std::remove(cell.begin(), cell.end(), '`'), cell.end());
    cell.erase(0, cell.find_first_not_of(' '));
    cell.erase(cell.find_last_not_of(' ') + 1);
    if (cell == "off") cell = "false";
    if (cell == "on") cell = "true";
    if (spec.type == OptionType::real || spec.type == OptionType::integer)
      EXPECT_DOUBLE_EQ(std::stod(cell), std::stod(spec.default_text)) << spec.name;
    else
      EXPECT_EQ(cell, spec.default_text) << spec.name;
  }
}

// Every docs/MATH.md section the code cites ("MATH.md section 8.4", "docs/MATH.md 3") is a
// heading of docs/MATH.md (run from the source tree, as ctest runs the suite).
TEST(RegistryTest, EveryMathSectionTheCodeCitesExists) {
  std::ifstream math("docs/MATH.md");
  ASSERT_TRUE(math) << "docs/MATH.md";
  std::set<std::string> headings;
  const std::regex heading(R"(^#+ ([0-9]+(\.[0-9]+)?)[ .a-z])");
  for (std::string line; std::getline(math, line);) {
    std::smatch m;
    if (std::regex_search(line, m, heading)) headings.insert(m[1]);
  }
  const std::regex cite(R"(MATH\.md,?( section)? ([0-9]+(\.[0-9]+)?))");
  int cited = 0;
  for (const char* dir : {"apps", "common", "data", "estimators", "prior", "report", "vae", "bench", "scripts"}) {
    for (const auto& entry : std::filesystem::recursive_directory_iterator(dir)) {
      const auto ext = entry.path().extension().string();
      if (!entry.is_regular_file() || (ext != ".cpp" && ext != ".h" && ext != ".sh" && ext != ".py")) continue;
      std::ifstream in(entry.path());
      const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      for (std::sregex_iterator it(text.begin(), text.end(), cite), end; it != end; ++it, ++cited)
        EXPECT_TRUE(headings.count((*it)[2])) << entry.path() << " cites MATH.md " << (*it)[2];
    }
  }
  EXPECT_GT(cited, 10) << "the citations were not found: is the suite running in the source tree?";
}

}  // namespace vae_ebm::test
