#include "trainer/report/run_report.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "common/status_matchers.h"

namespace trainer {
namespace {

using ::common::IsOk;
using ::common::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

// A fresh, empty directory under the test temp dir.
std::string FreshDir(const std::string& name) {
  const std::filesystem::path dir =
      std::filesystem::path(::testing::TempDir()) / "run_report_test" / name;
  std::filesystem::remove_all(dir);
  return dir.string();
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream content;
  content << in.rdbuf();
  return content.str();
}

std::vector<std::string> ReadLines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

int CountOccurrences(const std::string& text, const std::string& needle) {
  int count = 0;
  for (size_t pos = text.find(needle); pos != std::string::npos;
       pos = text.find(needle, pos + needle.size())) {
    ++count;
  }
  return count;
}

// A clock the test advances by hand; shared with the writer by reference.
class FakeClock {
 public:
  absl::Time Now() const { return now_; }
  void Advance(double seconds) { now_ += absl::Seconds(seconds); }

 private:
  absl::Time now_ = absl::FromUnixSeconds(1700000000);
};

RunReportOptions Options(const std::string& dir, bool resume,
                         FakeClock& clock) {
  RunReportOptions options;
  options.out_dir = dir;
  options.resume = resume;
  options.clock = [&clock] { return clock.Now(); };
  return options;
}

StepMetrics Metrics(int64_t step) {
  StepMetrics metrics;
  metrics.step = step;
  metrics.loss = 0.75;
  metrics.scalars = {{"loss_x", 0.5}, {"loss_u", 0.25}, {"mask_rate", 0.625}};
  metrics.lr = 0.03;
  metrics.steps_per_s = 12.5;
  return metrics;
}

TEST(RunReportWriterTest, AppendsOneJsonObjectPerMetricsLine) {
  const std::string dir = FreshDir("metrics");
  FakeClock clock;
  auto writer = RunReportWriter::Create(Options(dir, false, clock));
  ASSERT_THAT(writer, IsOk());

  clock.Advance(1.5);
  ASSERT_THAT((*writer)->AppendMetrics(Metrics(10)), IsOk());
  // Flushed: visible before the writer is closed.
  EXPECT_THAT(
      ReadLines(dir + "/metrics.jsonl"),
      ElementsAre(R"({"step":10,"time_s":1.5,"stage":"train",)"
                  R"("loss":0.75,"loss_x":0.5,"loss_u":0.25,)"
                  R"("mask_rate":0.625,"lr":0.03,"steps_per_s":12.5})"));

  clock.Advance(0.12345);
  StepMetrics with_eval = Metrics(20);
  with_eval.test_accuracy = 0.875;
  with_eval.loss = std::nan("");
  ASSERT_THAT((*writer)->AppendMetrics(with_eval), IsOk());
  EXPECT_EQ(ReadLines(dir + "/metrics.jsonl").at(1),
            R"({"step":20,"time_s":1.623,"stage":"train","loss":null,)"
            R"("loss_x":0.5,"loss_u":0.25,"mask_rate":0.625,"lr":0.03,)"
            R"("steps_per_s":12.5,"test_accuracy":0.875})");
}

TEST(RunReportWriterTest, WritesTheStageAndTheObjectivesScalarsInOrder) {
  const std::string dir = FreshDir("scalars");
  FakeClock clock;
  auto writer = RunReportWriter::Create(Options(dir, false, clock));
  ASSERT_THAT(writer, IsOk());
  StepMetrics pretrain;
  pretrain.step = 3;
  pretrain.stage = "pretrain";
  pretrain.loss = 5.5;
  pretrain.scalars = {{"positive_accuracy", 0.25},
                      {"z_norm", std::numeric_limits<double>::infinity()}};
  pretrain.lr = 0.3;
  pretrain.steps_per_s = 2;
  ASSERT_THAT((*writer)->AppendMetrics(pretrain), IsOk());
  StepMetrics no_scalars;
  no_scalars.step = 4;
  ASSERT_THAT((*writer)->AppendMetrics(no_scalars), IsOk());
  EXPECT_THAT(
      ReadLines(dir + "/metrics.jsonl"),
      ElementsAre(R"({"step":3,"time_s":0,"stage":"pretrain","loss":5.5,)"
                  R"("positive_accuracy":0.25,"z_norm":null,"lr":0.3,)"
                  R"("steps_per_s":2})",
                  R"({"step":4,"time_s":0,"stage":"train","loss":0,"lr":0,)"
                  R"("steps_per_s":0})"));
}

TEST(RunReportWriterTest, RejectsScalarNamesThatWouldRepeatAKey) {
  const std::string dir = FreshDir("bad_scalars");
  auto writer = RunReportWriter::Create(dir, /*resume=*/false);
  ASSERT_THAT(writer, IsOk());
  StepMetrics metrics = Metrics(1);
  metrics.scalars.push_back({"lr", 1});
  EXPECT_THAT((*writer)->AppendMetrics(metrics),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("scalar name \"lr\"")));
  metrics = Metrics(1);
  metrics.scalars.push_back({"loss_x", 1});
  EXPECT_THAT((*writer)->AppendMetrics(metrics),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("scalar name \"loss_x\"")));
  metrics = Metrics(1);
  metrics.scalars.push_back({"", 1});
  EXPECT_THAT((*writer)->AppendMetrics(metrics),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(ReadFile(dir + "/metrics.jsonl"), "");
}

TEST(RunReportWriterTest, WritesRoundsCsvWithHeaderOnce) {
  const std::string dir = FreshDir("rounds");
  auto writer = RunReportWriter::Create(dir, /*resume=*/false);
  ASSERT_THAT(writer, IsOk());
  ASSERT_THAT((*writer)->AppendRound({1, 40, 0.7125, 2000, "random"}), IsOk());
  ASSERT_THAT((*writer)->AppendRound({2, 80, 0.8, 4000, "margin, \"v2\""}),
              IsOk());
  ASSERT_THAT((*writer)->AppendRound({3, 120, std::nan(""), 6000, "a\nb"}),
              IsOk());
  EXPECT_EQ(ReadFile(dir + "/rounds.csv"),
            "round,labels_spent,test_accuracy,steps,strategy\n"
            "1,40,0.7125,2000,random\n"
            "2,80,0.8,4000,\"margin, \"\"v2\"\"\"\n"
            "3,120,,6000,\"a\nb\"\n");
}

TEST(ReadRoundsTest, MissingFileHasNoRounds) {
  const std::string dir = FreshDir("read_missing");
  EXPECT_TRUE(RunReportWriter::ReadRounds(dir).empty());
}

TEST(ReadRoundsTest, ReadsBackWhatAppendRoundWrote) {
  const std::string dir = FreshDir("read_back");
  {
    auto writer = RunReportWriter::Create(dir, /*resume=*/false);
    ASSERT_THAT(writer, IsOk());
    ASSERT_THAT((*writer)->AppendRound({1, 40, 0.7125, 2000, "random"}),
                IsOk());
    ASSERT_THAT((*writer)->AppendRound({2, 80, 0.8, 4000, "margin, \"v2\""}),
                IsOk());
    ASSERT_THAT((*writer)->AppendRound({3, 120, std::nan(""), 6000, "a\nb"}),
                IsOk());
  }
  const std::vector<RoundRecord> rounds = RunReportWriter::ReadRounds(dir);
  ASSERT_EQ(rounds.size(), 3u);
  EXPECT_EQ(rounds[0].round, 1);
  EXPECT_EQ(rounds[0].labels_spent, 40);
  EXPECT_EQ(rounds[0].test_accuracy, 0.7125);
  EXPECT_EQ(rounds[0].steps, 2000);
  EXPECT_EQ(rounds[0].strategy, "random");
  EXPECT_EQ(rounds[1].strategy, "margin, \"v2\"");
  EXPECT_EQ(rounds[1].test_accuracy, 0.8);
  EXPECT_EQ(rounds[2].round, 3);
  EXPECT_TRUE(std::isnan(rounds[2].test_accuracy));
  EXPECT_EQ(rounds[2].steps, 6000);
  EXPECT_EQ(rounds[2].strategy, "a\nb");
}

TEST(ReadRoundsTest, LastRowOfARoundWinsAndTornOrForeignLinesAreSkipped) {
  const std::string dir = FreshDir("read_resumed");
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/rounds.csv")
      << "round,labels_spent,test_accuracy,steps,strategy\n"
         "2,80,0.6,200,margin\n"
         "1,40,0.5,100,random\n"
         "2,80,0.65,210,entropy, resumed\n"
         "not,a,round,row,at all\n"
         "3,120,0.7\n"
         "4,160,0.75,400,\"unterminated\n"
         "4,160,0.8,400,tor";
  const std::vector<RoundRecord> rounds = RunReportWriter::ReadRounds(dir);
  ASSERT_EQ(rounds.size(), 2u);
  EXPECT_EQ(rounds[0].round, 1);
  EXPECT_EQ(rounds[0].strategy, "random");
  EXPECT_EQ(rounds[1].round, 2);
  EXPECT_EQ(rounds[1].test_accuracy, 0.65);
  EXPECT_EQ(rounds[1].steps, 210);
  // The strategy is the rest of the row, commas included.
  EXPECT_EQ(rounds[1].strategy, "entropy, resumed");
}

TEST(RunReportWriterTest, ResumeAppendsAndContinuesTime) {
  const std::string dir = FreshDir("resume");
  FakeClock clock;
  {
    auto writer = RunReportWriter::Create(Options(dir, false, clock));
    ASSERT_THAT(writer, IsOk());
    clock.Advance(2);
    ASSERT_THAT((*writer)->AppendMetrics(Metrics(1)), IsOk());
    ASSERT_THAT((*writer)->AppendRound({1, 40, 0.5, 1, "random"}), IsOk());
  }
  clock.Advance(100);  // Downtime between the runs is not counted.
  {
    auto writer = RunReportWriter::Create(Options(dir, true, clock));
    ASSERT_THAT(writer, IsOk());
    clock.Advance(0.5);
    ASSERT_THAT((*writer)->AppendMetrics(Metrics(2)), IsOk());
    ASSERT_THAT((*writer)->AppendRound({2, 80, 0.6, 2, "margin"}), IsOk());
  }
  const std::vector<std::string> lines = ReadLines(dir + "/metrics.jsonl");
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_THAT(lines[0], HasSubstr(R"({"step":1,"time_s":2,)"));
  EXPECT_THAT(lines[1], HasSubstr(R"({"step":2,"time_s":2.5,)"));
  EXPECT_EQ(ReadFile(dir + "/rounds.csv"),
            "round,labels_spent,test_accuracy,steps,strategy\n"
            "1,40,0.5,1,random\n"
            "2,80,0.6,2,margin\n");
}

TEST(RunReportWriterTest, ResumeDropsTornLastLines) {
  const std::string dir = FreshDir("torn");
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/metrics.jsonl")
      << R"({"step":1,"time_s":4.25,"loss":1})"
      << "\n"
      << R"({"step":2,"time_s":9.5,"lo)";
  std::ofstream(dir + "/rounds.csv")
      << "round,labels_spent,test_accuracy,steps,strategy\n2,8";
  FakeClock clock;
  auto writer = RunReportWriter::Create(Options(dir, true, clock));
  ASSERT_THAT(writer, IsOk());
  clock.Advance(1);
  ASSERT_THAT((*writer)->AppendMetrics(Metrics(2)), IsOk());
  ASSERT_THAT((*writer)->AppendRound({1, 40, 0.5, 2, "random"}), IsOk());
  const std::vector<std::string> lines = ReadLines(dir + "/metrics.jsonl");
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0], R"({"step":1,"time_s":4.25,"loss":1})");
  EXPECT_THAT(lines[1], HasSubstr(R"({"step":2,"time_s":5.25,)"));
  EXPECT_EQ(ReadFile(dir + "/rounds.csv"),
            "round,labels_spent,test_accuracy,steps,strategy\n"
            "1,40,0.5,2,random\n");
}

