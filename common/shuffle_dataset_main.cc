// shuffle_dataset: writes a copy of the Fashion-MNIST files whose training
// images and labels are permuted together (common/dataset_shuffle.h), for
// checking that results do not depend on the training file's order:
//
//   shuffle_dataset --out_dir=/tmp/fmnist-s1 --seed=1
//   DATA_DIR=/tmp/fmnist-s1 scripts/bench_labels.sh
#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "common/dataset_shuffle.h"
#include "common/idx_file.h"

ABSL_FLAG(std::string, data_dir, common::kDefaultDatasetDir,
          "folder of the Fashion-MNIST .gz files to copy");
ABSL_FLAG(std::string, out_dir, "", "folder to write the shuffled copy into");
ABSL_FLAG(uint64_t, seed, 1, "seed of the permutation");
ABSL_FLAG(int64_t, prefix, 0,
          "permute only the first N training items, the rest stay in place "
          "(0: all); with --train_limit=N the pool keeps its images and only "
          "their order changes");

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "shuffle_dataset --out_dir=DIR [--data_dir=DIR] [--seed=N] [--prefix=N]: "
      "copies the data set with the training images and labels permuted "
      "together");
  absl::ParseCommandLine(argc, argv);
  common::DatasetShuffleOptions options;
  options.source_dir = absl::GetFlag(FLAGS_data_dir);
  options.out_dir = absl::GetFlag(FLAGS_out_dir);
  options.seed = absl::GetFlag(FLAGS_seed);
  options.prefix = absl::GetFlag(FLAGS_prefix);
  if (options.out_dir.empty()) {
    std::fprintf(stderr, "shuffle_dataset: --out_dir is required\n");
    return 2;
  }
  auto permutation = common::ShuffleDataset(options);
  if (!permutation.ok()) {
    std::fprintf(stderr, "shuffle_dataset: %s\n",
                 permutation.status().ToString().c_str());
    return 1;
  }
  const size_t permuted = options.prefix > 0
                              ? static_cast<size_t>(options.prefix)
                              : permutation->size();
  std::printf(
      "wrote %s: %zu of %zu training items permuted (seed %llu), "
      "test files copied, %s lists each item's original index\n",
      options.out_dir.c_str(), permuted, permutation->size(),
      static_cast<unsigned long long>(options.seed), common::kPermutationFile);
  return 0;
}
