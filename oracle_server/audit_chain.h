// The audit log's hash chain: how a row is serialized and hashed, and a
// verifier that recomputes the chain and cross-checks the revealed labels.
#ifndef ORACLE_SERVER_AUDIT_CHAIN_H_
#define ORACLE_SERVER_AUDIT_CHAIN_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "oracle_server/label_store.h"

namespace oracle_server {

// prev_hash of the first audit row: 64 zeros.
inline constexpr char kGenesisHash[] =
    "0000000000000000000000000000000000000000000000000000000000000000";

// The canonical serialization of every field of `row` except prev_hash and
// hash, in a fixed order. Each field is written as `name=<byte length>:value;`
// so no value (whatever bytes it holds) can be confused with another field.
// Integers are decimal, id lists comma-separated, the outcome by OutcomeName.
// role and peer come last and only when non-empty: rows from before they
// existed serialize (and hash) exactly as they did then.
std::string CanonicalAuditRow(const AuditRecord& row);

// An audit row's id list as the stores keep it and the chain hashes it:
// decimal, comma-separated, empty for no ids.
std::string FormatAuditIds(const std::vector<int64_t>& ids);

// Inverse of FormatAuditIds; DATA_LOSS naming audit row `sequence` for text
// that is not such a list.
absl::StatusOr<std::vector<int64_t>> ParseAuditIds(absl::string_view text,
                                                   int64_t sequence);

// Lower-case hex SHA256(prev_hash + CanonicalAuditRow(row)).
std::string AuditRowHash(absl::string_view prev_hash, const AuditRecord& row);

// The result of checking an audit log. A log that fails verification is a
// finding, not an error: VerifyAuditLog returns it with ok == false.
struct AuditVerification {
  bool ok = true;             // every check passed
  int64_t rows_verified = 0;  // rows read and checked
  int64_t bad_sequence = 0;   // sequence of the first bad row (0 if ok)
  std::string reason;         // why that row is bad (empty if ok)
};

// Recomputes the chain of every audit row in `store` (sequences 1, 2, ...
// without gaps, each prev_hash equal to the previous row's hash, each hash
// recomputed, the last row equal to the store's recorded head) and checks
// that every revealed label is backed by the GRANTED row that lists it in
// ids_revealed, that no GRANTED row reveals an id already revealed to that
// experiment, that only GRANTED rows reveal ids, that revealed ids were
// asked, and that no experiment was revealed more than its budget. Returns a
// non-OK status only when the store cannot be read.
absl::StatusOr<AuditVerification> VerifyAuditLog(LabelStore& store);

// VerifyAuditLog on the database at `db_path`, opened read-only.
absl::StatusOr<AuditVerification> VerifyAuditLogFile(
    const std::string& db_path);

}  // namespace oracle_server

#endif  // ORACLE_SERVER_AUDIT_CHAIN_H_
