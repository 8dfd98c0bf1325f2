// An append-only, fsync'ed record of the labels a trainer run has bought, so a
// run that is killed at any moment can resume without buying anything twice.
//
// Before asking the oracle, the trainer records its intent (round and ids);
// after the reply it records the labels. On resume, an intent without a
// purchase is replayed with exactly the same ids: the oracle does not charge
// again for ids it already revealed to the experiment, so a crash between the
// oracle's commit and the journal's costs nothing.
//
// File format (text, one record per line):
//   intent <round> <id>,<id>,...
//   bought <round> <id>:<label>,<id>:<label>,...
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

// What a journal file says: every completed purchase, and the last intent if
// the run stopped before its purchase was recorded.
struct PurchaseHistory {
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
  // Returns DATA_LOSS naming the line if a record is malformed; a torn last
  // line (no trailing newline, e.g. after a crash mid-write) is ignored.
  static absl::StatusOr<std::unique_ptr<PurchaseJournal>> Open(
      const std::string& path);

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
  PurchaseJournal(std::string path, std::FILE* file, PurchaseHistory history);
  absl::Status AppendLine(const std::string& line);

  std::string path_;
  std::FILE* file_;
  PurchaseHistory history_;
};

// Parses journal text; exposed for tests.
absl::StatusOr<PurchaseHistory> ParsePurchaseJournal(const std::string& text);

}  // namespace trainer

#endif  // TRAINER_RUN_PURCHASE_JOURNAL_H_