TEST(RunReportWriterTest, ResumeIntoEmptyDirectoryWritesHeader) {
  const std::string dir = FreshDir("resume_empty");
  auto writer = RunReportWriter::Create(dir, /*resume=*/true);
  ASSERT_THAT(writer, IsOk());
  ASSERT_THAT((*writer)->AppendRound({1, 10, 0.25, 5, "entropy"}), IsOk());
  EXPECT_EQ(ReadFile(dir + "/rounds.csv"),
            "round,labels_spent,test_accuracy,steps,strategy\n"
            "1,10,0.25,5,entropy\n");
}

TEST(RunReportWriterTest, WithoutResumeTruncates) {
  const std::string dir = FreshDir("truncate");
  {
    auto writer = RunReportWriter::Create(dir, /*resume=*/false);
    ASSERT_THAT(writer, IsOk());
    ASSERT_THAT((*writer)->AppendMetrics(Metrics(1)), IsOk());
    ASSERT_THAT((*writer)->AppendRound({1, 40, 0.5, 1, "random"}), IsOk());
  }
  auto writer = RunReportWriter::Create(dir, /*resume=*/false);
  ASSERT_THAT(writer, IsOk());
  EXPECT_EQ(ReadFile(dir + "/metrics.jsonl"), "");
  EXPECT_EQ(ReadFile(dir + "/rounds.csv"), "");
}

