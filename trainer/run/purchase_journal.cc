#include "trainer/run/purchase_journal.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"

namespace trainer {
namespace {

absl::Status Malformed(int line_number, const std::string& why) {
  return absl::DataLossError(
      absl::StrCat("purchase journal line ", line_number, ": ", why));
}

constexpr char kHeaderFormat[] = "1";

std::string HeaderLine(const RunIdentity& identity) {
  return absl::StrCat("run ", kHeaderFormat, " experiment=", identity.experiment,
                      ";budget=", identity.label_budget,
                      ";schedule=", absl::StrJoin(identity.schedule, ","),
                      ";pool=", identity.pool_size);
}

// The identity in a header's third field: experiment=...;budget=...;...
absl::StatusOr<RunIdentity> ParseHeader(const std::string& items,
                                        int line_number) {
  RunIdentity identity;
  std::vector<std::string> keys;
  for (absl::string_view item : absl::StrSplit(items, ';')) {
    std::pair<std::string, std::string> key_value =
        absl::StrSplit(item, absl::MaxSplits('=', 1));
    const std::string& key = key_value.first;
    const std::string& value = key_value.second;
    bool ok = true;
    if (key == "experiment") {
      identity.experiment = value;
    } else if (key == "budget") {
      ok = absl::SimpleAtoi(value, &identity.label_budget);
    } else if (key == "pool") {
      ok = absl::SimpleAtoi(value, &identity.pool_size);
    } else if (key == "schedule") {
      for (absl::string_view n : absl::StrSplit(value, ',')) {
        int64_t labels = 0;
        ok = ok && absl::SimpleAtoi(n, &labels);
        identity.schedule.push_back(labels);
      }
    } else {
      return Malformed(line_number, absl::StrCat("unknown run field '", key,
                                                 "'"));
    }
    if (!ok) {
      return Malformed(line_number,
                       absl::StrCat("bad run field ", key, "='", value, "'"));
    }
    keys.push_back(key);
  }
  std::sort(keys.begin(), keys.end());
  if (keys != std::vector<std::string>{"budget", "experiment", "pool",
                                       "schedule"}) {
    return Malformed(line_number,
                     "the run header needs experiment, budget, schedule and "
                     "pool once each");
  }
  return identity;
}

}  // namespace

absl::Status MatchRunIdentity(const RunIdentity& journal,
                              const RunIdentity& run) {
  std::string flag, was, is;
  if (journal.experiment != run.experiment) {
    flag = "--experiment";
    was = journal.experiment;
    is = run.experiment;
  } else if (journal.label_budget != run.label_budget) {
    flag = "--budget";
    was = absl::StrCat(journal.label_budget);
    is = absl::StrCat(run.label_budget);
  } else if (journal.schedule != run.schedule) {
    flag = "--schedule";
    was = absl::StrJoin(journal.schedule, ",");
    is = absl::StrJoin(run.schedule, ",");
  } else if (journal.pool_size != run.pool_size) {
    flag = "--train_limit";
    was = absl::StrCat("a pool of ", journal.pool_size, " images");
    is = absl::StrCat(run.pool_size);
  } else {
    return absl::OkStatus();
  }
  return absl::FailedPreconditionError(
      absl::StrCat("the journal was written by a run with ", flag, "=", was,
                   ", not ", is));
}

absl::StatusOr<PurchaseHistory> ParsePurchaseJournal(const std::string& text) {
  PurchaseHistory history;
  std::vector<std::string> lines = absl::StrSplit(text, '\n');
  // The last element is what follows the final newline: empty for a
  // complete file, a torn record otherwise. Either way it is ignored.
  lines.pop_back();
  int line_number = 0;
  for (const std::string& line : lines) {
    ++line_number;
    if (line.empty()) continue;
    std::vector<std::string> fields = absl::StrSplit(line, ' ');
    if (fields[0] == "run") {
      if (line_number != 1) {
        return Malformed(line_number, "the run header must be the first line");
      }
      if (fields.size() != 3 || fields[1] != kHeaderFormat) {
        return Malformed(line_number, absl::StrCat("expected 'run ",
                                                   kHeaderFormat,
                                                   " <fields>'"));
      }
      ASSIGN_OR_RETURN(history.identity, ParseHeader(fields[2], line_number));
      continue;
    }
    int32_t round = 0;
    if (fields.size() != 3 || !absl::SimpleAtoi(fields[1], &round)) {
      return Malformed(line_number, "expected '<kind> <round> <items>'");
    }
    if (fields[0] == "intent") {
      std::vector<int64_t> ids;
      for (absl::string_view item : absl::StrSplit(fields[2], ',')) {
        int64_t id = 0;
        if (!absl::SimpleAtoi(item, &id))
          return Malformed(line_number, "bad id");
        ids.push_back(id);
      }
      history.pending_intent = std::make_pair(round, std::move(ids));
    } else if (fields[0] == "bought") {
      for (absl::string_view item : absl::StrSplit(fields[2], ',')) {
        std::pair<std::string, std::string> id_label =
            absl::StrSplit(item, absl::MaxSplits(':', 1));
        LabelledSample sample;
        sample.round = round;
        if (!absl::SimpleAtoi(id_label.first, &sample.id) ||
            !absl::SimpleAtoi(id_label.second, &sample.label)) {
          return Malformed(line_number, "bad id:label");
        }
        history.bought.push_back(sample);
        ++history.bought_per_round[round];
      }
      history.pending_intent.reset();
    } else {
      return Malformed(line_number,
                       absl::StrCat("unknown record '", fields[0], "'"));
    }
  }
  return history;
}

absl::StatusOr<std::unique_ptr<PurchaseJournal>> PurchaseJournal::Open(
    const std::string& path, const RunIdentity& identity) {
  if (identity.experiment.find_first_of(" \t\n\r;") != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("experiment name \"", identity.experiment,
                     "\" may only hold [A-Za-z0-9_.-]"));
  }
  std::string text;
  {
    std::ifstream in(path, std::ios::binary);
    if (in) {
      std::stringstream buffer;
      buffer << in.rdbuf();
      text = buffer.str();
    }
  }
  ASSIGN_OR_RETURN(PurchaseHistory history, ParsePurchaseJournal(text));
  // A torn last line (a crash mid-write) is cut off so that the next record
  // starts on a line of its own.
  const size_t complete = text.rfind('\n') == std::string::npos
                              ? 0
                              : text.rfind('\n') + 1;
  if (complete != text.size()) {
    std::error_code error;
    std::filesystem::resize_file(path, complete, error);
    if (error) {
      return absl::DataLossError(absl::StrCat("cannot cut the torn last line of ",
                                              path, ": ", error.message()));
    }
  }
  std::FILE* file = std::fopen(path.c_str(), "ab");
  if (file == nullptr) {
    return absl::PermissionDeniedError(absl::StrCat(
        "cannot open ", path, " for append: ", std::strerror(errno)));
  }
  std::optional<RunIdentity> pending_header;
  if (complete == 0) pending_header = identity;
  return std::unique_ptr<PurchaseJournal>(new PurchaseJournal(
      path, file, std::move(history), std::move(pending_header)));
}

