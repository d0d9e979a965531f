// HDF5 reading and writing (see hdf5_io.h).
#include <torch/torch.h>

#include "data/hdf5_io.h"

#include <H5Cpp.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>
#include <system_error>

#include "data/error.h"
#include "data/files.h"

namespace vae_ebm {
namespace {

void quiet() { H5::Exception::dontPrint(); }

// The descriptions on HDF5's error stack, innermost (the cause) first, without repeats.
herr_t collect_error(unsigned, const H5E_error2_t* error, void* data) {
  auto& out = *static_cast<std::vector<std::string>*>(data);
  if (error->desc != nullptr && *error->desc != '\0') {
    std::string text = error->desc;
    if (std::find(out.begin(), out.end(), text) == out.end()) out.push_back(text);
  }
  return 0;
}

// The C++ wrapper's message ("H5Dread failed") with the library's own causes from its error
// stack ("can't open directory", "address of object past end of allocation"). Call it first
// in a catch block: the next HDF5 call clears the stack.
std::string h5_message(const H5::Exception& e) {
  std::vector<std::string> causes;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, collect_error, &causes);
  H5Eclear2(H5E_DEFAULT);
  std::string msg = e.getDetailMsg();
  const std::string func = e.getFuncName();
  if (!func.empty()) msg = func + ": " + msg;
  if (!causes.empty()) {
    msg += " (HDF5: ";
    for (size_t i = 0; i < causes.size() && i < 4; ++i) msg += (i ? "; " : "") + causes[i];
    msg += ")";
  }
  return msg;
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t k = 0; k < shape.size(); ++k) s += (k ? ", " : "") + std::to_string(shape[k]);
  return s + "]";
}

// Before anything is allocated: a dataset whose declared size its file cannot hold (a
// truncated file, chunks never written) or that would not fit in memory as read and as the
// float copy the loader makes.
void check_declared_size(const std::string& path, const std::string& where, const H5::DataSet& ds,
                         const std::vector<int64_t>& shape, size_t read_element_size) {
  double elements = 1;
  for (const auto d : shape) elements *= static_cast<double>(d);
  if (elements == 0) return;
  const double stored_element = static_cast<double>(H5Tget_size(ds.getDataType().getId()));
  const double declared = elements * stored_element;
  const hid_t id = ds.getId();
  const hid_t plist = H5Dget_create_plist(id);
  const H5D_layout_t layout = H5Pget_layout(plist);
  H5Pclose(plist);
  const double storage = static_cast<double>(H5Dget_storage_size(id));
  char text[256];
  if (layout == H5D_CONTIGUOUS) {
    const haddr_t offset = H5Dget_offset(id);
    std::error_code ec;
    const auto file_size = static_cast<double>(std::filesystem::file_size(path, ec));
    if (storage < declared || (offset != HADDR_UNDEF && !ec && static_cast<double>(offset) + declared > file_size)) {
      std::snprintf(text, sizeof text, ": declares shape %s (%.0f bytes) but the file holds %.0f of them",
                    shape_text(shape).c_str(), declared,
                    offset == HADDR_UNDEF || ec ? storage : std::max(0.0, std::min(storage, file_size - static_cast<double>(offset))));
      throw DataError(where + text + " (truncated, or never written)");
    }
  } else if (layout == H5D_CHUNKED) {
    // Every chunk of the declared shape must be in the file (libhdf5 1.10's space status calls
    // a compressed dataset "partly allocated" even when it is whole, so the chunks are counted).
    const hid_t create = H5Dget_create_plist(id);
    std::vector<hsize_t> chunk(shape.size());
    const int rank = H5Pget_chunk(create, static_cast<int>(chunk.size()), chunk.data());
    H5Pclose(create);
    double expected = 1;
    for (int k = 0; k < rank && k < static_cast<int>(shape.size()); ++k)
      expected *= std::ceil(static_cast<double>(shape[k]) / static_cast<double>(std::max<hsize_t>(chunk[k], 1)));
    // No chunk written at all: no chunk index either, and H5Dget_num_chunks fails. Otherwise the
    // chunks are counted over the dataset's own file space (libhdf5 1.10.8 refuses H5S_ALL there,
    // which left partly written datasets unchecked). What cannot be counted is refused.
    H5D_space_status_t status{};
    hsize_t stored = 0;
    bool counted = H5Dget_space_status(id, &status) >= 0 && status == H5D_SPACE_STATUS_NOT_ALLOCATED;
    if (!counted) {
      const hid_t space = H5Dget_space(id);
      counted = space >= 0 && H5Dget_num_chunks(id, space, &stored) >= 0;
      if (space >= 0) H5Sclose(space);
    }
    if (!counted || rank != static_cast<int>(shape.size()))
      throw DataError(where + ": a chunked dataset whose chunks cannot be counted (chunk rank " + std::to_string(rank) +
                      " for shape " + shape_text(shape) + "), so whether every image was written cannot be checked");
    if (static_cast<double>(stored) < expected) {
      std::snprintf(text, sizeof text, " but stores %.0f of its %.0f chunks (the others were never written)",
                    static_cast<double>(stored), expected);
      throw DataError(where + ": declares shape " + shape_text(shape) + text);
    }
  }
  const double needed = elements * (static_cast<double>(read_element_size) + 4.0);
  const auto available = available_memory_bytes();
  if (available > 0 && needed > static_cast<double>(available))
    throw DataError(where + ": declares shape " + shape_text(shape) + ", which needs " + gigabytes(needed) +
                    " of memory as read and as floats, more than the " + gigabytes(static_cast<double>(available)) +
                    " available");
}

