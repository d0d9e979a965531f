// A run directory that no input can wreck (issue 26): for each hostile input, every file of a
// run directory that existed before is byte-identical after the command, which fails with an
// error naming what was wrong; and a checkpoint load is all or nothing.
#include <H5Cpp.h>
#include <sys/stat.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>
#include <map>

#include "apps/cli.h"
#include "apps/command.h"
#include "apps/flags.h"
#include "data/files.h"
#include "data/hdf5_io.h"
#include "data/idx.h"
#include "data/archive.h"
#include "report/run_files.h"
#include "report/html.h"
#include "data/run_dir.h"
#include "data/sha256.h"
#include "tests/support.h"
#include "vae/trainer.h"

namespace vae_ebm::test {

namespace fs = std::filesystem;

namespace {

// Every regular file under `dir` (relative path) with its SHA-256.
std::map<std::string, std::string> tree(const std::string& dir) {
  std::map<std::string, std::string> out;
  for (const auto& entry : fs::recursive_directory_iterator(dir))
    if (entry.is_regular_file()) out[fs::relative(entry.path(), dir).string()] = sha256_hex(read_file(entry.path()));
  return out;
}

void expect_same_tree(const std::map<std::string, std::string>& before, const std::string& dir) {
  const auto after = tree(dir);
  for (const auto& [name, digest] : before) {
    auto it = after.find(name);
    if (it == after.end()) ADD_FAILURE() << name << " is gone";
    else EXPECT_EQ(it->second, digest) << name << " changed";
  }
  for (const auto& [name, digest] : after)
    EXPECT_TRUE(before.count(name)) << name << " appeared";
}

}  // namespace

class RunIntegrityTest : public SeedingFixture {
 protected:
  static inline TempDir* tmp = nullptr;
  static std::string file(const std::string& name) { return tmp->file(name); }
  static std::vector<std::string> args(std::map<std::string, std::string> flags) {
    std::map<std::string, std::string> all = {{"dataset", "hdf5:" + file("data.h5")}, {"hidden", "16"}, {"latent", "3"},
                                              {"batch-size", "8"}, {"epochs", "2"}, {"eval-samples", "2"},
                                              {"log-z-samples", "64"}, {"threads", "1"}, {"log-every", "1000"},
                                              {"validation-ais-chains", "8"}, {"validation-ais-temperatures", "5"}};
    for (const auto& [k, v] : flags) all[k] = v;
    std::vector<std::string> out;
    for (const auto& [flag, value] : all) {
      if (value == "-") continue;  // a default flag left out
      out.push_back("--" + flag);
      out.push_back(value);
    }
    return out;
  }
  static int train(const std::map<std::string, std::string>& flags) { return command("train").run(args(flags)); }
  static int resume(const std::string& dir) { return command("train").run({"--resume", dir, "--threads", "1"}); }
  // An energy-prior run, trained once for the suite; each test works on a copy.
  static std::string trained_copy(const std::string& name) {
    const auto dir = file(name);
    fs::copy(file("ebm"), dir, fs::copy_options::recursive);
    return dir;
  }
  static void SetUpTestSuite() {
    tmp = new TempDir();
    write_tiny_binary_data(file("data.h5"), 7);
    ASSERT_EQ(train({{"run-dir", file("ebm")}, {"prior", "ebm"}, {"energy-hidden", "8"}}), 0);
    ASSERT_EQ(train({{"run-dir", file("wide")}, {"prior", "ebm"}, {"energy-hidden", "8"}, {"hidden", "12"}}), 0);
    ASSERT_EQ(train({{"run-dir", file("mog")}, {"prior", "mog"}}), 0);
  }
  static void TearDownTestSuite() {
    delete tmp;
    tmp = nullptr;
  }
};

// Issue 26, finding 1: `resume=RUN` in a --config file used to skip every resume check, build the
// model from the file's flags, set the run's checkpoints aside as corrupt and overwrite best.pt.
TEST_F(RunIntegrityTest, ResumeInAConfigFileIsRefusedAndTheRunIsUntouched) {
  const auto dir = trained_copy("config-resume");
  const auto before = tree(dir);
  const auto config = file("resume.ini");
  std::ofstream(config) << "resume=" << dir << "\ndataset=hdf5:" << file("data.h5") << "\nhidden=12\nlatent=3\n"
                        << "prior=mog\nthreads=1\n";
  EXPECT_THROW_WITH(command("train").run({"--config", config}),
                    "sets 'resume', which only the command line may give");
  expect_same_tree(before, dir);
  // Nor may a run's own config.ini name another run to resume, or another config file.
  std::ofstream(dir + "/config.ini", std::ios::app) << "config=" << config << "\n";
  const auto edited = tree(dir);
  EXPECT_THROW_WITH(resume(dir), "sets 'config'");
  expect_same_tree(edited, dir);
}

// Finding 2: a checkpoint of another configuration (copied in from a run with other widths) is a
// configuration error naming both sides; nothing is set aside as corrupt.
TEST_F(RunIntegrityTest, ACheckpointOfAnotherConfigurationIsAnErrorNotDamage) {
  const auto dir = trained_copy("copied-in");
  const auto wide = RunDir::open(file("wide")).checkpoints().back();
  fs::copy_file(wide, dir + "/checkpoints/step-000000099.pt");
  const auto before = tree(dir);
  const auto message = thrown_message([&] { resume(dir); });
  EXPECT_NE(message.find("step-000000099.pt does not fit"), std::string::npos) << message;
  EXPECT_NE(message.find(dir + "/config.ini"), std::string::npos) << message;
  EXPECT_NE(message.find("has shape [12, 12] in the checkpoint where the model has [16, 12]"), std::string::npos)
      << message;
  EXPECT_NE(message.find("Nothing was changed or set aside"), std::string::npos) << message;
  expect_same_tree(before, dir);
}

TEST_F(RunIntegrityTest, AnEditedOrTruncatedConfigIniLeavesTheCheckpointsAlone) {
  // Another width; a line gone (the default's widths then built); the file cut in half.
  for (const std::string edit : {"width", "line", "half"}) {
    const auto dir = trained_copy("edited-" + edit);
    auto text = read_file(dir + "/config.ini");
    const auto hidden = text.find("\nhidden=16\n"), energy = text.find("\nenergy-hidden=8\n");
    ASSERT_NE(hidden, std::string::npos) << text;
    ASSERT_NE(energy, std::string::npos) << text;
    if (edit == "width") text.replace(hidden + 1, 9, "hidden=20");
    if (edit == "line") text.erase(energy, 16);
    if (edit == "half") text = text.substr(0, text.size() / 2);
    std::ofstream(dir + "/config.ini", std::ios::trunc) << text;
    const auto before = tree(dir);
    const auto message = thrown_message([&] { resume(dir); });
    if (edit != "half")
      EXPECT_NE(message.find("does not fit the model, optimiser and objective that " + dir + "/config.ini"),
                std::string::npos)
          << message;
    EXPECT_EQ(message.find(".corrupt"), std::string::npos) << message;
    expect_same_tree(before, dir);
  }
}

// A load that fails part-way (the encoder and decoder fit, the prior does not) leaves the
// trainer exactly as it was: a later fresh start is not contaminated by the checkpoint's weights.
TEST_F(RunIntegrityTest, AFailedLoadLeavesTheModelAsItWas) {
  auto data = torch::bernoulli(torch::full({32, 12}, 0.4));
  torch::manual_seed(5);
  auto model = std::make_shared<VaeModel>(NetworkOptions().hidden({16}).latent_dim(3).image_shape({1, 3, 4}),
                                          PriorOptions("ebm", 3).set("energy-hidden", "8"));
  std::map<std::string, torch::Tensor> before;
  for (const auto& p : model->named_parameters()) before[p.key()] = p.value().detach().clone();
  TempDir scratch;
  Trainer trainer(model, make_objective("snelbo"), data,
                  TrainOptions().epochs(1).batch_size(8).seed(3), RunDir::create(scratch.file("run")));
  const auto mog = RunDir::open(file("mog")).checkpoints().back();
  EXPECT_THROW_WITH(trainer.load_checkpoint(mog), "does not fit");
  for (const auto& p : model->named_parameters()) EXPECT_TRUE(torch::equal(p.value(), before[p.key()])) << p.key();
  EXPECT_EQ(trainer.state().step, 0);
  // And it still loads what fits.
  EXPECT_NO_THROW(trainer.load_checkpoint(RunDir::open(file("ebm")).checkpoints().back()));
  EXPECT_GT(trainer.state().step, 0);
}

// Finding 3: two writers of the same HDF5 record (two evaluate runs) each have a temporary of
// their own; the record is one writer's whole file, and no temporary is left.
TEST_F(RunIntegrityTest, TwoWritersOfOneRecordNeverShareATemporary) {
  TempDir dir;
  const auto path = dir.file("evaluation-test.h5");
  {
    H5Writer a(path), b(path);
    a.write("x", torch::arange(5, torch::kLong));
    b.write("x", torch::arange(7, torch::kLong));
    b.write("y", torch::ones({2}));
    a.close();
    b.close();
  }
  EXPECT_EQ(h5_read(path, "x").numel(), 7) << "the last close wins, whole";
  EXPECT_TRUE(h5_has(path, "y"));
  int files = 0;
  for (const auto& entry : fs::directory_iterator(dir.path())) {
    ++files;
    EXPECT_EQ(entry.path().filename().string(), "evaluation-test.h5");
  }
  EXPECT_EQ(files, 1);
}

// Finding 8: a subnormal value of a real flag is refused by name (it was "error: stod"), and
// shortest() renders one without throwing.
TEST_F(RunIntegrityTest, SubnormalFlagValuesAreRefusedByName) {
  EXPECT_THROW_WITH(train({{"run-dir", file("subnormal")}, {"lr", "1e-320"}}), "--lr 9.99989e-321 is subnormal");
  EXPECT_THROW_WITH(train({{"run-dir", file("subnormal")}, {"likelihood-min-sigma", "4e-310"}}), "is subnormal");
  EXPECT_FALSE(fs::exists(file("subnormal")));
  EXPECT_EQ(shortest(1e-320), "9.99989e-321");
}

// Finding 9: kill -9 inside the first write of config.ini leaves checkpoints/, the lock and a
// partial config.ini.tmp-XXXXXX. --resume says it has nothing to resume and names the command
// that starts it again; that command reuses the directory.
TEST_F(RunIntegrityTest, ARunKilledInItsFirstConfigWriteCanBeStartedAgain) {
  const auto dir = file("killed-first-write");
  fs::create_directories(dir + "/checkpoints");
  std::ofstream(dir + "/.lock") << "12345\n";
  std::ofstream(dir + "/config.ini.tmp-a1b2c3") << "# vae-ebm 0.1.0 resolved conf";
  EXPECT_TRUE(unstarted_run(dir));
  EXPECT_THROW_WITH(resume(dir), "start it again with the command that made it (vae-ebm train --run-dir " + dir);
  ASSERT_EQ(train({{"run-dir", dir}}), 0);
  EXPECT_FALSE(fs::exists(dir + "/config.ini.tmp-a1b2c3"));
  EXPECT_TRUE(fs::exists(dir + "/config.ini"));
  EXPECT_FALSE(unstarted_run(dir));
  // A directory with anything else in it is still refused.
  const auto other = file("not-a-run");
  fs::create_directories(other);
  std::ofstream(other + "/notes.txt") << "mine";
  std::ofstream(other + "/config.ini.tmp-zzzzzz") << "";
  EXPECT_FALSE(unstarted_run(other));
  EXPECT_THROW_WITH(train({{"run-dir", other}}), "it exists and is not empty");
  EXPECT_TRUE(fs::exists(other + "/notes.txt"));
}

// Finding 12: a gzip'd IDX file is decompressed only as far as its header says it reaches: one
// that claims 4 bytes and inflates to 64 MB is refused after a buffer, not read whole.
TEST_F(RunIntegrityTest, AGzippedIdxFileIsNotInflatedPastWhatItsHeaderClaims) {
  TempDir dir;
  const auto path = dir.file("bomb-idx3-ubyte.gz");
  gzFile gz = gzopen(path.c_str(), "wb9");
  const unsigned char header[] = {0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 2, 1, 2, 3, 4};
  gzwrite(gz, header, sizeof header);
  const std::string zeros(1 << 20, '\0');
  for (int i = 0; i < 64; ++i) gzwrite(gz, zeros.data(), static_cast<unsigned>(zeros.size()));
  gzclose(gz);
  EXPECT_LT(fs::file_size(path), 200000u);
  EXPECT_THROW_WITH(read_idx(path), "trailing bytes after the expected 4 bytes of data");
  // A whole file still reads, and one cut short is still named so.
  const auto whole = dir.file("whole-idx3-ubyte.gz");
  gz = gzopen(whole.c_str(), "wb");
  gzwrite(gz, header, sizeof header);
  gzclose(gz);
  EXPECT_TRUE(torch::equal(read_idx(whole), torch::tensor({1, 2, 3, 4}, torch::kUInt8).reshape({2, 2})));
}

// Finding 10: `report` on a run directory from someone else reads only its own regular files,
// within limits, and what it prints or writes as Markdown carries no terminal escapes or HTML.
TEST_F(RunIntegrityTest, AReportReadsOnlyTheRunsOwnRegularFiles) {
  const auto dir = trained_copy("hostile");
  // A linked PNG is not embedded; a linked config.ini, a FIFO as metrics.jsonl and a
  // /dev/zero link as evaluation.json are refused by name, without hanging.
  fs::create_directories(dir + "/samples");
  fs::create_symlink("/etc/hostname", dir + "/samples/secret.png");
  EXPECT_TRUE(report::read_run_files(dir).sample_pngs.empty());
  fs::create_symlink("/dev/zero", dir + "/evaluation.json");
  EXPECT_THROW_WITH(report::read_run_files(dir), "evaluation.json is a symbolic link");
  fs::remove(dir + "/evaluation.json");
  fs::rename(dir + "/metrics.jsonl", dir + "/metrics.real");
  ASSERT_EQ(::mkfifo((dir + "/metrics.jsonl").c_str(), 0644), 0);
  EXPECT_THROW_WITH(report::read_run_files(dir), "metrics.jsonl is not a regular file");
  fs::remove(dir + "/metrics.jsonl");
  fs::rename(dir + "/config.ini", dir + "/config.real");
  fs::create_symlink(dir + "/config.real", dir + "/config.ini");
  EXPECT_THROW_WITH(command("report").run({dir}), "config.ini is a symbolic link");
  EXPECT_THROW_WITH(report::read_run_file(dir + "/config.real", 10), "more than a report reads of it (10)");
  // Control bytes become '?'; Markdown cells carry HTML as text.
  EXPECT_EQ(report::printable("run\x1b[31mred\x07\n"), "run?[31mred?\n");
  report::Table table;
  table.header = {"run"};
  table.rows = {{"<img src=x onerror=alert(1)>"}};
  EXPECT_EQ(table.render(report::TableFormat::Markdown).find("<img"), std::string::npos);
}

// Finding 6: a checkpoint whose finite but extreme weights make the bound NaN is an error with a
// non-zero exit, and no record is written.
TEST_F(RunIntegrityTest, EvaluateRefusesABoundThatIsNotFinite) {
  const auto dir = file("extreme");
  ASSERT_EQ(train({{"run-dir", dir}}), 0);
  auto model = std::make_shared<VaeModel>(NetworkOptions().hidden({16}).latent_dim(3).image_shape({1, 3, 4}),
                                          PriorOptions("gaussian", 3));
  load_model_from_checkpoint(dir + "/checkpoints/best.pt", *model);
  {
    torch::NoGradGuard no_grad;
    for (auto& p : model->decoder->parameters()) p.fill_(3e38);  // finite, and overflowing every product
  }
  torch::serialize::OutputArchive archive, model_archive;
  archive.write("format", torch::full({}, int64_t{1}, torch::kLong));
  model->save(model_archive);
  archive.write("model", model_archive);
  atomic_write(file("extreme.pt"), sealed_archive_bytes(archive));
  const auto out = file("extreme-records");
  EXPECT_THROW_WITH(command("evaluate").run({dir, "--checkpoint", file("extreme.pt"), "--out", out, "--threads", "1",
                                             "--quality-samples", "0", "--samples", "2"}),
                    "its weights give numbers that are not finite; nothing was written");
  EXPECT_FALSE(fs::exists(out + "/evaluation.json"));
}

// Finding 11: integers are read as what they are, in range, or refused by name.
TEST_F(RunIntegrityTest, FlagValuesAreNotCoerced) {
  EXPECT_THROW_WITH(train({{"run-dir", file("coerced")}, {"seed", "-1"}}), "seed");
  EXPECT_THROW_WITH(train({{"run-dir", file("coerced")}, {"seed", "18446744073709551616"}}), "seed");
  EXPECT_THROW_WITH(train({{"run-dir", file("coerced")}, {"keep-checkpoints", "4294967297"}}),
                    "keep-checkpoints: must be in [1, 1000000]");
  EXPECT_THROW_WITH(train({{"run-dir", file("coerced")}, {"prior", "ebm"}, {"objective", "nce"}, {"nce-ratio", "inf"}}),
                    "--nce-ratio: expects a finite number, got 'inf'");
  EXPECT_THROW_WITH(train({{"run-dir", file("coerced")}, {"prior", "ebm"}, {"objective", "nce"}, {"nce-ratio", "2000"}}),
                    "--nce-ratio: must be in (0, 1000]");
  EXPECT_FALSE(fs::exists(file("coerced")));
  cli::SampleConfig sample;
  ASSERT_TRUE(cli::parse_sample({"run", "--seed", "18446744073709551615"}, sample));
  EXPECT_EQ(sample.seed, 18446744073709551615ULL);
}

// Finding 5: a chunked dataset of which only some chunks were written (a writer killed part-way)
// is refused, naming how many chunks it holds; a whole one still reads.
TEST_F(RunIntegrityTest, APartlyWrittenChunkedDatasetIsRefused) {
  TempDir dir;
  auto write = [&](const std::string& path, int rows_written) {
    const hid_t file = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    const hsize_t dims[2] = {8, 4}, chunk[2] = {2, 4};
    const hid_t space = H5Screate_simple(2, dims, nullptr);
    const hid_t create = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(create, 2, chunk);
    const hid_t ds = H5Dcreate2(file, "x", H5T_NATIVE_FLOAT, space, H5P_DEFAULT, create, H5P_DEFAULT);
    std::vector<float> values(static_cast<size_t>(rows_written) * 4, 0.5f);
    const hsize_t start[2] = {0, 0}, count[2] = {static_cast<hsize_t>(rows_written), 4};
    const hid_t memory = H5Screate_simple(2, count, nullptr);
    H5Sselect_hyperslab(space, H5S_SELECT_SET, start, nullptr, count, nullptr);
    H5Dwrite(ds, H5T_NATIVE_FLOAT, memory, space, H5P_DEFAULT, values.data());
    H5Sclose(memory);
    H5Dclose(ds);
    H5Pclose(create);
    H5Sclose(space);
    H5Fclose(file);
  };
  write(dir.file("part.h5"), 2);
  EXPECT_THROW_WITH(h5_read(dir.file("part.h5"), "x"), "but stores 1 of its 4 chunks");
  write(dir.file("whole.h5"), 8);
  EXPECT_EQ(h5_read(dir.file("whole.h5"), "x").numel(), 32);
}

// Finding 7: the rate blamed for a divergence is measured, not assumed: --lr 100 on an energy
// prior moves the encoder and decoder, not the prior, and --lr is blamed (it was --prior-lr).
TEST_F(RunIntegrityTest, TheDivergenceBlamesTheRateWhoseParametersExploded) {
  const auto dir = file("lr100");
  EXPECT_EQ(train({{"run-dir", dir}, {"prior", "ebm"}, {"energy-hidden", "8"}, {"lr", "1e30"}}), 3);
  const auto metrics = read_file(dir + "/metrics.jsonl");
  EXPECT_NE(metrics.find(R"("likely_cause":"lr")"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find(R"("moved":{"vae":)"), std::string::npos) << metrics;
  const auto prior = file("prior-lr");
  EXPECT_EQ(train({{"run-dir", prior}, {"prior", "ebm"}, {"energy-hidden", "8"}, {"prior-lr", "1e30"}}), 3);
  EXPECT_NE(read_file(prior + "/metrics.jsonl").find(R"("likely_cause":"prior-lr")"), std::string::npos)
      << read_file(prior + "/metrics.jsonl");
}

// A process killed while it rolled the metrics log back (metrics.jsonl and
// metrics.rolled-back.jsonl are written atomically) leaves their temporaries; a resume, holding
// the run's lock, removes them with the checkpoints' and config.ini's.
TEST_F(RunIntegrityTest, AResumeRemovesTheMetricsLogsPartialWrites) {
  const auto dir = trained_copy("metrics-partial");
  for (const char* name : {"metrics.jsonl.tmp-a1b2c3", "metrics.rolled-back.jsonl.tmp-d4e5f6"})
    std::ofstream(dir + "/" + name) << "{\"event\":\"tr";
  std::ofstream(dir + "/notes.txt.tmp-keepme") << "the user's";
  ASSERT_EQ(resume(dir), 0);
  EXPECT_FALSE(fs::exists(dir + "/metrics.jsonl.tmp-a1b2c3"));
  EXPECT_FALSE(fs::exists(dir + "/metrics.rolled-back.jsonl.tmp-d4e5f6"));
  EXPECT_TRUE(fs::exists(dir + "/notes.txt.tmp-keepme")) << "only the run's own writes are removed";
}

// Finding 13: a stray step file whose name says a step it does not hold no longer pins resume
// to itself (and escapes pruning for ever): it is set aside, and the run resumes from its own.
TEST_F(RunIntegrityTest, AStrayStepCheckpointIsSetAsideNotResumedFrom) {
  const auto dir = trained_copy("stray");
  RunDir run = RunDir::open(dir);
  const auto own = run.checkpoints();
  ASSERT_FALSE(own.empty());
  const auto stray = dir + "/checkpoints/step-9999999999999999999.pt";
  fs::copy_file(own.back(), stray);
  ASSERT_EQ(resume(dir), 0);
  EXPECT_FALSE(fs::exists(stray));
  EXPECT_TRUE(fs::exists(stray + ".corrupt")) << "set aside, not deleted";
  EXPECT_EQ(RunDir::open(dir).checkpoints().back(), own.back());
}

// Finding 13: a dataset that is an external link to another file is refused as such (it was
// refused as "truncated", measured against this file's size).
TEST_F(RunIntegrityTest, AnExternalLinkIsNamedNotCalledTruncated) {
  TempDir dir;
  const auto target = dir.file("target.h5"), linking = dir.file("linking.h5");
  {
    const hid_t file = H5Fcreate(target.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    const hsize_t dims[2] = {64, 16};
    const hid_t space = H5Screate_simple(2, dims, nullptr);
    const hid_t ds = H5Dcreate2(file, "x", H5T_NATIVE_FLOAT, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    std::vector<float> values(64 * 16, 0.5f);
    H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data());
    H5Dclose(ds);
    H5Sclose(space);
    H5Fclose(file);
  }
  const hid_t file = H5Fcreate(linking.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  H5Lcreate_external(target.c_str(), "/x", file, "x", H5P_DEFAULT, H5P_DEFAULT);
  H5Fclose(file);
  EXPECT_THROW_WITH(h5_read(linking, "x"), "/x is an external link to another file");
  EXPECT_EQ(h5_read(target, "x").numel(), 64 * 16);
}

// Finding 11, last items: the memory pre-check counts a flow prior's coupling layers, and an
// allocation that fails says what to lower, without LibTorch's stack frames.
TEST_F(RunIntegrityTest, AFlowPriorTooLargeIsRefusedAndAFailedAllocationIsOneLine) {
  // (--allow-large-work: past the work bound, the memory check is what refuses it.)
  EXPECT_THROW_WITH(train({{"run-dir", file("huge-flow")}, {"prior", "flow"}, {"flow-layers", "100000000"},
                           {"allow-large-work", "true"}}),
                    "--flow-layers 100000000 --flow-hidden 64 makes networks of");
  EXPECT_FALSE(fs::exists(file("huge-flow")));
  const auto dir = trained_copy("alloc");
  const auto said = shell_output(kBinary + " evaluate " + dir +
                                 " --log-z-samples 100000000000 --allow-large-work --log-z-method is --quality-samples 0 --limit 2"
                                 " --samples 2 --threads 1 2>&1");
  EXPECT_NE(said.find("can\'t allocate memory"), std::string::npos) << said;
  EXPECT_NE(said.find("lower them"), std::string::npos) << said;
  EXPECT_EQ(said.find("frame #"), std::string::npos) << said;
}

}  // namespace vae_ebm::test