TEST(RunReportWriterTest, CreateMakesNestedDirectory) {
  const std::string dir = FreshDir("nested") + "/a/b";
  auto writer = RunReportWriter::Create(dir, /*resume=*/false);
  ASSERT_THAT(writer, IsOk());
  EXPECT_EQ((*writer)->out_dir(), dir);
  EXPECT_TRUE(std::filesystem::exists(dir + "/metrics.jsonl"));
  EXPECT_TRUE(std::filesystem::exists(dir + "/rounds.csv"));
}

TEST(RunReportWriterTest, CreateFailsUnderARegularFile) {
  const std::string dir = FreshDir("blocked");
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/file") << "x";
  EXPECT_THAT(RunReportWriter::Create(dir + "/file/out", false),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("cannot create directory")));
  EXPECT_THAT(RunReportWriter::Create("", false),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

// A two-class report small enough to compare report.json in full.
FinalReport TwoClassReport() {
  FinalReport report;
  report.experiment = "run \"a\"\nb";
  report.strategy = "margin";
  report.objective = "freematch";
  report.initial_weights = "cache/simclr.pt";
  report.pretrain.method = "simclr";
  report.pretrain.checkpoint = "cache/simclr.pt";
  report.pretrain.steps = 20;
  report.pretrain.wall_time_s = 1.5;
  report.pretrain.loss_curve = {{10, 6.25}, {20, std::nan("")}};
  report.feature_quality = {{"pretrained", 2, 0.625, 0.5}};
  report.labels_spent = 2;
  report.label_budget = 10;
  report.accuracy = 0.75;
  report.class_names = {"cat", "<dog>"};
  report.per_class_accuracy = {0.5, 1};
  report.confusion = {{1, 1}, {0, 2}};
  report.wall_time_s = 12.5;
  report.steps = 100;
  report.planned_steps = 120;
  report.steps_per_s = 8;
  report.device = "cpu";
  report.config = {{"lr", "0.03"}, {"seed", "7"}};
  report.rounds = {{1, 2, 0.75, 100, "margin"}};
  report.label_curve = {{2, 0.75}};
  report.step_curve = {{50, 0.5}, {100, 0.75}};
  QueriedSample sample;
  sample.id = 17;
  sample.label = 1;
  sample.round = 1;
  sample.pixels.assign(kImageSide * kImageSide, 0);
  sample.pixels[0] = 0xfb;
  report.queried = {sample};
  return report;
}

TEST(RenderReportJsonTest, WritesEveryField) {
  // 784 bytes: 0xfb then zeros; base64 is "+w" followed by "A"s and "==".
  const std::string pixels_b64 = "+w" + std::string(1044, 'A') + "==";
  EXPECT_EQ(
      RenderReportJson(TwoClassReport()),
      R"({"experiment":"run \"a\"\nb","strategy":"margin",)"
      R"("objective":"freematch","initial_weights":"cache/simclr.pt",)"
      R"("labels_spent":2,)"
      R"("label_budget":10,"accuracy":0.75,"per_class_accuracy":[0.5,1],)"
      R"("confusion":[[1,1],[0,2]],"class_names":["cat","<dog>"],)"
      R"("wall_time_s":12.5,"steps":100,"planned_steps":120,"steps_per_s":8,"device":"cpu",)"
      R"("config":{"lr":"0.03","seed":"7"},)"
      R"("pretrain":{"method":"simclr","checkpoint":"cache/simclr.pt",)"
      R"("reused":false,"steps":20,"wall_time_s":1.5,)"
      R"("loss_curve":[{"step":10,"loss":6.25},{"step":20,"loss":null}]},)"
      R"("feature_quality":[{"stage":"pretrained","labels":2,)"
      R"("embedding_accuracy":0.625,"pca_accuracy":0.5}],)"
      R"("rounds":[{"round":1,"labels_spent":2,"test_accuracy":0.75,)"
      R"("steps":100,"strategy":"margin"}],)"
      R"("label_curve":[{"labels_spent":2,"accuracy":0.75}],)"
      R"("step_curve":[{"step":50,"accuracy":0.5},)"
      R"({"step":100,"accuracy":0.75}],)"
      R"("queried":[{"id":17,"label":1,"round":1,"pixels_b64":")" +
          pixels_b64 + R"("}]})");
}