// "train" and "/train" name the same object; strip leading and doubled slashes.
std::vector<std::string> components(const std::string& name) {
  std::vector<std::string> parts;
  std::string current;
  for (const char c : name) {
    if (c == '/') {
      if (!current.empty()) parts.push_back(current);
      current.clear();
    } else {
      current.push_back(c);
    }
  }
  if (!current.empty()) parts.push_back(current);
  return parts;
}

std::string absolute_name(const std::string& name) {
  std::string out;
  for (const auto& part : components(name)) out += "/" + part;
  return out.empty() ? "/" : out;
}

// Whether every link along `name` exists (H5Lexists needs the parents to exist).
bool link_exists(hid_t location, const std::string& name) {
  std::string prefix;
  for (const auto& part : components(name)) {
    prefix += "/" + part;
    if (H5Lexists(location, prefix.c_str(), H5P_DEFAULT) <= 0) return false;
  }
  return true;
}

// DataError when a link along `name` leads into another file (an external link): its data would
// be read against this file's size and refused as truncated, or read from wherever it points.
void refuse_external_links(hid_t location, const std::string& name, const std::string& where) {
  std::string prefix;
  for (const auto& part : components(name)) {
    prefix += "/" + part;
    H5L_info_t info;
    if (H5Lget_info(location, prefix.c_str(), &info, H5P_DEFAULT) >= 0 && info.type == H5L_TYPE_EXTERNAL)
      throw DataError(where + ": " + prefix + " is an external link to another file, which vae-ebm does not follow: "
                      "copy the data into this file");
  }
}

std::unique_ptr<H5::H5File> open_for_reading(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) throw DataError("HDF5 file " + path + " does not exist");
  try {
    if (!H5::H5File::isHdf5(path.c_str())) throw DataError(path + " is not an HDF5 file");
    return std::make_unique<H5::H5File>(path, H5F_ACC_RDONLY);
  } catch (const H5::Exception& e) {
    throw DataError("cannot open HDF5 file " + path + ": " + h5_message(e));
  }
}

void fsync_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

}  // namespace

bool h5_has(const std::string& path, const std::string& dataset) {
  quiet();
  auto file = open_for_reading(path);
  return link_exists(file->getId(), dataset);
}

namespace {

// Closes an HDF5 C API handle when it goes out of scope.
class Handle {
 public:
  Handle(hid_t id, herr_t (*close)(hid_t)) : id_(id), close_(close) {}
  ~Handle() {
    if (id_ >= 0) close_(id_);
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  hid_t get() const { return id_; }
  bool ok() const { return id_ >= 0; }

 private:
  hid_t id_;
  herr_t (*close_)(hid_t);
};

// The library's causes on its error stack (see h5_message), for a failed C API call.
std::string h5_causes() {
  std::vector<std::string> causes;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, collect_error, &causes);
  H5Eclear2(H5E_DEFAULT);
  std::string msg;
  for (size_t i = 0; i < causes.size() && i < 4; ++i) msg += (i ? "; " : "") + causes[i];
  return msg.empty() ? "" : " (HDF5: " + msg + ")";
}

std::string type_class_name(H5T_class_t type_class) {
  switch (type_class) {
    case H5T_INTEGER: return "an integer";
    case H5T_FLOAT: return "a float";
    case H5T_STRING: return "a string";
    case H5T_COMPOUND: return "a compound";
    case H5T_ENUM: return "an enum";
    case H5T_ARRAY: return "an array";
    case H5T_VLEN: return "a variable-length sequence";
    default: return "of another type";
  }
}

}  // namespace

