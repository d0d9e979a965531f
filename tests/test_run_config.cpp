// config.ini's one reader and writer (data/run_config.h): what train writes, a rollback edits,
// resume rewrites and report reads.
#include "data/run_config.h"
#include "tests/support.h"

namespace vae_ebm::test {

const char* const kConfig =
    "# vae-ebm 0.1.0 resolved configuration (train)\n"
    "# Repeat this run with: vae-ebm train --config THIS_FILE --run-dir NEW_DIR\n"
    "run-dir=runs/a\n"
    "prior=ebm\n"
    "hidden=512,512\n"
    "\n"
    "dataset=hdf5:/data/x=y.h5\n";

TEST(RunConfigTest, ReadsWhatTrainWritesAndWritesItBackUnchanged) {
  RunConfig config(kConfig);
  EXPECT_EQ(config.text(), kConfig);
  EXPECT_EQ(config.value("prior"), "ebm");
  EXPECT_EQ(config.value("dataset"), "hdf5:/data/x=y.h5");  // the first '=' ends the key
  EXPECT_EQ(config.value("absent"), "");
  EXPECT_FALSE(config.has("absent"));
  EXPECT_FALSE(config.has(""));
  const auto entries = config.entries();
  ASSERT_EQ(entries.size(), 4u);
  EXPECT_EQ(entries[0], (std::pair<std::string, std::string>{"run-dir", "runs/a"}));
  EXPECT_EQ(entries[3].first, "dataset");
  EXPECT_EQ(RunConfig("a=1").text(), "a=1\n");  // the last line gains its newline
}

TEST(RunConfigTest, SetReplacesTheKeysLineOrAddsOneAndCommentsFollowTheHeader) {
  RunConfig config(kConfig);
  config.set("prior", "mog").set("lr", "0.0005");
  EXPECT_EQ(config.value("prior"), "mog");
  EXPECT_EQ(config.entries().size(), 5u);
  EXPECT_EQ(config.entries().back(), (std::pair<std::string, std::string>{"lr", "0.0005"}));
  config.add_comments({"BLAS kernel: Zen", "data: binary-mnist sha256 42fb (files)"});
  const auto text = config.text();
  EXPECT_NE(text.find("NEW_DIR\n# BLAS kernel: Zen\n# data: binary-mnist sha256 42fb (files)\nrun-dir=runs/a\n"),
            std::string::npos)
      << text;
  EXPECT_EQ(config.comment("data: "), "data: binary-mnist sha256 42fb (files)");
  EXPECT_EQ(config.comment("nothing: "), "");
  EXPECT_EQ(RunConfig().add_comments({"only"}).set("k", "v").text(), "# only\nk=v\n");
}

}  // namespace vae_ebm::test
