// An append-only, fsync'ed record of the labels a trainer run has bought, so a
// run that is killed at any moment can resume without buying anything twice.
//
// Before asking the oracle, the trainer records its intent (round and ids);
// after the reply it records the labels. On resume, an intent without a
// purchase is replayed with exactly the same ids: the oracle does not charge
// again for ids it already revealed to the experiment, so a crash between the
// oracle's commit and the journal's costs nothing.
//
// The journal also names the run it belongs to (RunIdentity), so that a
// resume with another experiment, budget, schedule or pool is refused rather
// than mixing two runs' labels.
//
// File format (text, one record per line):
//   run 1 experiment=<name>;budget=<n>;schedule=<n>,<n>,...;pool=<n>
//   intent <round> <id>,<id>,...
//   bought <round> <id>:<label>,<id>:<label>,...
// The `run` header (format 1) is the first line, written with the first
// record. Journals written before it existed have none and still parse.
#ifndef TRAINER_RUN_PURCHASE_JOURNAL_H_
#define TRAINER_RUN_PURCHASE_JOURNAL_H_

#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace trainer {

struct LabelledSample {
  int64_t id = 0;
  int32_t label = 0;
  int32_t round = 0;
};

// What a journal's purchases depend on: a resume must match all of it.
struct RunIdentity {
  std::string experiment;         // --experiment
  int64_t label_budget = 0;       // --budget
  std::vector<int64_t> schedule;  // labels per round, as planned (--schedule)
  int64_t pool_size = 0;          // pool images (--train_limit)
};

// OK if `run` equals `journal` (what a journal's header says); otherwise
// FAILED_PRECONDITION naming the first flag that differs and both values.
absl::Status MatchRunIdentity(const RunIdentity& journal,
                              const RunIdentity& run);

// What a journal file says: every completed purchase, and the last intent if
// the run stopped before its purchase was recorded.
struct PurchaseHistory {
  // The header's run; absent in a journal without one (empty, or written
  // before headers existed).
  std::optional<RunIdentity> identity;
  std::vector<LabelledSample> bought;           // in purchase order
  std::map<int32_t, int64_t> bought_per_round;  // round -> count
  std::optional<std::pair<int32_t, std::vector<int64_t>>> pending_intent;

  bool RoundBought(int32_t round) const {
    return bought_per_round.count(round) > 0;
  }
};

class PurchaseJournal {
 public:
  // Opens (creating if absent) the journal at `path` and reads its history.
  // If the journal is empty, `identity` becomes its header, written with the
  // first record; an existing header is left as it is (compare it with
  // MatchRunIdentity). Returns DATA_LOSS naming the line if a record is
  // malformed; a torn last line (no trailing newline, e.g. after a crash
  // mid-write) is ignored. INVALID_ARGUMENT if identity.experiment holds
  // whitespace or ';' (the oracle accepts only [A-Za-z0-9_.-]).
  static absl::StatusOr<std::unique_ptr<PurchaseJournal>> Open(
      const std::string& path, const RunIdentity& identity);

  ~PurchaseJournal();
  PurchaseJournal(const PurchaseJournal&) = delete;
  PurchaseJournal& operator=(const PurchaseJournal&) = delete;

  const PurchaseHistory& history() const { return history_; }

  // Records the ids about to be bought in `round`; durable on return.
  absl::Status RecordIntent(int32_t round, const std::vector<int64_t>& ids);

  // Records bought labels; durable on return. Clears the pending intent.
  absl::Status RecordPurchase(int32_t round, const std::vector<int64_t>& ids,
                              const std::vector<int32_t>& labels);

 private:
  PurchaseJournal(std::string path, std::FILE* file, PurchaseHistory history,
                  std::optional<RunIdentity> pending_header);
  // Appends `line`, preceded by the header if it is still to be written.
  absl::Status AppendLine(const std::string& line);

  std::string path_;
  std::FILE* file_;
  PurchaseHistory history_;
  // The header an empty journal gets with its first record.
  std::optional<RunIdentity> pending_header_;
};

// Parses journal text; exposed for tests.
absl::StatusOr<PurchaseHistory> ParsePurchaseJournal(const std::string& text);

}  // namespace trainer

#endif  // TRAINER_RUN_PURCHASE_JOURNAL_H_