std::optional<std::string> h5_string_attribute(const std::string& path, const std::string& object,
                                               const std::string& key) {
  quiet();
  auto file = open_for_reading(path);
  const std::string name = absolute_name(object);
  const std::string where = "HDF5 file " + path + ", " + (name == "/" ? std::string("file root") : "object " + name) +
                            ", attribute " + key;
  if (name != "/" && !link_exists(file->getId(), name)) throw DataError(where + ": no such object");
  const Handle obj(H5Oopen(file->getId(), name.c_str(), H5P_DEFAULT), H5Oclose);
  if (!obj.ok()) throw DataError(where + ": cannot open the object" + h5_causes());
  const htri_t exists = H5Aexists(obj.get(), key.c_str());
  if (exists < 0) throw DataError(where + ": cannot look it up" + h5_causes());
  if (exists == 0) return std::nullopt;
  const Handle attr(H5Aopen(obj.get(), key.c_str(), H5P_DEFAULT), H5Aclose);
  if (!attr.ok()) throw DataError(where + ": cannot open it" + h5_causes());
  const Handle type(H5Aget_type(attr.get()), H5Tclose);
  const Handle space(H5Aget_space(attr.get()), H5Sclose);
  if (!type.ok() || !space.ok()) throw DataError(where + ": cannot read its type" + h5_causes());
  const H5T_class_t type_class = H5Tget_class(type.get());
  if (type_class != H5T_STRING) throw DataError(where + ": expected a string, found " + type_class_name(type_class) + " value");
  const hssize_t points = H5Sget_simple_extent_npoints(space.get());
  if (points != 1)
    throw DataError(where + ": expected one string, found " + std::to_string(static_cast<long long>(points)));
  const htri_t variable = H5Tis_variable_str(type.get());
  if (variable < 0) throw DataError(where + ": cannot read its type" + h5_causes());
  const Handle memory(H5Tcopy(H5T_C_S1), H5Tclose);
  if (!memory.ok() || H5Tset_cset(memory.get(), H5Tget_cset(type.get())) < 0)
    throw DataError(where + ": cannot make a string type" + h5_causes());
  std::string value;
  if (variable > 0) {
    H5Tset_size(memory.get(), H5T_VARIABLE);
    char* text = nullptr;
    if (H5Aread(attr.get(), memory.get(), &text) < 0) throw DataError(where + ": cannot read it" + h5_causes());
    if (text != nullptr) {
      value = text;
      H5free_memory(text);
    }
  } else {
    const size_t size = H5Tget_size(type.get());
    if (size == 0) throw DataError(where + ": cannot read its type" + h5_causes());
    H5Tset_size(memory.get(), size);
    H5Tset_strpad(memory.get(), H5T_STR_NULLPAD);
    std::string buffer(size, '\0');
    if (H5Aread(attr.get(), memory.get(), buffer.data()) < 0) throw DataError(where + ": cannot read it" + h5_causes());
    value = buffer.substr(0, buffer.find('\0'));
    while (!value.empty() && value.back() == ' ') value.pop_back();  // space-padded strings
  }
  return value;
}

torch::Tensor h5_read(const std::string& path, const std::string& dataset) {
  quiet();
  auto file = open_for_reading(path);
  const std::string name = absolute_name(dataset);
  const std::string where = "HDF5 file " + path + ", dataset " + name;
  if (!link_exists(file->getId(), name)) throw DataError(where + ": no such dataset");
  refuse_external_links(file->getId(), name, where);
  try {
    if (file->childObjType(name) != H5O_TYPE_DATASET) throw DataError(where + ": not a dataset");
    H5::DataSet ds = file->openDataSet(name);
    H5::DataSpace space = ds.getSpace();
    if (space.getSimpleExtentType() == H5S_NULL) throw DataError(where + ": the dataset is empty (null dataspace)");
    const int rank = space.getSimpleExtentNdims();
    std::vector<hsize_t> dims(static_cast<size_t>(rank));
    if (rank > 0) space.getSimpleExtentDims(dims.data());
    std::vector<int64_t> shape(dims.begin(), dims.end());

    torch::Tensor out;
    const H5T_class_t type_class = ds.getTypeClass();
    if (type_class == H5T_INTEGER || type_class == H5T_FLOAT) {
      const size_t size = ds.getDataType().getSize();
      const size_t read_size = type_class == H5T_INTEGER ? (size == 1 ? 1 : 8) : (size <= 4 ? 4 : 8);
      check_declared_size(path, where, ds, shape, read_size);
    }
    if (type_class == H5T_INTEGER) {
      H5::IntType type = ds.getIntType();
      if (type.getSize() == 1 && type.getSign() == H5T_SGN_NONE) {
        out = torch::empty(shape, torch::kUInt8);
        if (out.numel() > 0) ds.read(out.data_ptr<uint8_t>(), H5::PredType::NATIVE_UINT8);
      } else {
        out = torch::empty(shape, torch::kLong);
        if (out.numel() > 0) ds.read(out.data_ptr<int64_t>(), H5::PredType::NATIVE_INT64);
      }
    } else if (type_class == H5T_FLOAT) {
      H5::FloatType type = ds.getFloatType();
      if (type.getSize() <= 4) {
        out = torch::empty(shape, torch::kFloat);
        if (out.numel() > 0) ds.read(out.data_ptr<float>(), H5::PredType::NATIVE_FLOAT);
      } else {
        out = torch::empty(shape, torch::kDouble);
        if (out.numel() > 0) ds.read(out.data_ptr<double>(), H5::PredType::NATIVE_DOUBLE);
      }
    } else {
      throw DataError(where + ": unsupported element type (expected integers or floats)");
    }
    return out;
  } catch (const H5::Exception& e) {
    throw DataError(where + ": " + h5_message(e));
  }
}

