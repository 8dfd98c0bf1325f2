#include "trainer/report/run_report.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "common/atomic_file.h"
#include "common/json_writer.h"
#include "common/status_macros.h"
#include "trainer/report/report_html.h"

namespace trainer {
namespace {

using ::common::JsonNumber;
using ::common::JsonWriter;

std::string JoinPath(const std::string& dir, absl::string_view name) {
  return (std::filesystem::path(dir) / std::string(name)).string();
}

absl::Status ErrnoError(int error_number, absl::string_view what,
                        absl::string_view path) {
  return absl::ErrnoToStatus(error_number, absl::StrCat(what, " ", path));
}

// Truncates the file at `path` after its last '\n', dropping a partial last
// line left by a crash mid-write. A missing file is not an error.
absl::Status DropTornLine(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return errno == ENOENT ? absl::OkStatus()
                           : ErrnoError(errno, "cannot open", path);
  }
  const std::string content((std::istreambuf_iterator<char>(in)),
                            std::istreambuf_iterator<char>());
  if (in.bad()) return ErrnoError(errno, "cannot read", path);
  if (content.empty() || content.back() == '\n') return absl::OkStatus();
  const size_t last_newline = content.rfind('\n');
  const size_t keep = last_newline == std::string::npos ? 0 : last_newline + 1;
  std::error_code error;
  std::filesystem::resize_file(path, keep, error);
  if (error) return ErrnoError(error.value(), "cannot truncate", path);
  return absl::OkStatus();
}

// Returns the time_s of the last record in metrics.jsonl at `path`, 0 if the
// file is missing or has no records.
absl::StatusOr<double> LastTimeS(const std::string& path) {
  std::ifstream in(path);
  if (!in) return 0.0;
  std::string line;
  double last = 0;
  while (std::getline(in, line)) {
    static constexpr char kKey[] = "\"time_s\":";
    const size_t key = line.find(kKey);
    if (key == std::string::npos) continue;
    const size_t begin = key + sizeof(kKey) - 1;
    const size_t end = line.find_first_of(",}", begin);
    if (end == std::string::npos) continue;
    double value;
    if (absl::SimpleAtod(absl::string_view(line).substr(begin, end - begin),
                         &value) &&
        std::isfinite(value)) {
      last = value;
    }
  }
  if (in.bad()) return ErrnoError(errno, "cannot read", path);
  return last;
}

// Quotes a CSV field when it contains a separator, quote or line break
// (RFC 4180).
std::string CsvField(absl::string_view text) {
  if (text.find_first_of(",\"\r\n") == absl::string_view::npos) {
    return std::string(text);
  }
  std::string out = "\"";
  for (char c : text) {
    if (c == '"') out.push_back('"');
    out.push_back(c);
  }
  out.push_back('"');
  return out;
}

// Writes `line` and flushes `file`.
absl::Status WriteLine(std::FILE* file, const std::string& line,
                       const std::string& path) {
  if (std::fwrite(line.data(), 1, line.size(), file) != line.size() ||
      std::fputc('\n', file) == EOF || std::fflush(file) != 0) {
    return ErrnoError(errno, "cannot write", path);
  }
  return absl::OkStatus();
}

void WriteRound(const RoundRecord& round, JsonWriter& json) {
  json.BeginObject();
  json.Key("round").Int(round.round);
  json.Key("labels_spent").Int(round.labels_spent);
  json.Key("test_accuracy").Double(round.test_accuracy);
  json.Key("steps").Int(round.steps);
  json.Key("strategy").String(round.strategy);
  json.EndObject();
}

// The keys every metrics.jsonl line may carry besides the scalars.
constexpr absl::string_view kMetricsKeys[] = {
    "step", "time_s", "stage", "loss", "lr", "steps_per_s", "test_accuracy"};

// INVALID_ARGUMENT if a scalar's name is empty, repeats another scalar's or
// is one of kMetricsKeys: the line would not be a valid JSON object with
// unique keys.
absl::Status CheckScalarNames(const StepMetrics& metrics) {
  std::set<absl::string_view> seen(std::begin(kMetricsKeys),
                                   std::end(kMetricsKeys));
  for (const auto& scalar : metrics.scalars) {
    if (scalar.first.empty() || !seen.insert(scalar.first).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("metrics: scalar name \"", scalar.first,
                       "\" is empty or not unique"));
    }
  }
  return absl::OkStatus();
}

