// Label import shared by the stores: reads an IDX label file, checks every
// label, and computes the content hash the store records about it.
#ifndef ORACLE_SERVER_LABEL_IMPORT_H_
#define ORACLE_SERVER_LABEL_IMPORT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "oracle_server/label_store.h"

namespace oracle_server {

// Labels as imported, with what is recorded about them.
struct ImportedLabels {
  DatasetSplitInfo info;        // source, content hash, count
  std::vector<uint8_t> labels;  // by sample id
};

// Hex SHA-256 of the label bytes: DatasetSplitInfo::content_sha256.
std::string LabelContentSha256(const std::vector<uint8_t>& labels);

// Checks that every label is in [0, common::kNumClasses); INVALID_ARGUMENT
// naming `source` and the first bad sample otherwise.
absl::Status CheckLabelValues(const std::string& source,
                              const std::vector<uint8_t>& labels);

// Checks the `split` labels a store loaded at open from `source` (e.g.
// "database oracle.db" or "labels table data.train") against `recorded`, what
// the database recorded when they were first imported. FAILED_PRECONDITION
// naming `source`, the split and both content hashes when they differ.
absl::Status CheckLabelsMatchRecord(const std::string& source, Split split,
                                    const DatasetSplitInfo& recorded,
                                    const std::vector<uint8_t>& labels);

// Reads the gzipped or plain IDX label file at `path`, which must hold
// exactly `count` labels. NOT_FOUND / DATA_LOSS / INVALID_ARGUMENT /
// FAILED_PRECONDITION from the IDX reader (missing file, truncation, wrong
// magic, wrong count); INVALID_ARGUMENT for a label outside [0, 10).
absl::StatusOr<ImportedLabels> ReadLabelFile(const std::string& path,
                                             int64_t count);

}  // namespace oracle_server

#endif  // ORACLE_SERVER_LABEL_IMPORT_H_