TEST(ValidateFinalReportTest, NamesTheInconsistentField) {
  FinalReport report = TwoClassReport();
  EXPECT_THAT(ValidateFinalReport(report), IsOk());

  report.per_class_accuracy.push_back(0);
  EXPECT_THAT(ValidateFinalReport(report),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("per_class_accuracy has 3 entries, "
                                 "expected 2")));
  report = TwoClassReport();
  report.confusion[1].pop_back();
  EXPECT_THAT(ValidateFinalReport(report),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("confusion row 1 has 1 columns")));
  report = TwoClassReport();
  report.confusion.pop_back();
  EXPECT_THAT(ValidateFinalReport(report),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("confusion has 1 rows")));
  report = TwoClassReport();
  report.queried[0].label = 2;
  EXPECT_THAT(ValidateFinalReport(report),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("queried sample 17 has label 2")));
  report = TwoClassReport();
  report.feature_quality[0].embedding_accuracy = 1.25;
  EXPECT_THAT(ValidateFinalReport(report),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("feature_quality \"pretrained\"")));
  report = TwoClassReport();
  report.feature_quality[0].pca_accuracy = std::nan("");
  EXPECT_THAT(ValidateFinalReport(report),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("accuracies in [0, 1]")));
  report = TwoClassReport();
  report.class_names.clear();
  EXPECT_THAT(ValidateFinalReport(report),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("class_names is empty")));
}