// Splits CSV text into records of raw (still quoted) text, honouring line
// breaks inside quoted fields. A last record without its line break, or
// with an unterminated quote, was torn by a crash and is dropped.
std::vector<absl::string_view> CsvRecords(absl::string_view text) {
  std::vector<absl::string_view> records;
  size_t begin = 0;
  bool quoted = false;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '"') {
      quoted = !quoted;
    } else if (text[i] == '\n' && !quoted) {
      absl::string_view record = text.substr(begin, i - begin);
      if (!record.empty() && record.back() == '\r') record.remove_suffix(1);
      records.push_back(record);
      begin = i + 1;
    }
  }
  return records;
}

// The value of a CSV field as CsvField writes it: a quoted field loses its
// quotes and "" becomes ". Returns false if the quoting is malformed.
bool UnquoteCsvField(absl::string_view field, std::string* value) {
  if (field.empty() || field.front() != '"') {
    if (field.find('"') != absl::string_view::npos) return false;
    *value = std::string(field);
    return true;
  }
  if (field.size() < 2 || field.back() != '"') return false;
  value->clear();
  const absl::string_view inner = field.substr(1, field.size() - 2);
  for (size_t i = 0; i < inner.size(); ++i) {
    if (inner[i] == '"') {
      if (i + 1 >= inner.size() || inner[i + 1] != '"') return false;
      ++i;
    }
    value->push_back(inner[i]);
  }
  return true;
}

// Parses one rounds.csv record as AppendRound writes it; false for the
// header, a torn record or a foreign one. An empty accuracy (AppendRound's
// spelling of a non-finite one) reads as NaN.
bool ParseRoundRecord(absl::string_view line, RoundRecord* record) {
  const std::vector<absl::string_view> fields =
      absl::StrSplit(line, absl::MaxSplits(',', 4));
  if (fields.size() != 5 || !absl::SimpleAtoi(fields[0], &record->round) ||
      !absl::SimpleAtoi(fields[1], &record->labels_spent) ||
      !absl::SimpleAtoi(fields[3], &record->steps)) {
    return false;
  }
  if (fields[2].empty()) {
    record->test_accuracy = std::numeric_limits<double>::quiet_NaN();
  } else if (!absl::SimpleAtod(fields[2], &record->test_accuracy)) {
    return false;
  }
  return UnquoteCsvField(fields[4], &record->strategy);
}

bool IsFraction(double value) { return value >= 0 && value <= 1; }

}  // namespace

const std::vector<std::string>& FashionMnistClassNames() {
  static const auto* const kNames = new std::vector<std::string>{
      "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
      "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
  return *kNames;
}

absl::Status ValidateFinalReport(const FinalReport& report) {
  const size_t num_classes = report.class_names.size();
  if (num_classes == 0) {
    return absl::InvalidArgumentError("report: class_names is empty");
  }
  const bool withheld =
      report.per_class_accuracy.empty() && report.confusion.empty();
  if (!withheld && report.per_class_accuracy.size() != num_classes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "report: per_class_accuracy has ", report.per_class_accuracy.size(),
        " entries, expected ", num_classes));
  }
  if (!withheld && report.confusion.size() != num_classes) {
    return absl::InvalidArgumentError(
        absl::StrCat("report: confusion has ", report.confusion.size(),
                     " rows, expected ", num_classes));
  }
  for (size_t row = 0; row < report.confusion.size(); ++row) {
    if (report.confusion[row].size() != num_classes) {
      return absl::InvalidArgumentError(absl::StrCat(
          "report: confusion row ", row, " has ", report.confusion[row].size(),
          " columns, expected ", num_classes));
    }
  }
  for (const QueriedSample& sample : report.queried) {
    if (sample.label < 0 || static_cast<size_t>(sample.label) >= num_classes) {
      return absl::InvalidArgumentError(
          absl::StrCat("report: queried sample ", sample.id, " has label ",
                       sample.label, ", expected [0, ", num_classes, ")"));
    }
    if (sample.pixels.size() != kImageSide * kImageSide) {
      return absl::InvalidArgumentError(absl::StrCat(
          "report: queried sample ", sample.id, " has ", sample.pixels.size(),
          " pixels, expected ", kImageSide * kImageSide));
    }
  }
  for (const FeatureQualityRecord& record : report.feature_quality) {
    if (record.labels < 0 || !IsFraction(record.embedding_accuracy) ||
        !IsFraction(record.pca_accuracy)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "report: feature_quality \"", record.stage, "\" has labels ",
          record.labels, ", embedding_accuracy ", record.embedding_accuracy,
          ", pca_accuracy ", record.pca_accuracy,
          ", expected labels >= 0 and accuracies in [0, 1]"));
    }
  }
  return absl::OkStatus();
}

