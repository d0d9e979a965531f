// The one registry (common/registry.h) and the registries built on it: names in order,
// duplicates refused, unknown names answered with the value and every valid name.
#include <functional>
#include <string>

#include "apps/run_support.h"
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
  EXPECT_THROW_WITH(make_objective("no-such", ObjectiveOptions()),
                    "unknown objective 'no-such' (valid: exact, snelbo, short-run-mcmc, long-run-mcmc, nce, fce, "
                    "score-matching)");
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
  EXPECT_THROW_WITH(cli::log_z_method("guess", cli::LogZSettings()), "unknown log-Z method 'guess' (valid: auto, is, flow, flow-ais, ais)");
  EXPECT_EQ(prior_kinds(), (std::vector<std::string>{"gaussian", "mog", "ebm", "flow"}));
}

TEST(RegistryTest, EveryObjectiveSaysWhichPriorsItSupports) {
  auto gaussian = make_prior(PriorOptions("gaussian", 2));
  auto mog = make_prior(PriorOptions("mog", 2));
  auto ebm = make_prior(PriorOptions("ebm", 2).energy_hidden({4}));
  auto flow = make_prior(PriorOptions("flow", 2));
  for (const auto& name : objective_names()) {
    auto objective = make_objective(name, ObjectiveOptions());
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

}  // namespace vae_ebm::test