TEST(ValidateFinalReportTest, AcceptsPerClassResultsWithheldTogether) {
  FinalReport report = TwoClassReport();
  report.per_class_accuracy.clear();
  report.confusion.clear();
  EXPECT_THAT(ValidateFinalReport(report), IsOk());
  EXPECT_THAT(RenderReportJson(report),
              HasSubstr(R"("per_class_accuracy":[],"confusion":[],)"));

  // Only one of the two withheld is inconsistent.
  report = TwoClassReport();
  report.per_class_accuracy.clear();
  EXPECT_THAT(ValidateFinalReport(report),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("per_class_accuracy has 0 entries")));
  report = TwoClassReport();
  report.confusion.clear();
  EXPECT_THAT(ValidateFinalReport(report),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("confusion has 0 rows")));
}

TEST(FinalReportTest, DefaultsToFashionMnistClassNames) {
  EXPECT_THAT(FinalReport().class_names,
              ElementsAre("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                          "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"));
}

TEST(RunReportWriterTest, WritesReportJsonAndHtml) {
  const std::string dir = FreshDir("report");
  auto writer = RunReportWriter::Create(dir, /*resume=*/false);
  ASSERT_THAT(writer, IsOk());
  FinalReport report;  // Fashion-MNIST classes.
  report.experiment = "exp <b>\"bold\"</b>";
  report.strategy = "entropy";
  report.labels_spent = 3;
  report.label_budget = 50;
  report.accuracy = 0.5;
  report.per_class_accuracy.assign(10, 0.5);
  report.confusion.assign(10, std::vector<int64_t>(10, 3));
  report.device = "cpu";
  for (int i = 0; i < 3; ++i) {
    QueriedSample sample;
    sample.id = 100 + i;
    sample.label = i * 4;  // T-shirt/top, Coat, Bag.
    sample.round = 1;
    sample.pixels.assign(kImageSide * kImageSide, 255);
    report.queried.push_back(sample);
  }
  ASSERT_THAT((*writer)->WriteReport(report), IsOk());

  const std::string json = ReadFile(dir + "/report.json");
  EXPECT_EQ(json, RenderReportJson(report) + "\n");
  EXPECT_THAT(json, HasSubstr(R"("experiment":"exp <b>\"bold\"</b>")"));
  EXPECT_THAT(json, HasSubstr(R"("labels_spent":3,"label_budget":50,)"
                              R"("accuracy":0.5,)"));
  EXPECT_THAT(json, HasSubstr(R"({"id":102,"label":8,"round":1,)"));

  const std::string html = ReadFile(dir + "/report.html");
  EXPECT_EQ(CountOccurrences(html, "<img "), 3);
  EXPECT_EQ(CountOccurrences(html, "data:image/png;base64,"), 3);
  for (const std::string& name : FashionMnistClassNames()) {
    EXPECT_THAT(html, HasSubstr(">" + name + "<"));
  }
  EXPECT_THAT(html, HasSubstr("exp &lt;b&gt;&quot;bold&quot;&lt;/b&gt;"));
  EXPECT_THAT(html, Not(HasSubstr("<b>\"bold\"")));

  // No temporary files are left behind.
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    names.push_back(entry.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  EXPECT_THAT(names, ElementsAre("metrics.jsonl", "report.html", "report.json",
                                 "rounds.csv"));

  // A second report replaces the first.
  report.accuracy = 0.625;
  ASSERT_THAT((*writer)->WriteReport(report), IsOk());
  EXPECT_THAT(ReadFile(dir + "/report.json"),
              HasSubstr(R"("accuracy":0.625,)"));
  EXPECT_THAT(ReadFile(dir + "/report.html"), HasSubstr(">62.5%<"));
}

TEST(RunReportWriterTest, InvalidReportWritesNothing) {
  const std::string dir = FreshDir("invalid");
  auto writer = RunReportWriter::Create(dir, /*resume=*/false);
  ASSERT_THAT(writer, IsOk());
  FinalReport report;
  report.per_class_accuracy.assign(10, 0);
  EXPECT_THAT((*writer)->WriteReport(report),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("confusion has 0 rows")));
  EXPECT_FALSE(std::filesystem::exists(dir + "/report.json"));
  EXPECT_FALSE(std::filesystem::exists(dir + "/report.html"));
}

}  // namespace
}  // namespace trainer
