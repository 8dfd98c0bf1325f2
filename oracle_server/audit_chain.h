// The audit log's hash chain: how a row is serialized and hashed, and a
// verifier that recomputes the chain and cross-checks the revealed labels.
#ifndef ORACLE_SERVER_AUDIT_CHAIN_H_
#define ORACLE_SERVER_AUDIT_CHAIN_H_

#include <cstdint>
#include <optional>
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

// What the store knew when it decided a query or evaluation, written at the
// start of that row's detail so that the hash chain covers it: the budget
// and caps the decision was made under, and the counts after it. Rows the
// store decided before terms existed, and rows it did not decide (invalid
// requests), have none. A field below zero is not written.
struct LedgerTerms {
  // Query rows (GRANTED, DENIED_BUDGET).
  int64_t budget = -1;  // the experiment's label budget
  int64_t spent = -1;   // distinct labels revealed to it, this row included
  // Evaluation rows (EVALUATED, DENIED_EVALUATION_CAP).
  int64_t evaluations = -1;     // its EVALUATED rows, this row included
  int64_t evaluation_cap = -1;  // the experiment's cap
  // Server-wide caps, written only where the server set them: EVALUATED rows
  // in the whole log, and those with this row's peer, this row included.
  int64_t total = -1;
  int64_t total_cap = -1;
  int64_t peer_evaluations = -1;
  int64_t peer_cap = -1;
};

// `terms` as space-separated key=value pairs ("budget=100 spent=40"), then
// "; " and `rest` when `rest` is not empty.
std::string DetailWithTerms(const LedgerTerms& terms, absl::string_view rest);

// The terms at the start of `detail` (its text up to the first "; "), or
// nullopt if that text is not a list of known keys with non-negative
// integer values, each at most once: a row without terms. Text after the
// first "; " (a caller's note, for one) never counts as terms.
std::optional<LedgerTerms> ParseDetailTerms(absl::string_view detail);

// A point in the audit log: row `sequence` and its hash. Saved outside the
// database (e.g. after each run), it lets verification notice rows cut off the
// end of the log, which the database alone cannot show: its own record of the
// head can be moved back along with them.
struct AuditHead {
  int64_t sequence = 0;  // 0: the empty log
  std::string hash;      // that row's hash; kGenesisHash for sequence 0
};

// "SEQ HASH", the line `oraclectl head` prints.
std::string FormatAuditHead(const AuditHead& head);

// Parses "SEQ:HASH" or "SEQ HASH" (as FormatAuditHead writes it): SEQ >= 0,
// HASH 64 lower-case hex digits (kGenesisHash when SEQ is 0). INVALID_ARGUMENT
// for anything else.
absl::StatusOr<AuditHead> ParseAuditHead(absl::string_view text);

// The result of checking an audit log. A log that fails verification is a
// finding, not an error: VerifyAuditLog returns it with ok == false.
struct AuditVerification {
  bool ok = true;             // every check passed
  int64_t rows_verified = 0;  // rows read and checked
  int64_t bad_sequence = 0;   // sequence of the first bad row (0 if ok)
  std::string reason;         // why that row is bad (empty if ok)
  AuditHead head;             // the log's last row (if ok)
};

struct VerifyOptions {
  // A head saved earlier: the log must hold row expected_head->sequence with
  // exactly that hash (rows after it are fine: the log grew since). Unset:
  // rows removed from the end go unnoticed if the store's head was moved
  // back with them.
  std::optional<AuditHead> expected_head;
};

// Recomputes the chain of every audit row in `store` (sequences 1, 2, ...
// without gaps, each prev_hash equal to the previous row's hash, each hash
// recomputed, the last row equal to the store's recorded head, and the saved
// head of `options` present) and checks that every revealed label is backed
// by the GRANTED row that lists it in ids_revealed, that no GRANTED row
// reveals an id already revealed to that experiment, that only GRANTED rows
// reveal ids, that revealed ids were asked, that every id a GRANTED row asked
// (and so returned) was revealed to that experiment by that row or an earlier
// one, and that no experiment was revealed more than its budget (as the
// experiments table holds it now). Rows with LedgerTerms must agree with the
// log and the experiments table: the budget and evaluation cap equal the
// table's, spent and evaluation counts equal those counted from row 1, no
// EVALUATED row exceeds a cap it records, and a DENIED_EVALUATION_CAP row
// records a cap that was reached. Returns a non-OK status only when the
// store cannot be read.
absl::StatusOr<AuditVerification> VerifyAuditLog(LabelStore& store,
                                                 const VerifyOptions& options);

// VerifyAuditLog without a saved head.
absl::StatusOr<AuditVerification> VerifyAuditLog(LabelStore& store);

// VerifyAuditLog on the database at `db_path`, opened read-only.
absl::StatusOr<AuditVerification> VerifyAuditLogFile(
    const std::string& db_path);

}  // namespace oracle_server

#endif  // ORACLE_SERVER_AUDIT_CHAIN_H_
