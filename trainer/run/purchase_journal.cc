#include "trainer/run/purchase_journal.h"

#include <unistd.h>

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

}  // namespace

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
    const std::string& path) {
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
  return std::unique_ptr<PurchaseJournal>(
      new PurchaseJournal(path, file, std::move(history)));
}

PurchaseJournal::PurchaseJournal(std::string path, std::FILE* file,
                                 PurchaseHistory history)
    : path_(std::move(path)), file_(file), history_(std::move(history)) {}

PurchaseJournal::~PurchaseJournal() { std::fclose(file_); }

absl::Status PurchaseJournal::AppendLine(const std::string& line) {
  if (std::fputs(line.c_str(), file_) < 0 || std::fputc('\n', file_) < 0 ||
      std::fflush(file_) != 0 || fsync(fileno(file_)) != 0) {
    return absl::DataLossError(
        absl::StrCat("cannot write ", path_, ": ", std::strerror(errno)));
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