struct H5Writer::Impl {
  std::string path;
  std::string tmp;
  std::unique_ptr<H5::H5File> file;

  H5::H5File& open_file() {
    if (!file) throw DataError("HDF5 file " + path + ": already closed");
    return *file;
  }

  void create_parents(const std::string& name) {
    const auto parts = components(name);
    std::string prefix;
    for (size_t i = 0; i + 1 < parts.size(); ++i) {
      prefix += "/" + parts[i];
      if (!link_exists(file->getId(), prefix)) {
        file->createGroup(prefix);
      } else if (file->childObjType(prefix) != H5O_TYPE_GROUP) {
        throw DataError("HDF5 file " + path + ": " + prefix + " exists and is not a group");
      }
    }
  }
};

H5Writer::H5Writer(const std::string& path) : impl_(std::make_unique<Impl>()) {
  quiet();
  impl_->path = path;
  // A name of its own (PATH.tmp-XXXXXX, made by mkstemp): two writers of the same record never
  // share a temporary, and the last rename wins whole.
  std::string tmpl = path + ".tmp-XXXXXX";
  std::vector<char> name(tmpl.begin(), tmpl.end());
  name.push_back('\0');
  const int fd = ::mkstemp(name.data());
  if (fd < 0) throw DataError("cannot create a temporary file " + tmpl + " (for " + path + "): " + std::strerror(errno));
  ::close(fd);
  impl_->tmp = name.data();
  try {
    impl_->file = std::make_unique<H5::H5File>(impl_->tmp, H5F_ACC_TRUNC);
  } catch (const H5::Exception& e) {
    std::remove(impl_->tmp.c_str());
    throw DataError("cannot create HDF5 file " + impl_->tmp + " (for " + path + "): " + h5_message(e));
  }
}

H5Writer::~H5Writer() {
  if (impl_ && impl_->file) {
    try {
      impl_->file->close();
      impl_->file.reset();
    } catch (...) {
      // A failed close leaves the H5File's id open, and its destructor would close it again
      // (a crash inside libhdf5 on a full disk): the object is let go instead.
      (void)impl_->file.release();
    }
    std::remove(impl_->tmp.c_str());
  }
}

void H5Writer::write(const std::string& name, const torch::Tensor& tensor) {
  quiet();
  H5::H5File& file = impl_->open_file();
  const std::string full = absolute_name(name);
  const std::string where = "HDF5 file " + impl_->path + ", dataset " + full;
  if (full == "/") throw DataError(where + ": empty dataset name");
  if (!tensor.defined()) throw DataError(where + ": undefined tensor");
  torch::Tensor t = tensor.detach().to(torch::kCPU);
  switch (t.scalar_type()) {
    case torch::kFloat:
    case torch::kDouble:
    case torch::kLong:
    case torch::kByte:
      break;
    case torch::kBool:
      t = t.to(torch::kByte);
      break;
    case torch::kChar:
    case torch::kShort:
    case torch::kInt:
      t = t.to(torch::kLong);
      break;
    case torch::kHalf:
    case torch::kBFloat16:
      t = t.to(torch::kFloat);
      break;
    default:
      throw DataError(where + ": unsupported tensor type " + std::string(c10::toString(t.scalar_type())));
  }
  t = t.contiguous();
  try {
    if (link_exists(file.getId(), full)) throw DataError(where + ": written twice");
    impl_->create_parents(full);
    std::vector<hsize_t> dims(t.sizes().begin(), t.sizes().end());
    H5::DataSpace space = dims.empty() ? H5::DataSpace(H5S_SCALAR)
                                       : H5::DataSpace(static_cast<int>(dims.size()), dims.data());
    const H5::PredType* type = nullptr;
    switch (t.scalar_type()) {
      case torch::kFloat: type = &H5::PredType::NATIVE_FLOAT; break;
      case torch::kDouble: type = &H5::PredType::NATIVE_DOUBLE; break;
      case torch::kLong: type = &H5::PredType::NATIVE_INT64; break;
      default: type = &H5::PredType::NATIVE_UINT8; break;
    }
    H5::DataSet ds = file.createDataSet(full, *type, space);
    if (t.numel() > 0) ds.write(t.data_ptr(), *type);
  } catch (const H5::Exception& e) {
    throw DataError(where + ": " + h5_message(e));
  }
}