PurchaseJournal::PurchaseJournal(std::string path, std::FILE* file,
                                 PurchaseHistory history,
                                 std::optional<RunIdentity> pending_header)
    : path_(std::move(path)),
      file_(file),
      history_(std::move(history)),
      pending_header_(std::move(pending_header)) {}

PurchaseJournal::~PurchaseJournal() { std::fclose(file_); }

absl::Status PurchaseJournal::AppendLine(const std::string& line) {
  const std::string text =
      pending_header_.has_value()
          ? absl::StrCat(HeaderLine(*pending_header_), "\n", line, "\n")
          : absl::StrCat(line, "\n");
  if (std::fputs(text.c_str(), file_) < 0 || std::fflush(file_) != 0 ||
      fsync(fileno(file_)) != 0) {
    return absl::DataLossError(
        absl::StrCat("cannot write ", path_, ": ", std::strerror(errno)));
  }
  if (pending_header_.has_value()) {
    history_.identity = std::move(pending_header_);
    pending_header_.reset();
  }
  return absl::OkStatus();
}

absl::Status PurchaseJournal::RecordIntent(int32_t round,
                                           const std::vector<int64_t>& ids) {
  if (ids.empty()) return absl::InvalidArgumentError("empty intent");
  RETURN_IF_ERROR(
      AppendLine(absl::StrCat("intent ", round, " ", absl::StrJoin(ids, ","))));
  history_.pending_intent = std::make_pair(round, ids);
  return absl::OkStatus();
}

absl::Status PurchaseJournal::RecordPurchase(
    int32_t round, const std::vector<int64_t>& ids,
    const std::vector<int32_t>& labels) {
  if (ids.empty() || ids.size() != labels.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "purchase of ", ids.size(), " ids with ", labels.size(), " labels"));
  }
  std::vector<std::string> items;
  items.reserve(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    items.push_back(absl::StrCat(ids[i], ":", labels[i]));
  }
  RETURN_IF_ERROR(AppendLine(
      absl::StrCat("bought ", round, " ", absl::StrJoin(items, ","))));
  for (size_t i = 0; i < ids.size(); ++i) {
    history_.bought.push_back({ids[i], labels[i], round});
  }
  history_.bought_per_round[round] += static_cast<int64_t>(ids.size());
  history_.pending_intent.reset();
  return absl::OkStatus();
}

}  // namespace trainer