std::string RenderReportJson(const FinalReport& report) {
  JsonWriter json;
  json.BeginObject();
  json.Key("experiment").String(report.experiment);
  json.Key("strategy").String(report.strategy);
  json.Key("objective").String(report.objective);
  json.Key("initial_weights").String(report.initial_weights);
  json.Key("labels_spent").Int(report.labels_spent);
  json.Key("label_budget").Int(report.label_budget);
  json.Key("accuracy").Double(report.accuracy);
  json.Key("per_class_accuracy").BeginArray();
  for (double accuracy : report.per_class_accuracy) json.Double(accuracy);
  json.EndArray();
  json.Key("confusion").BeginArray();
  for (const std::vector<int64_t>& row : report.confusion) {
    json.BeginArray();
    for (int64_t count : row) json.Int(count);
    json.EndArray();
  }
  json.EndArray();
  json.Key("class_names").BeginArray();
  for (const std::string& name : report.class_names) json.String(name);
  json.EndArray();
  json.Key("wall_time_s").Double(report.wall_time_s);
  json.Key("steps").Int(report.steps);
  json.Key("planned_steps").Int(report.planned_steps);
  json.Key("steps_per_s").Double(report.steps_per_s);
  json.Key("device").String(report.device);
  json.Key("config").BeginObject();
  for (const auto& [key, value] : report.config) json.Key(key).String(value);
  json.EndObject();
  const PretrainSummary& pretrain = report.pretrain;
  json.Key("pretrain").BeginObject();
  json.Key("method").String(pretrain.method);
  json.Key("checkpoint").String(pretrain.checkpoint);
  json.Key("reused").Bool(pretrain.reused);
  json.Key("steps").Int(pretrain.steps);
  json.Key("wall_time_s").Double(pretrain.wall_time_s);
  json.Key("loss_curve").BeginArray();
  for (const LossCurvePoint& point : pretrain.loss_curve) {
    json.BeginObject();
    json.Key("step").Int(point.step);
    json.Key("loss").Double(point.loss);
    json.EndObject();
  }
  json.EndArray();
  json.EndObject();
  json.Key("feature_quality").BeginArray();
  for (const FeatureQualityRecord& record : report.feature_quality) {
    json.BeginObject();
    json.Key("stage").String(record.stage);
    json.Key("labels").Int(record.labels);
    json.Key("embedding_accuracy").Double(record.embedding_accuracy);
    json.Key("pca_accuracy").Double(record.pca_accuracy);
    json.EndObject();
  }
  json.EndArray();
  json.Key("rounds").BeginArray();
  for (const RoundRecord& round : report.rounds) WriteRound(round, json);
  json.EndArray();
  json.Key("label_curve").BeginArray();
  for (const LabelCurvePoint& point : report.label_curve) {
    json.BeginObject();
    json.Key("labels_spent").Int(point.labels_spent);
    json.Key("accuracy").Double(point.accuracy);
    json.EndObject();
  }
  json.EndArray();
  json.Key("step_curve").BeginArray();
  for (const StepCurvePoint& point : report.step_curve) {
    json.BeginObject();
    json.Key("step").Int(point.step);
    json.Key("accuracy").Double(point.accuracy);
    json.EndObject();
  }
  json.EndArray();
  json.Key("queried").BeginArray();
  for (const QueriedSample& sample : report.queried) {
    json.BeginObject();
    json.Key("id").Int(sample.id);
    json.Key("label").Int(sample.label);
    json.Key("round").Int(sample.round);
    json.Key("pixels_b64")
        .String(absl::Base64Escape(absl::string_view(
            reinterpret_cast<const char*>(sample.pixels.data()),
            sample.pixels.size())));
    json.EndObject();
  }
  json.EndArray();
  json.EndObject();
  return json.str();
}

absl::StatusOr<std::unique_ptr<RunReportWriter>> RunReportWriter::Create(
    const std::string& out_dir, bool resume) {
  RunReportOptions options;
  options.out_dir = out_dir;
  options.resume = resume;
  return Create(options);
}

