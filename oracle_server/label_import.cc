#include "oracle_server/label_import.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/idx_file.h"
#include "common/sha256.h"
#include "common/status_macros.h"

namespace oracle_server {

std::string LabelContentSha256(const std::vector<uint8_t>& labels) {
  return common::Sha256Hex(absl::string_view(
      reinterpret_cast<const char*>(labels.data()), labels.size()));
}

absl::Status CheckLabelValues(const std::string& source,
                              const std::vector<uint8_t>& labels) {
  for (size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] >= common::kNumClasses) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": label ", labels[i], " of sample ", i,
                       " is not in [0, ", common::kNumClasses, ")"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckLabelsMatchRecord(const std::string& source, Split split,
                                    const DatasetSplitInfo& recorded,
                                    const std::vector<uint8_t>& labels) {
  const std::string sha256 = LabelContentSha256(labels);
  if (sha256 == recorded.content_sha256) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      source, ": the ", SplitName(split), " labels changed since they were ",
      "imported from ", recorded.source_path, " (", recorded.count,
      " labels, sha256 ", recorded.content_sha256, "); they now are ",
      labels.size(), " labels with sha256 ", sha256,
      "; restore the original labels or use a new database"));
}

absl::StatusOr<ImportedLabels> ReadLabelFile(const std::string& path,
                                             int64_t count) {
  ImportedLabels imported;
  ASSIGN_OR_RETURN(imported.labels, common::ReadIdxLabels(path, count));
  RETURN_IF_ERROR(CheckLabelValues(path, imported.labels));
  imported.info.source_path = path;
  imported.info.count = static_cast<int64_t>(imported.labels.size());
  imported.info.content_sha256 = LabelContentSha256(imported.labels);
  return imported;
}

}  // namespace oracle_server
