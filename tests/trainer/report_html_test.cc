#include "trainer/report/report_html.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

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

TEST(RenderReportHtmlTest, RejectsInconsistentReport) {
  FinalReport report = SampleReport();
  report.queried[1].pixels.resize(10);
  EXPECT_THAT(RenderReportHtml(report),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("queried sample 1001 has 10 pixels")));
}

}  // namespace
}  // namespace trainer