absl::StatusOr<std::unique_ptr<RunReportWriter>> RunReportWriter::Create(
    const RunReportOptions& options) {
  if (options.out_dir.empty()) {
    return absl::InvalidArgumentError("RunReportWriter: out_dir is empty");
  }
  std::error_code error;
  std::filesystem::create_directories(options.out_dir, error);
  if (error) {
    return ErrnoError(error.value(), "cannot create directory",
                      options.out_dir);
  }
  const std::string metrics_path = JoinPath(options.out_dir, kMetricsFile);
  const std::string rounds_path = JoinPath(options.out_dir, kRoundsFile);
  double time_offset_s = 0;
  if (options.resume) {
    RETURN_IF_ERROR(DropTornLine(metrics_path));
    RETURN_IF_ERROR(DropTornLine(rounds_path));
    ASSIGN_OR_RETURN(time_offset_s, LastTimeS(metrics_path));
  }
  const char* mode = options.resume ? "ab" : "wb";
  std::FILE* metrics = std::fopen(metrics_path.c_str(), mode);
  if (metrics == nullptr) return ErrnoError(errno, "cannot open", metrics_path);
  std::FILE* rounds = std::fopen(rounds_path.c_str(), mode);
  if (rounds == nullptr) {
    const int error_number = errno;
    std::fclose(metrics);
    return ErrnoError(error_number, "cannot open", rounds_path);
  }
  // In append mode the position is the end of the file, i.e. its size.
  std::fseek(rounds, 0, SEEK_END);
  const bool rounds_has_header = std::ftell(rounds) > 0;
  std::function<absl::Time()> clock =
      options.clock ? options.clock : [] { return absl::Now(); };
  const absl::Time start = clock();
  return std::unique_ptr<RunReportWriter>(
      new RunReportWriter(options.out_dir, std::move(clock), start,
                          time_offset_s, metrics, rounds, rounds_has_header));
}

RunReportWriter::RunReportWriter(std::string out_dir,
                                 std::function<absl::Time()> clock,
                                 absl::Time start, double time_offset_s,
                                 std::FILE* metrics, std::FILE* rounds,
                                 bool rounds_has_header)
    : out_dir_(std::move(out_dir)),
      clock_(std::move(clock)),
      start_(start),
      time_offset_s_(time_offset_s),
      metrics_(metrics),
      rounds_(rounds),
      rounds_has_header_(rounds_has_header) {}

RunReportWriter::~RunReportWriter() {
  std::fclose(metrics_);
  std::fclose(rounds_);
}

absl::Status RunReportWriter::AppendMetrics(const StepMetrics& metrics) {
  RETURN_IF_ERROR(CheckScalarNames(metrics));
  const double elapsed_s =
      time_offset_s_ + absl::ToDoubleSeconds(clock_() - start_);
  JsonWriter json;
  json.BeginObject();
  json.Key("step").Int(metrics.step);
  json.Key("time_s").Double(std::round(elapsed_s * 1000) / 1000);
  json.Key("stage").String(metrics.stage);
  json.Key("loss").Double(metrics.loss);
  for (const auto& [name, value] : metrics.scalars)
    json.Key(name).Double(value);
  json.Key("lr").Double(metrics.lr);
  json.Key("steps_per_s").Double(metrics.steps_per_s);
  if (metrics.test_accuracy.has_value()) {
    json.Key("test_accuracy").Double(*metrics.test_accuracy);
  }
  json.EndObject();
  return WriteLine(metrics_, json.str(), JoinPath(out_dir_, kMetricsFile));
}

absl::Status RunReportWriter::AppendRound(const RoundRecord& record) {
  const std::string path = JoinPath(out_dir_, kRoundsFile);
  if (!rounds_has_header_) {
    RETURN_IF_ERROR(WriteLine(
        rounds_, "round,labels_spent,test_accuracy,steps,strategy", path));
    rounds_has_header_ = true;
  }
  const std::string accuracy = std::isfinite(record.test_accuracy)
                                   ? JsonNumber(record.test_accuracy)
                                   : "";
  return WriteLine(
      rounds_,
      absl::StrCat(record.round, ",", record.labels_spent, ",", accuracy, ",",
                   record.steps, ",", CsvField(record.strategy)),
      path);
}

std::vector<RoundRecord> RunReportWriter::ReadRounds(
    const std::string& out_dir) {
  std::ifstream in(JoinPath(out_dir, kRoundsFile), std::ios::binary);
  const std::string content((std::istreambuf_iterator<char>(in)),
                            std::istreambuf_iterator<char>());
  std::map<int, RoundRecord> by_round;
  for (absl::string_view line : CsvRecords(content)) {
    RoundRecord record;
    if (ParseRoundRecord(line, &record)) by_round[record.round] = record;
  }
  std::vector<RoundRecord> rounds;
  rounds.reserve(by_round.size());
  for (auto& [round, record] : by_round) rounds.push_back(std::move(record));
  return rounds;
}

absl::Status RunReportWriter::WriteReport(const FinalReport& report) {
  RETURN_IF_ERROR(ValidateFinalReport(report));
  ASSIGN_OR_RETURN(const std::string html, RenderReportHtml(report));
  RETURN_IF_ERROR(
      common::WriteFileAtomically(JoinPath(out_dir_, kReportJsonFile),
                                  RenderReportJson(report) + "\n"));
  return common::WriteFileAtomically(JoinPath(out_dir_, kReportHtmlFile),
                                     html);
}

}  // namespace trainer
