#include "common/dataset_shuffle.h"

#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <random>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "common/atomic_file.h"
#include "common/idx_file.h"
#include "common/status_macros.h"

namespace common {
namespace {

namespace fs = std::filesystem;

// Copies `from` to `to` byte for byte (WriteFileAtomically).
absl::Status CopyFile(const fs::path& from, const fs::path& to) {
  std::ifstream in(from, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("cannot open ", from.string()));
  }
  const std::string bytes((std::istreambuf_iterator<char>(in)),
                          std::istreambuf_iterator<char>());
  if (in.bad()) {
    return absl::DataLossError(absl::StrCat("cannot read ", from.string()));
  }
  return WriteFileAtomically(to.string(), bytes);
}

}  // namespace

std::vector<int64_t> SeededPermutation(int64_t n, uint64_t seed) {
  std::vector<int64_t> permutation(n > 0 ? n : 0);
  for (int64_t i = 0; i < n; ++i) permutation[i] = i;
  std::mt19937_64 rng(seed);
  for (int64_t i = n - 1; i > 0; --i) {
    // j uniform in [0, i]: reject draws past the largest multiple of i + 1.
    const uint64_t bound = static_cast<uint64_t>(i) + 1;
    const uint64_t limit =
        std::numeric_limits<uint64_t>::max() -
        std::numeric_limits<uint64_t>::max() % bound;
    uint64_t draw;
    do {
      draw = rng();
    } while (draw >= limit);
    std::swap(permutation[i], permutation[draw % bound]);
  }
  return permutation;
}

absl::StatusOr<std::vector<int64_t>> ShuffleDataset(
    const DatasetShuffleOptions& options) {
  if (options.source_dir.empty() || options.out_dir.empty()) {
    return absl::InvalidArgumentError("source_dir and out_dir must be set");
  }
  const fs::path source(options.source_dir);
  const fs::path out(options.out_dir);
  std::error_code error;
  if (fs::exists(out) && fs::equivalent(source, out, error)) {
    return absl::InvalidArgumentError(
        "out_dir is the source folder: the copy must go elsewhere");
  }
  if (options.prefix < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("prefix must be non-negative, got ", options.prefix));
  }
  const std::vector<std::string> written = {
      kTrainImagesFile, kTrainLabelsFile, kTestImagesFile, kTestLabelsFile,
      kPermutationFile};
  for (const std::string& name : written) {
    if (fs::exists(out / name)) {
      return absl::AlreadyExistsError(absl::StrCat(
          (out / name).string(), " exists; choose an empty out_dir"));
    }
  }
  ASSIGN_OR_RETURN(IdxArray images,
                   ReadIdxImages((source / kTrainImagesFile).string(), 0));
  ASSIGN_OR_RETURN(IdxArray labels,
                   ReadIdxFile((source / kTrainLabelsFile).string()));
  if (labels.dims.size() != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        (source / kTrainLabelsFile).string(), " is not a 1-d label file"));
  }
  if (labels.count() != images.count()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the training files disagree: ", images.count(), " images, ",
        labels.count(), " labels"));
  }
  const int64_t n = images.count();
  const size_t image_size = n > 0 ? images.data.size() / n : 0;
  if (options.prefix > n) {
    return absl::InvalidArgumentError(absl::StrCat(
        "prefix ", options.prefix, " is more than the ", n, " training items"));
  }
  const int64_t permuted = options.prefix > 0 ? options.prefix : n;
  std::vector<int64_t> permutation = SeededPermutation(permuted, options.seed);
  for (int64_t i = permuted; i < n; ++i) permutation.push_back(i);
  IdxArray shuffled_images{images.dims, std::vector<uint8_t>(images.data.size())};
  IdxArray shuffled_labels{labels.dims, std::vector<uint8_t>(n)};
  for (int64_t i = 0; i < n; ++i) {
    const int64_t from = permutation[i];
    std::copy_n(images.data.begin() + from * image_size, image_size,
                shuffled_images.data.begin() + i * image_size);
    shuffled_labels.data[i] = labels.data[from];
  }

  fs::create_directories(out, error);
  if (error) {
    return absl::UnavailableError(
        absl::StrCat("cannot create ", out.string(), ": ", error.message()));
  }
  RETURN_IF_ERROR(CopyFile(source / kTestImagesFile, out / kTestImagesFile));
  RETURN_IF_ERROR(CopyFile(source / kTestLabelsFile, out / kTestLabelsFile));
  RETURN_IF_ERROR(
      WriteIdxFile((out / kTrainImagesFile).string(), shuffled_images));
  RETURN_IF_ERROR(
      WriteIdxFile((out / kTrainLabelsFile).string(), shuffled_labels));
  std::string listing;
  for (int64_t index : permutation) absl::StrAppend(&listing, index, "\n");
  RETURN_IF_ERROR(
      WriteFileAtomically((out / kPermutationFile).string(), listing));
  return permutation;
}

}  // namespace common
