#include "trainer/report/report_html.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "common/status_matchers.h"
#include "trainer/report/run_report.h"

namespace trainer {
namespace {

using ::common::IsOk;
using ::common::StatusIs;
using ::testing::HasSubstr;
using ::testing::Not;

int CountOccurrences(const std::string& text, const std::string& needle) {
  int count = 0;
  for (size_t pos = text.find(needle); pos != std::string::npos;
       pos = text.find(needle, pos + needle.size())) {
    ++count;
  }
  return count;
}

// A 10-class report with three queried samples.
FinalReport SampleReport() {
  FinalReport report;
  report.experiment = "margin <run> & \"co\"";
  report.strategy = "margin";
  report.labels_spent = 120;
  report.label_budget = 400;
  report.accuracy = 0.8634;
  report.wall_time_s = 3725;
  report.steps = 12000;
  report.steps_per_s = 41.25;
  report.device = "cuda:0 <H100>";
  for (int i = 0; i < 10; ++i) {
    report.per_class_accuracy.push_back(0.5 + 0.05 * i);
    std::vector<int64_t> row(10, 1);
    row[i] = 991;
    report.confusion.push_back(row);
  }
  report.config = {{"lr", "0.03"}, {"note", "<script>alert(1)</script>"}};
  report.rounds = {{1, 40, 0.7, 4000, "random"}, {2, 80, 0.8, 8000, "margin"}};
  report.label_curve = {{40, 0.7}, {80, 0.8}};
  report.step_curve = {{4000, 0.7}, {8000, 0.8}, {12000, 0.86}};
  for (int i = 0; i < 3; ++i) {
    QueriedSample sample;
    sample.id = 1000 + i;
    sample.label = 7 + i;
    sample.round = 1 + i / 2;
    sample.pixels.assign(kImageSide * kImageSide, static_cast<uint8_t>(i));
    report.queried.push_back(sample);
  }
  return report;
}

TEST(HtmlEscapeTest, EscapesMarkupCharacters) {
  EXPECT_EQ(HtmlEscape("a<b>&\"c\"'d'"),
            "a&lt;b&gt;&amp;&quot;c&quot;&#39;d&#39;");
  EXPECT_EQ(HtmlEscape("T-shirt/top"), "T-shirt/top");
}

TEST(FormatCountTest, InsertsThousandsSeparators) {
  EXPECT_EQ(FormatCount(0), "0");
  EXPECT_EQ(FormatCount(999), "999");
  EXPECT_EQ(FormatCount(1000), "1,000");
  EXPECT_EQ(FormatCount(1234567), "1,234,567");
  EXPECT_EQ(FormatCount(-12345), "-12,345");
  EXPECT_EQ(FormatCount(std::numeric_limits<int64_t>::min()),
            "-9,223,372,036,854,775,808");
}

TEST(RenderReportHtmlTest, ShowsHeadlineNumbers) {
  absl::StatusOr<std::string> html = RenderReportHtml(SampleReport());
  ASSERT_THAT(html, IsOk());
  EXPECT_THAT(*html, HasSubstr("<title>margin &lt;run&gt; &amp; &quot;co&quot;"
                               " &middot; fewlabels report</title>"));
  EXPECT_THAT(*html,
              HasSubstr("<h1>margin &lt;run&gt; &amp; &quot;co&quot;</h1>"));
  EXPECT_THAT(*html, HasSubstr("id=\"headline-accuracy\"><div class=\"label\">"
                               "Test accuracy</div><div class=\"value\">"
                               "86.3%</div>"));
  EXPECT_THAT(*html, HasSubstr("<div class=\"value\">120 / 400</div>"));
  EXPECT_THAT(*html, HasSubstr("30.0% of the budget"));
  EXPECT_THAT(*html, HasSubstr("cuda:0 &lt;H100&gt;"));
  EXPECT_THAT(*html, HasSubstr("41.2 <span"));
  EXPECT_THAT(*html, HasSubstr("<div class=\"value\">1h02m</div>"));
}

TEST(RenderReportHtmlTest, HasOneImagePerQueriedSampleAndNoScripts) {
  absl::StatusOr<std::string> html = RenderReportHtml(SampleReport());
  ASSERT_THAT(html, IsOk());
  EXPECT_EQ(CountOccurrences(*html, "<img "), 3);
  EXPECT_EQ(CountOccurrences(*html, "src=\"data:image/png;base64,"), 3);
  EXPECT_THAT(*html, HasSubstr("title=\"#1000 Sneaker, round 1\""));
  EXPECT_THAT(*html, HasSubstr("<b>#1002</b> r2<br>Ankle boot</figcaption>"));
  EXPECT_THAT(*html, HasSubstr("<h3>Round 1 &middot; 2 images</h3>"));
  EXPECT_THAT(*html, HasSubstr("<h3>Round 2 &middot; 1 image</h3>"));
  EXPECT_THAT(*html, Not(HasSubstr("<script")));
  EXPECT_THAT(*html, HasSubstr("&lt;script&gt;alert(1)&lt;/script&gt;"));
  EXPECT_THAT(*html, Not(HasSubstr("http://")));
  EXPECT_THAT(*html, Not(HasSubstr("https://")));
}

TEST(RenderReportHtmlTest, DrawsChartsAndConfusionTable) {
  absl::StatusOr<std::string> html = RenderReportHtml(SampleReport());
  ASSERT_THAT(html, IsOk());
  // Two learning curves and two per-class bar charts.
  EXPECT_EQ(CountOccurrences(*html, "<svg "), 4);
  EXPECT_EQ(CountOccurrences(*html, "<polyline class=\"curve\""), 2);
  EXPECT_EQ(CountOccurrences(*html, "<circle class=\"point\""), 5);
  EXPECT_THAT(*html, HasSubstr("<title>labels spent 80: 80.0%</title>"));
  EXPECT_THAT(*html, HasSubstr("<title>step 12,000: 86.0%</title>"));
  // 100 confusion cells; the diagonal shaded by its share of the row.
  EXPECT_EQ(CountOccurrences(*html, "<td class=\"cell\""), 100);
  EXPECT_THAT(*html, HasSubstr("<td class=\"cell\" style=\"background:"
                               "rgba(37,99,235,0.99);color:#fff\" title=\""
                               "true Bag, predicted Bag: 991 (99.1% of row)"
                               "\">991</td>"));
  for (const std::string& name : FashionMnistClassNames()) {
    EXPECT_THAT(*html, HasSubstr("<th class=\"row\">" + name + "</th>"));
    EXPECT_THAT(*html, HasSubstr("<th class=\"col\">" + name + "</th>"));
  }
  // Queried counts: Sneaker, Bag and Ankle boot once each.
  EXPECT_THAT(*html, HasSubstr("<title>Bag: 1</title>"));
  EXPECT_THAT(*html, HasSubstr("<title>Coat: 0</title>"));
  EXPECT_THAT(*html, HasSubstr("<title>Coat: 70.0%</title>"));
  EXPECT_THAT(*html, HasSubstr("<td class=\"text key\">lr</td>"
                               "<td class=\"text\">0.03</td>"));
}

TEST(RenderReportHtmlTest, ShowsPlaceholdersForEmptySections) {
  FinalReport report = SampleReport();
  report.label_curve.clear();
  report.step_curve.clear();
  report.rounds.clear();
  report.queried.clear();
  report.config.clear();
  absl::StatusOr<std::string> html = RenderReportHtml(report);
  ASSERT_THAT(html, IsOk());
  EXPECT_EQ(CountOccurrences(*html, "No evaluations recorded."), 2);
  EXPECT_THAT(*html, HasSubstr("No rounds recorded."));
  EXPECT_THAT(*html, HasSubstr("No labels were queried."));
  EXPECT_THAT(*html, HasSubstr("No configuration recorded."));
  EXPECT_EQ(CountOccurrences(*html, "<img "), 0);
}

TEST(RenderReportHtmlTest, WithoutPretrainingShowsObjectiveAndWeightsOnly) {
  FinalReport report = SampleReport();
  report.objective = "fixmatch";
  report.initial_weights = "random initialisation";
  absl::StatusOr<std::string> html = RenderReportHtml(report);
  ASSERT_THAT(html, IsOk());
  EXPECT_THAT(*html, HasSubstr("Objective: <b>fixmatch</b> · Selection "
                               "strategy: <b>margin</b>"));
  EXPECT_THAT(*html, HasSubstr("Initial weights: <span class=\"path\">"
                               "random initialisation</span>"));
  EXPECT_THAT(*html, Not(HasSubstr("id=\"pretraining\"")));
  EXPECT_THAT(*html, Not(HasSubstr("id=\"feature-quality\"")));
  EXPECT_EQ(CountOccurrences(*html, "<svg "), 4);
}

TEST(RenderReportHtmlTest, ShowsPretrainingStageAndLossCurve) {
  FinalReport report = SampleReport();
  report.objective = "freematch";
  report.initial_weights = "cache/<simclr>.pt";
  report.pretrain.method = "simclr";
  report.pretrain.checkpoint = "cache/<simclr>.pt";
  report.pretrain.steps = 3000;
  report.pretrain.wall_time_s = 185;
  report.pretrain.loss_curve = {
      {1000, 6.1}, {2000, 4.75}, {2500, std::nan("")}, {3000, 4.25}};
  absl::StatusOr<std::string> html = RenderReportHtml(report);
  ASSERT_THAT(html, IsOk());
  EXPECT_THAT(*html, HasSubstr("Initial weights: <span class=\"path\">"
                               "cache/&lt;simclr&gt;.pt</span>"));
  ASSERT_THAT(*html, HasSubstr("<section id=\"pretraining\">"));
  // The stage comes before the rounds' learning curves.
  EXPECT_LT(html->find("id=\"pretraining\""),
            html->find("id=\"learning-curves\""));
  EXPECT_THAT(*html, HasSubstr("Method</td><td class=\"text\">simclr</td>"));
  EXPECT_THAT(*html, HasSubstr("Weights</td><td class=\"text\">trained in "
                               "this run</td>"));
  EXPECT_THAT(*html, HasSubstr("Steps</td><td class=\"text\">3,000</td>"));
  EXPECT_THAT(*html, HasSubstr("Time</td><td class=\"text\">3m05s</td>"));
  EXPECT_THAT(*html, HasSubstr("Loss</td><td class=\"text\">6.1 &rarr; "
                               "4.25</td>"));
  EXPECT_THAT(*html, HasSubstr("<td class=\"text path\">cache/&lt;simclr"
                               "&gt;.pt</td>"));
  // Learning curves, bar charts and the loss curve; NaN is not drawn.
  EXPECT_EQ(CountOccurrences(*html, "<svg "), 5);
  EXPECT_EQ(CountOccurrences(*html, "<polyline class=\"curve\""), 3);
  EXPECT_THAT(*html, HasSubstr("<title>step 2,000: 4.75</title>"));
  EXPECT_THAT(*html, Not(HasSubstr("<title>step 2,500:")));
  EXPECT_THAT(*html, HasSubstr(">loss</text>"));
  EXPECT_THAT(*html, Not(HasSubstr("id=\"feature-quality\"")));

  report.pretrain.reused = true;
  report.pretrain.steps = 0;
  report.pretrain.wall_time_s = 0;
  report.pretrain.loss_curve.clear();
  html = RenderReportHtml(report);
  ASSERT_THAT(html, IsOk());
  EXPECT_THAT(*html, HasSubstr("Weights</td><td class=\"text\">reused from "
                               "the cache (no step ran)</td>"));
  EXPECT_THAT(*html, Not(HasSubstr("Pretraining loss")));
  EXPECT_EQ(CountOccurrences(*html, "<svg "), 4);
}

TEST(RenderReportHtmlTest, ShowsFeatureQualityTable) {
  FinalReport report = SampleReport();
  report.feature_quality = {{"pretrained", 40, 0.7125, 0.583},
                            {"round <2>", 1200, 0.5, 0.625}};
  absl::StatusOr<std::string> html = RenderReportHtml(report);
  ASSERT_THAT(html, IsOk());
  ASSERT_THAT(*html, HasSubstr("<section id=\"feature-quality\">"));
  EXPECT_THAT(*html, HasSubstr("<th>kNN on embedding</th><th>kNN on PCA "
                               "pixels</th>"));
  EXPECT_THAT(*html, HasSubstr("<tr><td class=\"text\">pretrained</td>"
                               "<td>40</td><td>71.2%</td><td>58.3%</td>"
                               "<td class=\"better\">+12.9 pp</td></tr>"));
  EXPECT_THAT(*html, HasSubstr("<tr><td class=\"text\">round &lt;2&gt;</td>"
                               "<td>1,200</td><td>50.0%</td><td>62.5%</td>"
                               "<td class=\"worse\">-12.5 pp</td></tr>"));
  EXPECT_THAT(*html, HasSubstr("k-nearest-neighbour classifier on the bought "
                               "labels; higher than PCA means the learned "
                               "features beat the pixels"));
  // Without a pretraining stage there is no pretraining section.
  EXPECT_THAT(*html, Not(HasSubstr("id=\"pretraining\"")));
}

TEST(RenderReportHtmlTest, SaysWhenTheOracleWithheldPerClassResults) {
  FinalReport report = SampleReport();
  report.per_class_accuracy.clear();
  report.confusion.clear();
  absl::StatusOr<std::string> html = RenderReportHtml(report);
  ASSERT_THAT(html, IsOk());
  EXPECT_EQ(CountOccurrences(*html, "The oracle withheld per-class accuracy"),
            2);
  EXPECT_EQ(CountOccurrences(*html, "<td class=\"cell\""), 0);
  // The queried-labels chart stays; the accuracy chart goes.
  EXPECT_THAT(*html, HasSubstr("<title>Bag: 1</title>"));
  EXPECT_THAT(*html, Not(HasSubstr("<title>Coat: 70.0%</title>")));
}

TEST(RenderReportHtmlTest, RejectsInconsistentReport) {
  FinalReport report = SampleReport();
  report.queried[1].pixels.resize(10);
  EXPECT_THAT(RenderReportHtml(report),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("queried sample 1001 has 10 pixels")));
}

}  // namespace
}  // namespace trainer
