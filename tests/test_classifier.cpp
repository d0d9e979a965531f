// The feature classifier (estimators/classifier.h): determinism, learning, its file format,
// the shape-generic network, and the classifier score.

#include <fstream>
#include <vector>

#include "data/archive.h"
#include "data/error.h"
#include "data/files.h"
#include "data/seed.h"
#include "estimators/classifier.h"
#include "estimators/quality.h"
#include "tests/support.h"

namespace vae_ebm::test {

// ---------------------------------------------------------------------------------------
// The feature classifier.

class ClassifierTest : public SeedingFixture {};

// Two classes a conv net separates at once: bright blobs in the top or the bottom half.
void toy_images(int64_t n, at::Generator& gen, torch::Tensor& images, torch::Tensor& labels) {
  labels = torch::randint(0, 2, {n}, gen, torch::kLong);
  auto noise = 0.3 * torch::rand({n, 28, 28}, gen);
  auto rows = torch::arange(28).view({1, 28, 1});
  auto top = (rows < 14).to(torch::kFloat);
  auto mask = torch::where(labels.view({n, 1, 1}) == 0, top, 1 - top);
  images = (noise + 0.7 * mask * torch::rand({n, 28, 28}, gen)).reshape({n, 784});
}

TEST_F(ClassifierTest, TrainingIsDeterministicAndLearns) {
  auto gen = make_generator(8);
  torch::Tensor images, labels;
  toy_images(384, gen, images, labels);
  auto options =
      ClassifierTrainOptions().epochs(1).batch_size(64).seed(3).binarize(true).network(ClassifierOptions().num_classes(2));
  std::vector<ClassifierEpoch> epochs;
  auto logged = options;
  logged.on_epoch([&epochs](const ClassifierEpoch& e) { epochs.push_back(e); });
  torch::manual_seed(123);  // the global generator's state must not matter
  auto a = train_classifier(images, labels, logged);
  torch::manual_seed(456);
  auto b = train_classifier(images, labels, options);
  EXPECT_EQ(a->weights_sha256(), b->weights_sha256());
  EXPECT_EQ(a->weights_sha256().size(), 64u);
  EXPECT_NE(a->weights_sha256(), train_classifier(images, labels, options.seed(4))->weights_sha256());
  ASSERT_EQ(epochs.size(), 1u);
  EXPECT_TRUE(std::isfinite(epochs[0].loss));
  torch::Tensor test_images, test_labels;
  toy_images(200, gen, test_images, test_labels);
  auto accuracy = classifier_accuracy(a, test_images, test_labels);
  EXPECT_GT(accuracy.value, 0.9) << "train loss " << epochs[0].loss;
  EXPECT_EQ(accuracy.count, 200);
  auto features = a->features(test_images, 64);
  EXPECT_EQ(features.sizes(), (torch::IntArrayRef{200, 128}));
  EXPECT_EQ(features.scalar_type(), torch::kFloat);
  EXPECT_TRUE((features >= 0).all().item<bool>());
  EXPECT_EQ(a->predict(test_images).sizes(), (torch::IntArrayRef{200}));
  EXPECT_THROW(train_classifier(images, labels + 1, options), c10::Error);  // label 2 with 2 classes
  EXPECT_THROW(a->features(torch::zeros({3, 100})), c10::Error);
}

TEST_F(ClassifierTest, SaveAndLoadRoundTripAndRefuseForeignFiles) {
  TempDir dir;
  torch::manual_seed(1);
  FeatureClassifier model(ClassifierOptions().num_classes(3).conv1_channels(4).conv2_channels(8).feature_dim(16));
  auto gen = make_generator(2);
  auto x = torch::rand({10, 784}, gen);
  save_classifier(model, dir.file("classifier.pt"));
  auto loaded = load_classifier(dir.file("classifier.pt"));
  EXPECT_EQ(loaded->weights_sha256(), model->weights_sha256());
  EXPECT_EQ(loaded->options().feature_dim(), 16);
  EXPECT_TRUE(torch::equal(loaded->features(x), model->features(x)));
  // Truncated, foreign and missing files are refused with the file's name.
  const auto bytes = read_file(dir.file("classifier.pt"));
  { std::ofstream(dir.file("truncated.pt"), std::ios::binary) << bytes.substr(0, bytes.size() / 2); }
  { std::ofstream(dir.file("foreign.pt"), std::ios::binary) << "not a model"; }
  for (const char* name : {"truncated.pt", "foreign.pt", "missing.pt"}) {
    try {
      load_classifier(dir.file(name));
      ADD_FAILURE() << name << " was accepted";
    } catch (const DataError& e) {
      EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
    }
  }
}

TEST_F(ClassifierTest, TheMnistNetworkIsUnchangedAndItsFormerFilesLoad) {
  FeatureClassifier model;
  std::vector<std::string> names;
  for (const auto& p : model->named_parameters()) names.push_back(p.key() + c10::str(p.value().sizes()));
  EXPECT_EQ(names, (std::vector<std::string>{"conv1.weight[32, 1, 5, 5]", "conv1.bias[32]", "conv2.weight[64, 32, 5, 5]",
                                             "conv2.bias[64]", "fc1.weight[128, 1024]", "fc1.bias[128]",
                                             "fc2.weight[10, 128]", "fc2.bias[10]"}));
  // A file as train-classifier wrote it before the image shape was recorded (format 1).
  TempDir dir;
  const auto& o = model->options();
  torch::serialize::OutputArchive archive, network;
  archive.write("format", torch::tensor(int64_t{1}));
  archive.write("options", torch::tensor({o.num_classes(), o.conv1_channels(), o.conv2_channels(), o.feature_dim()}));
  archive.write("dropout", torch::tensor({o.conv_dropout(), o.feature_dropout()}, torch::kDouble));
  archive.write("weights_sha256", c10::IValue(model->weights_sha256()));
  model->save(network);
  archive.write("network", network);
  atomic_write(dir.file("format1.pt"), sealed_archive_bytes(archive));
  auto loaded = load_classifier(dir.file("format1.pt"));
  EXPECT_EQ(loaded->options().image_shape(), (std::vector<int64_t>{1, 28, 28}));
  EXPECT_EQ(loaded->weights_sha256(), model->weights_sha256());
  auto x = torch::rand({4, 784});
  EXPECT_TRUE(torch::equal(loaded->features(x), model->features(x)));
  EXPECT_TRUE(torch::equal(model->features(x.view({4, 28, 28})), model->features(x)));
}

// Two colour classes a conv net separates at once: a red or a blue square on grey noise.
void colour_toy_images(int64_t n, at::Generator& gen, torch::Tensor& images, torch::Tensor& labels) {
  labels = torch::randint(0, 2, {n}, gen, torch::kLong);
  auto square = torch::zeros({1, 1, 32, 32});
  square.narrow(2, 8, 16).narrow(3, 8, 16).fill_(1.0);
  auto red = torch::tensor({1.0f, 0.0f, 0.0f}).view({1, 3, 1, 1}), blue = torch::tensor({0.0f, 0.0f, 1.0f}).view({1, 3, 1, 1});
  auto colour = torch::where(labels.view({n, 1, 1, 1}) == 0, red, blue);
  images = (0.3 * torch::rand({n, 3, 32, 32}, gen) + 0.7 * colour * square).reshape({n, 3 * 32 * 32});
}

TEST_F(ClassifierTest, ShapeGenericNetworkLearnsColourImagesAndRefusesOtherShapes) {
  const auto network =
      ClassifierOptions().image_shape({3, 32, 32}).num_classes(2).conv1_channels(8).conv2_channels(8).feature_dim(16);
  EXPECT_EQ(network.stages(), 3);
  EXPECT_EQ(network.final_side(), (std::vector<int64_t>{4, 4}));
  EXPECT_EQ(ClassifierOptions().image_shape({3, 20, 24}).stages(), 2);
  EXPECT_EQ(ClassifierOptions().image_shape({3, 20, 24}).final_side(), (std::vector<int64_t>{5, 6}));
  EXPECT_EQ(ClassifierOptions().image_shape({1, 8, 8}).stages(), 1);
  auto gen = make_generator(9);
  torch::Tensor images, labels;
  colour_toy_images(128, gen, images, labels);
  auto model = train_classifier(images, labels, ClassifierTrainOptions().network(network).epochs(3).batch_size(16).lr(5e-3).seed(1));
  auto params = model->named_parameters();
  EXPECT_EQ(params["conv1.weight"].sizes(), (std::vector<int64_t>{8, 3, 3, 3}));
  EXPECT_EQ(params["conv3.weight"].sizes(), (std::vector<int64_t>{8, 8, 3, 3}));
  EXPECT_EQ(params["fc1.weight"].sizes(), (std::vector<int64_t>{16, 8 * 4 * 4}));
  torch::Tensor test_images, test_labels;
  colour_toy_images(100, gen, test_images, test_labels);
  EXPECT_GT(classifier_accuracy(model, test_images, test_labels).value, 0.9);
  auto features = model->features(test_images);
  EXPECT_EQ(features.sizes(), (torch::IntArrayRef{100, 16}));
  EXPECT_TRUE(torch::equal(model->features(test_images.view({100, 3, 32, 32})), features));
  // The file records the shape; images of another shape are refused, naming it.
  TempDir dir;
  save_classifier(model, dir.file("colour.pt"));
  auto loaded = load_classifier(dir.file("colour.pt"));
  EXPECT_EQ(loaded->options().image_shape(), (std::vector<int64_t>{3, 32, 32}));
  EXPECT_TRUE(torch::equal(loaded->features(test_images), features));
  EXPECT_THROW_WITH(loaded->features(torch::rand({4, 784})), "3x32x32");
  EXPECT_THROW_WITH(loaded->features(torch::rand({4, 1, 48, 64})), "3x32x32");
  EXPECT_THROW_WITH(train_classifier(torch::rand({4, 784}), torch::zeros({4}, torch::kLong),
                                     ClassifierTrainOptions().network(network).epochs(1)),
                    "3x32x32");
  EXPECT_THROW(ClassifierOptions().image_shape({784}).validate(), std::invalid_argument);
  EXPECT_THROW(ClassifierOptions().image_shape({3, 2, 32}).validate(), std::invalid_argument);
}

TEST_F(ClassifierTest, ClassifierScoreAndLabelHistogram) {
  // Uniform predictions: every p(y|x) equals p(y), score 1. Confident predictions spread
  // evenly over C classes: KL = log C, score C.
  EXPECT_NEAR(classifier_score(torch::full({6, 4}, 0.25, torch::kDouble)).value, 1.0, 1e-12);
  auto one_hot = torch::eye(4, torch::kDouble).repeat({3, 1});
  auto score = classifier_score(one_hot);
  EXPECT_NEAR(score.value, 4.0, 1e-12);
  EXPECT_NEAR(score.std_error, 0.0, 1e-12);
  EXPECT_EQ(score.count, 12);
  // Confident but all one class: score 1.
  auto collapsed = torch::zeros({5, 4}, torch::kDouble);
  collapsed.select(1, 2).fill_(1.0);
  EXPECT_NEAR(classifier_score(collapsed).value, 1.0, 1e-12);
  EXPECT_THROW(classifier_score(torch::full({2, 2}, 0.7, torch::kDouble)), c10::Error);

  auto histogram = label_histogram(torch::tensor({0, 2, 2, 3, 2}, torch::kLong), 5);
  EXPECT_TRUE(torch::equal(histogram, torch::tensor({1, 0, 3, 1, 0}, torch::kLong))) << histogram;
  EXPECT_THROW(label_histogram(torch::tensor({0, 5}, torch::kLong), 5), c10::Error);
}

}  // namespace vae_ebm::test