namespace {

// Runs `fn` on the object (file root, group or dataset) named `object`.
template <typename Fn>
void with_object(H5::H5File& file, const std::string& path, const std::string& object, Fn fn) {
  const std::string full = absolute_name(object);
  const std::string where = "HDF5 file " + path + ", object " + full;
  try {
    if (full == "/") {
      H5::Group root = file.openGroup("/");
      fn(static_cast<H5::H5Object&>(root));
      return;
    }
    if (!link_exists(file.getId(), full)) throw DataError(where + ": no such object");
    const H5O_type_t type = file.childObjType(full);
    if (type == H5O_TYPE_GROUP) {
      H5::Group group = file.openGroup(full);
      fn(static_cast<H5::H5Object&>(group));
    } else if (type == H5O_TYPE_DATASET) {
      H5::DataSet ds = file.openDataSet(full);
      fn(static_cast<H5::H5Object&>(ds));
    } else {
      throw DataError(where + ": not a group or dataset");
    }
  } catch (const H5::Exception& e) {
    throw DataError(where + ": " + h5_message(e));
  }
}

void replace_attribute(H5::H5Object& obj, const std::string& key) {
  if (obj.attrExists(key)) obj.removeAttr(key);
}

}  // namespace

void H5Writer::attribute(const std::string& object, const std::string& key, const std::string& value) {
  quiet();
  with_object(impl_->open_file(), impl_->path, object, [&](H5::H5Object& obj) {
    replace_attribute(obj, key);
    H5::StrType type(H5::PredType::C_S1, H5T_VARIABLE);
    type.setCset(H5T_CSET_UTF8);
    H5::Attribute attr = obj.createAttribute(key, type, H5::DataSpace(H5S_SCALAR));
    attr.write(type, value);
  });
}

void H5Writer::attribute(const std::string& object, const std::string& key, double value) {
  quiet();
  with_object(impl_->open_file(), impl_->path, object, [&](H5::H5Object& obj) {
    replace_attribute(obj, key);
    H5::Attribute attr =
        obj.createAttribute(key, H5::PredType::NATIVE_DOUBLE, H5::DataSpace(H5S_SCALAR));
    attr.write(H5::PredType::NATIVE_DOUBLE, &value);
  });
}

void H5Writer::attribute(const std::string& object, const std::string& key, int64_t value) {
  quiet();
  with_object(impl_->open_file(), impl_->path, object, [&](H5::H5Object& obj) {
    replace_attribute(obj, key);
    H5::Attribute attr =
        obj.createAttribute(key, H5::PredType::NATIVE_INT64, H5::DataSpace(H5S_SCALAR));
    attr.write(H5::PredType::NATIVE_INT64, &value);
  });
}

void H5Writer::close() {
  quiet();
  if (!impl_->file) return;  // closing twice is harmless
  try {
    impl_->file->close();
  } catch (const H5::Exception& e) {
    (void)impl_->file.release();  // not reset: its destructor would close the failed file again
    std::remove(impl_->tmp.c_str());
    throw DataError("cannot close HDF5 file " + impl_->tmp + " (for " + impl_->path + "): " + h5_message(e));
  }
  impl_->file.reset();
  fsync_file(impl_->tmp);
  if (std::rename(impl_->tmp.c_str(), impl_->path.c_str()) != 0) {
    const int err = errno;
    std::remove(impl_->tmp.c_str());
    throw DataError("cannot rename " + impl_->tmp + " to " + impl_->path + ": " + std::strerror(err));
  }
}

}  // namespace vae_ebm
