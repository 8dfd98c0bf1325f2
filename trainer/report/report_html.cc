#include "trainer/report/report_html.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "common/status_macros.h"
#include "trainer/report/png_encoder.h"
#include "trainer/report/progress.h"

namespace trainer {
namespace {

// On-page size of a queried image: kImageSide scaled by this factor.
constexpr int kImageScale = 3;

constexpr absl::string_view kStyle = R"css(
:root {
  --fg: #1f2933; --muted: #616e7c; --line: #d9e2ec; --bg: #f5f7fa;
  --card: #ffffff; --accent: #2563eb; --bad: #dc2626;
}
* { box-sizing: border-box; }
body {
  margin: 0; background: var(--bg); color: var(--fg);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
}
main { max-width: 1180px; margin: 0 auto; padding: 24px 20px 40px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 0 0 12px; }
h3 { font-size: 14px; margin: 16px 0 8px; color: var(--muted); }
.subtitle { color: var(--muted); margin-bottom: 18px; }
section, .card {
  background: var(--card); border: 1px solid var(--line); border-radius: 8px;
}
section { padding: 18px 20px; margin-top: 18px; }
.cards {
  display: grid; gap: 12px;
  grid-template-columns: repeat(auto-fit, minmax(200px, 1fr));
}
.card { padding: 12px 16px; }
.card .label {
  color: var(--muted); font-size: 12px; text-transform: uppercase;
  letter-spacing: .04em;
}
.card .value { font-size: 26px; font-weight: 600; margin-top: 2px; }
.card .value.small { font-size: 16px; padding-top: 8px; word-break: break-word; }
.card .detail { color: var(--muted); font-size: 12px; }
.meter {
  height: 6px; background: var(--line); border-radius: 3px; margin-top: 6px;
  overflow: hidden;
}
.meter > div { height: 100%; background: var(--accent); }
.charts {
  display: grid; gap: 18px;
  grid-template-columns: repeat(auto-fit, minmax(420px, 1fr));
}
.chart h3 { margin-top: 0; }
svg { width: 100%; height: auto; display: block; }
svg text { font-size: 11px; fill: var(--muted); }
svg .axis-title { font-size: 12px; fill: var(--fg); }
svg .value-label { fill: var(--fg); }
svg .grid { stroke: var(--line); stroke-width: 1; }
svg .axis { stroke: var(--muted); stroke-width: 1; }
svg .curve { fill: none; stroke: var(--accent); stroke-width: 2; }
svg .point { fill: var(--card); stroke: var(--accent); stroke-width: 2; }
svg .point.hidden { opacity: 0; }
svg .bar { fill: var(--accent); }
svg .bar.queried { fill: #0d9488; }
.empty { color: var(--muted); font-style: italic; }
table { border-collapse: collapse; }
th, td { padding: 4px 8px; text-align: right; }
th { font-weight: 600; }
td.text, th.text { text-align: left; }
table.plain tr + tr > * { border-top: 1px solid var(--line); }
table.plain tr:first-child > th { border-bottom: 2px solid var(--line); }
table.config td.key { font-family: inherit; font-size: 13px; font-weight: 600;
  word-break: normal; white-space: nowrap; }
table.confusion { font-size: 12px; font-variant-numeric: tabular-nums; }
table.confusion td.cell { min-width: 56px; text-align: center; }
table.confusion th.col {
  writing-mode: vertical-rl; transform: rotate(180deg); text-align: left;
  vertical-align: bottom; padding: 6px 2px; height: 96px;
}
table.confusion th.row { text-align: right; white-space: nowrap; }
table.confusion td.acc { font-weight: 600; padding-left: 14px; }
table.confusion td.total { color: var(--muted); }
.corner { color: var(--muted); font-weight: 400; font-size: 11px; }
.note { color: var(--muted); font-size: 12px; margin-top: 8px; }
.swatch {
  display: inline-block; width: 10px; height: 10px; border-radius: 2px;
  vertical-align: -1px; margin: 0 3px 0 10px;
}
.samples { display: flex; flex-wrap: wrap; gap: 10px; }
figure.sample { margin: 0; width: 84px; text-align: center; }
figure.sample img {
  display: block; width: 84px; height: 84px; image-rendering: pixelated;
  border-radius: 4px; background: #000;
}
figure.sample figcaption {
  font-size: 11px; line-height: 1.3; margin-top: 3px; color: var(--muted);
  white-space: nowrap; overflow: hidden; text-overflow: ellipsis;
}
figure.sample figcaption b { color: var(--fg); font-weight: 600; }
table.config td { font-family: ui-monospace, "SFMono-Regular", Menlo, monospace;
  font-size: 12px; word-break: break-all; }
footer { color: var(--muted); font-size: 12px; margin-top: 18px; }
.path { font-family: ui-monospace, "SFMono-Regular", Menlo, monospace;
  font-size: 12px; word-break: break-all; }
table.facts td.key { color: var(--muted); padding-left: 0; white-space: nowrap; }
td.better { color: #047857; font-weight: 600; }
td.worse { color: var(--bad); font-weight: 600; }
)css";

std::string Percent(double fraction) {
  if (!std::isfinite(fraction)) return "--";
  return absl::StrFormat("%.1f%%", 100.0 * fraction);
}

// The number Percent(fraction) shows, e.g. 71.2 for 0.7125.
double ShownPercent(double fraction) {
  return std::strtod(absl::StrFormat("%.1f", 100.0 * fraction).c_str(),
                     nullptr);
}

// Returns the smallest 1, 2 or 5 times a power of ten that is >= `raw`.
double NiceStep(double raw) {
  if (!(raw > 0)) return 1;
  const double magnitude = std::pow(10.0, std::floor(std::log10(raw)));
  for (double factor : {1.0, 2.0, 5.0, 10.0}) {
    if (factor * magnitude >= raw * (1 - 1e-9)) return factor * magnitude;
  }
  return 10 * magnitude;
}

// Formats an axis tick; with `thousands` (for axes reaching 10000 or more)
// as a multiple of 1000 with a "k" suffix.
std::string TickLabel(double value, bool thousands) {
  if (thousands && value != 0) {
    const double k = value / 1000;
    if (k == std::round(k)) return absl::StrCat(static_cast<int64_t>(k), "k");
    return absl::StrFormat("%gk", k);
  }
  if (value == std::round(value)) {
    return absl::StrCat(static_cast<int64_t>(value));
  }
  return absl::StrFormat("%g", value);
}

// What a line chart's y values are.
enum class YScale {
  // Accuracies in [0, 1], drawn in percent up to 100%.
  kAccuracy,
  // Plain numbers (a loss), on an axis fitted to their range.
  kLinear,
};

// The y axis of a line chart, in display units (percent for kAccuracy).
struct YAxis {
  double low = 0;
  double high = 1;
  double step = 1;
};

YAxis FitYAxis(YScale scale, double min_value, double max_value) {
  YAxis axis;
  if (scale == YScale::kAccuracy) {
    // From a multiple of 10 below the lowest point up to 100.
    axis.low = std::clamp(std::floor((min_value - 2) / 10) * 10, 0.0, 90.0);
    axis.high = 100;
    axis.step = 100 - axis.low <= 30 ? 5 : 10;
    return axis;
  }
  const double span = max_value - min_value;
  axis.step =
      NiceStep(span > 0 ? span / 5 : std::max(std::abs(max_value), 1.0) / 5);
  axis.low = std::floor(min_value / axis.step) * axis.step;
  axis.high = std::max(axis.low + axis.step,
                       std::ceil(max_value / axis.step) * axis.step);
  return axis;
}

// A y value for a point's hover title and the end label.
std::string FormatY(YScale scale, double y) {
  return scale == YScale::kAccuracy ? Percent(y) : absl::StrFormat("%.3g", y);
}

// An SVG line chart of `points` (x, y) with axes, grid lines and a hover
// title per point; `empty_text` replaces it when no point is finite.
std::string LineChart(absl::string_view title, absl::string_view x_title,
                      absl::string_view y_title, YScale scale,
                      absl::string_view empty_text,
                      std::vector<std::pair<double, double>> points) {
  std::string out =
      absl::StrCat("<div class=\"chart\"><h3>", HtmlEscape(title), "</h3>");
  std::vector<std::pair<double, double>> finite;
  for (const auto& point : points) {
    if (std::isfinite(point.first) && std::isfinite(point.second)) {
      finite.push_back(point);
    }
  }
  if (finite.empty()) {
    absl::StrAppend(&out, "<p class=\"empty\">", HtmlEscape(empty_text),
                    "</p></div>");
    return out;
  }
  std::sort(finite.begin(), finite.end());

  constexpr double kWidth = 560, kHeight = 300;
  constexpr double kLeft = 56, kRight = 20, kTop = 14, kBottom = 46;
  constexpr double kPlotWidth = kWidth - kLeft - kRight;
  constexpr double kPlotHeight = kHeight - kTop - kBottom;

  // y values in display units: percent for accuracies.
  const double y_unit = scale == YScale::kAccuracy ? 100 : 1;
  double max_x = 0;
  double min_y = scale == YScale::kAccuracy ? y_unit : finite[0].second;
  double max_y = finite[0].second;
  for (const auto& [x, y] : finite) {
    max_x = std::max(max_x, x);
    min_y = std::min(min_y, y);
    max_y = std::max(max_y, y);
  }
  const double x_step = NiceStep(max_x / 5);
  const double x_max = std::max(x_step, std::ceil(max_x / x_step) * x_step);
  const bool thousands = x_max >= 10000;
  const YAxis y_axis = FitYAxis(scale, y_unit * min_y, y_unit * max_y);
  const auto px = [&](double x) { return kLeft + kPlotWidth * x / x_max; };
  const auto py = [&](double y) {
    const double value = std::clamp(y_unit * y, y_axis.low, y_axis.high);
    return kTop +
           kPlotHeight * (y_axis.high - value) / (y_axis.high - y_axis.low);
  };

  absl::StrAppend(&out,
                  absl::StrFormat("<svg viewBox=\"0 0 %g %g\" role=\"img\" "
                                  "aria-label=\"%s\">",
                                  kWidth, kHeight, HtmlEscape(title)));
  for (int i = 0;; ++i) {
    const double value = y_axis.low + i * y_axis.step;
    if (value > y_axis.high + 1e-6 * y_axis.step) break;
    const double y = py(value / y_unit);
    absl::StrAppend(
        &out,
        absl::StrFormat("<line class=\"grid\" x1=\"%.1f\" y1=\"%.1f\" "
                        "x2=\"%.1f\" y2=\"%.1f\"/>",
                        kLeft, y, kLeft + kPlotWidth, y),
        absl::StrFormat("<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" "
                        "dominant-baseline=\"middle\">%g%s</text>",
                        kLeft - 6, y, value,
                        scale == YScale::kAccuracy ? "%" : ""));
  }
  for (double x = 0; x <= x_max * (1 + 1e-9); x += x_step) {
    absl::StrAppend(
        &out,
        absl::StrFormat("<line class=\"axis\" x1=\"%.1f\" y1=\"%.1f\" "
                        "x2=\"%.1f\" y2=\"%.1f\"/>",
                        px(x), kTop + kPlotHeight, px(x),
                        kTop + kPlotHeight + 4),
        absl::StrFormat("<text x=\"%.1f\" y=\"%.1f\" "
                        "text-anchor=\"middle\">%s</text>",
                        px(x), kTop + kPlotHeight + 16,
                        TickLabel(x, thousands)));
  }
  absl::StrAppend(
      &out,
      absl::StrFormat("<line class=\"axis\" x1=\"%.1f\" y1=\"%.1f\" "
                      "x2=\"%.1f\" y2=\"%.1f\"/>",
                      kLeft, kTop + kPlotHeight, kLeft + kPlotWidth,
                      kTop + kPlotHeight),
      absl::StrFormat("<text class=\"axis-title\" x=\"%.1f\" y=\"%.1f\" "
                      "text-anchor=\"middle\">%s</text>",
                      kLeft + kPlotWidth / 2, kHeight - 8, HtmlEscape(x_title)),
      absl::StrFormat("<text class=\"axis-title\" x=\"14\" y=\"%.1f\" "
                      "text-anchor=\"middle\" transform=\"rotate(-90 14 "
                      "%.1f)\">%s</text>",
                      kTop + kPlotHeight / 2, kTop + kPlotHeight / 2,
                      HtmlEscape(y_title)));
  std::string polyline;
  for (const auto& [x, y] : finite) {
    absl::StrAppend(&polyline, polyline.empty() ? "" : " ",
                    absl::StrFormat("%.1f,%.1f", px(x), py(y)));
  }
  absl::StrAppend(&out, "<polyline class=\"curve\" points=\"", polyline,
                  "\"/>");
  // Dense curves (a loss logged every few steps) get no point markers; a
  // hover title per point still needs an element, so they get invisible
  // ones.
  const bool markers = finite.size() <= 60;
  for (const auto& [x, y] : finite) {
    absl::StrAppend(
        &out, absl::StrFormat(
                  "<circle class=\"point%s\" cx=\"%.1f\" cy=\"%.1f\" "
                  "r=\"3.5\"><title>%s %s: %s</title></circle>",
                  markers ? "" : " hidden", px(x), py(y), HtmlEscape(x_title),
                  FormatCount(std::llround(x)), FormatY(scale, y)));
  }
  const auto& [last_x, last_y] = finite.back();
  absl::StrAppend(
      &out,
      absl::StrFormat("<text class=\"value-label\" x=\"%.1f\" y=\"%.1f\" "
                      "text-anchor=\"end\">%s</text>",
                      px(last_x), py(last_y) - 9, FormatY(scale, last_y)),
      "</svg></div>");
  return out;
}

// A horizontal SVG bar chart with one bar per class; `value_text` labels
// each bar and `fraction` (in [0, 1]) sets its length.
std::string BarChart(absl::string_view title, absl::string_view bar_class,
                     const std::vector<std::string>& names,
                     const std::vector<double>& fraction,
                     const std::vector<std::string>& value_text) {
  constexpr double kWidth = 520, kRowHeight = 24, kLabelWidth = 96;
  constexpr double kValueWidth = 56, kTop = 4;
  const double bar_span = kWidth - kLabelWidth - kValueWidth;
  const double height = kTop * 2 + kRowHeight * names.size();
  std::string out =
      absl::StrCat("<div class=\"chart\"><h3>", HtmlEscape(title), "</h3>",
                   absl::StrFormat("<svg viewBox=\"0 0 %g %g\" role=\"img\" "
                                   "aria-label=\"%s\">",
                                   kWidth, height, HtmlEscape(title)));
  for (size_t i = 0; i < names.size(); ++i) {
    const double y = kTop + kRowHeight * i;
    const double f =
        std::isfinite(fraction[i]) ? std::clamp(fraction[i], 0.0, 1.0) : 0;
    const double bar = bar_span * f;
    absl::StrAppend(
        &out,
        absl::StrFormat("<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" "
                        "dominant-baseline=\"middle\">%s</text>",
                        kLabelWidth - 8, y + kRowHeight / 2,
                        HtmlEscape(names[i])),
        absl::StrFormat("<rect class=\"grid\" x=\"%.1f\" y=\"%.1f\" "
                        "width=\"%.1f\" height=\"%.1f\" fill=\"#f0f4f8\" "
                        "stroke=\"none\"/>",
                        kLabelWidth, y + 4, bar_span, kRowHeight - 8),
        absl::StrFormat("<rect class=\"bar %s\" x=\"%.1f\" y=\"%.1f\" "
                        "width=\"%.1f\" height=\"%.1f\" rx=\"2\"><title>%s: "
                        "%s</title></rect>",
                        bar_class, kLabelWidth, y + 4, bar, kRowHeight - 8,
                        HtmlEscape(names[i]), value_text[i]),
        absl::StrFormat("<text class=\"value-label\" x=\"%.1f\" y=\"%.1f\" "
                        "dominant-baseline=\"middle\">%s</text>",
                        kLabelWidth + bar_span + 8, y + kRowHeight / 2,
                        value_text[i]));
  }
  absl::StrAppend(&out, "</svg></div>");
  return out;
}

std::string HeadlineCard(absl::string_view id, absl::string_view label,
                         absl::string_view value, absl::string_view detail,
                         bool small_value = false) {
  return absl::StrCat("<div class=\"card\" id=\"", id,
                      "\"><div class=\"label\">", label,
                      "</div><div class=\"value", small_value ? " small" : "",
                      "\">", value, "</div>", detail, "</div>");
}

std::string Header(const FinalReport& report) {
  const std::string title =
      report.experiment.empty() ? "Training run" : report.experiment;
  std::string out = absl::StrCat("<header><h1>", HtmlEscape(title), "</h1>",
                                 "<div class=\"subtitle\" id=\"run-summary\">");
  if (!report.objective.empty()) {
    absl::StrAppend(&out, "Objective: <b>", HtmlEscape(report.objective),
                    "</b> · ");
  }
  absl::StrAppend(&out, "Selection strategy: <b>", HtmlEscape(report.strategy),
                  "</b> · ",
                  FormatCount(static_cast<int64_t>(report.rounds.size())),
                  " rounds · ", FormatCount(report.steps), " training steps");
  if (!report.initial_weights.empty()) {
    absl::StrAppend(&out, "<br>Initial weights: <span class=\"path\">",
                    HtmlEscape(report.initial_weights), "</span>");
  }
  absl::StrAppend(&out, "</div><div class=\"cards\">");

  const double spent_fraction =
      report.label_budget > 0
          ? std::clamp(
                static_cast<double>(report.labels_spent) / report.label_budget,
                0.0, 1.0)
          : 0;
  std::string labels_detail;
  if (report.label_budget > 0) {
    labels_detail = absl::StrFormat(
        "<div class=\"detail\">%s of the budget</div><div class=\"meter\">"
        "<div style=\"width:%.1f%%\"></div></div>",
        Percent(spent_fraction), 100 * spent_fraction);
  }
  absl::StrAppend(
      &out,
      HeadlineCard("headline-accuracy", "Test accuracy",
                   Percent(report.accuracy),
                   "<div class=\"detail\">final model, full test set</div>"),
      HeadlineCard("headline-labels", "Labels spent / budget",
                   absl::StrCat(FormatCount(report.labels_spent), " / ",
                                report.label_budget > 0
                                    ? FormatCount(report.label_budget)
                                    : "&infin;"),
                   labels_detail),
      HeadlineCard("headline-device", "Device", HtmlEscape(report.device), "",
                   /*small_value=*/true),
      HeadlineCard("headline-speed", "Throughput",
                   absl::StrFormat("%.1f <span style=\"font-size:14px\">"
                                   "steps/s</span>",
                                   report.steps_per_s),
                   absl::StrCat("<div class=\"detail\">",
                                FormatCount(report.steps), " steps</div>")),
      HeadlineCard("headline-wall-time", "Wall time",
                   FormatDuration(report.wall_time_s),
                   absl::StrFormat("<div class=\"detail\">%.0f s</div>",
                                   report.wall_time_s)),
      "</div></header>");
  return out;
}

bool HasPretraining(const PretrainSummary& pretrain) {
  return !pretrain.method.empty() && pretrain.method != "none";
}

// The self-supervised stage: what ran, where its weights are and its loss.
std::string Pretraining(const PretrainSummary& pretrain) {
  std::vector<std::pair<double, double>> loss;
  for (const LossCurvePoint& point : pretrain.loss_curve) {
    loss.emplace_back(static_cast<double>(point.step), point.loss);
  }
  std::string out = absl::StrCat(
      "<section id=\"pretraining\"><h2>Pretraining</h2><div class=\"charts\">"
      "<div><h3>Summary</h3><table class=\"plain facts\">"
      "<tr><td class=\"text key\">Method</td><td class=\"text\">",
      HtmlEscape(pretrain.method),
      "</td></tr><tr><td class=\"text key\">Weights</td><td class=\"text\">",
      pretrain.reused ? "reused from the cache (no step ran)"
                      : "trained in this run",
      "</td></tr><tr><td class=\"text key\">Steps</td><td class=\"text\">",
      FormatCount(pretrain.steps),
      "</td></tr><tr><td class=\"text key\">Time</td><td class=\"text\">",
      FormatDuration(pretrain.wall_time_s), "</td></tr>");
  std::vector<double> finite_loss;
  for (const LossCurvePoint& point : pretrain.loss_curve) {
    if (std::isfinite(point.loss)) finite_loss.push_back(point.loss);
  }
  if (!finite_loss.empty()) {
    absl::StrAppend(&out,
                    "<tr><td class=\"text key\">Loss</td><td class=\"text\">",
                    absl::StrFormat("%.3g &rarr; %.3g", finite_loss.front(),
                                    finite_loss.back()),
                    "</td></tr>");
  }
  absl::StrAppend(
      &out,
      "<tr><td class=\"text key\">Checkpoint</td><td class=\"text path\">",
      pretrain.checkpoint.empty() ? "&ndash;" : HtmlEscape(pretrain.checkpoint),
      "</td></tr></table></div>");
  if (!pretrain.loss_curve.empty()) {
    absl::StrAppend(&out, LineChart("Pretraining loss vs step", "step", "loss",
                                    YScale::kLinear, "No finite loss recorded.",
                                    std::move(loss)));
  }
  absl::StrAppend(&out, "</div></section>");
  return out;
}

// kNN accuracy on the learned embedding next to kNN on PCA pixels.
std::string FeatureQuality(const std::vector<FeatureQualityRecord>& records) {
  std::string out = absl::StrCat(
      "<section id=\"feature-quality\"><h2>Feature quality</h2>"
      "<table class=\"plain\"><tr><th class=\"text\">Stage</th>"
      "<th>Labels</th><th>kNN on embedding</th><th>kNN on PCA pixels</th>"
      "<th>Difference</th></tr>");
  for (const FeatureQualityRecord& record : records) {
    // From the percentages as shown, so that the row adds up.
    const double difference = ShownPercent(record.embedding_accuracy) -
                              ShownPercent(record.pca_accuracy);
    absl::StrAppend(
        &out, "<tr><td class=\"text\">", HtmlEscape(record.stage), "</td><td>",
        FormatCount(record.labels), "</td><td>",
        Percent(record.embedding_accuracy), "</td><td>",
        Percent(record.pca_accuracy), "</td>",
        absl::StrFormat("<td class=\"%s\">%+.1f pp</td></tr>",
                        difference >= 0 ? "better" : "worse", difference));
  }
  absl::StrAppend(
      &out,
      "</table><div class=\"note\">k-nearest-neighbour classifier on the "
      "bought labels; higher than PCA means the learned features beat the "
      "pixels.</div></section>");
  return out;
}

std::string LearningCurves(const FinalReport& report) {
  std::vector<std::pair<double, double>> by_labels;
  for (const LabelCurvePoint& point : report.label_curve) {
    by_labels.emplace_back(static_cast<double>(point.labels_spent),
                           point.accuracy);
  }
  std::vector<std::pair<double, double>> by_step;
  for (const StepCurvePoint& point : report.step_curve) {
    by_step.emplace_back(static_cast<double>(point.step), point.accuracy);
  }
  return absl::StrCat(
      "<section id=\"learning-curves\"><h2>Learning curves</h2>"
      "<div class=\"charts\">",
      LineChart("Accuracy vs labels spent", "labels spent", "test accuracy",
                YScale::kAccuracy, "No evaluations recorded.",
                std::move(by_labels)),
      LineChart("Accuracy vs training step", "step", "test accuracy",
                YScale::kAccuracy, "No evaluations recorded.",
                std::move(by_step)),
      "</div></section>");
}

std::string Rounds(const FinalReport& report) {
  std::string out = "<section id=\"rounds\"><h2>Rounds</h2>";
  if (report.rounds.empty()) {
    return absl::StrCat(out, "<p class=\"empty\">No rounds recorded.</p>",
                        "</section>");
  }
  absl::StrAppend(&out,
                  "<table class=\"plain\"><tr><th>Round</th>"
                  "<th>Labels spent</th><th>Test accuracy</th><th>Steps</th>"
                  "<th class=\"text\">Strategy</th></tr>");
  for (const RoundRecord& round : report.rounds) {
    absl::StrAppend(&out, "<tr><td>", round.round, "</td><td>",
                    FormatCount(round.labels_spent), "</td><td>",
                    Percent(round.test_accuracy), "</td><td>",
                    FormatCount(round.steps), "</td><td class=\"text\">",
                    HtmlEscape(round.strategy), "</td></tr>");
  }
  absl::StrAppend(&out, "</table></section>");
  return out;
}

// Background of a confusion cell holding `share` of its row: blue on the
// diagonal (correct), red off it (errors); errors are amplified so that
// confusions of a few percent stand out.
std::string CellStyle(double share, bool diagonal) {
  const double alpha = std::clamp(diagonal ? share : share * 3.5, 0.0, 1.0);
  if (alpha <= 0) return "";
  const char* rgb = diagonal ? "37,99,235" : "220,38,38";
  const char* text = alpha > 0.55 ? ";color:#fff" : "";
  return absl::StrFormat(" style=\"background:rgba(%s,%.2f)%s\"", rgb, alpha,
                         text);
}

// What the report shows when the oracle withheld the per-class results.
constexpr char kWithheld[] =
    "The oracle withheld per-class accuracy and the confusion matrix for "
    "this evaluation: some class was predicted for fewer test images than "
    "its <code>--evaluate_min_predictions_per_class</code> (so that no "
    "test label can be read off them).";

std::string Confusion(const FinalReport& report) {
  if (report.confusion.empty()) {
    return absl::StrCat(
        "<section id=\"confusion\"><h2>Confusion matrix</h2><p class=\"note\">",
        kWithheld, "</p></section>");
  }
  const size_t n = report.class_names.size();
  std::string out = absl::StrCat(
      "<section id=\"confusion\"><h2>Confusion matrix</h2>"
      "<table class=\"confusion\"><tr><th class=\"corner\">true &darr; / "
      "predicted &rarr;</th>");
  for (const std::string& name : report.class_names) {
    absl::StrAppend(&out, "<th class=\"col\">", HtmlEscape(name), "</th>");
  }
  absl::StrAppend(&out, "<th class=\"col\">Accuracy</th>",
                  "<th class=\"col\">Total</th></tr>");
  for (size_t row = 0; row < n; ++row) {
    int64_t total = 0;
    for (int64_t count : report.confusion[row]) total += count;
    absl::StrAppend(&out, "<tr><th class=\"row\">",
                    HtmlEscape(report.class_names[row]), "</th>");
    for (size_t col = 0; col < n; ++col) {
      const int64_t count = report.confusion[row][col];
      const double share = total > 0 ? static_cast<double>(count) / total : 0.0;
      absl::StrAppend(&out, "<td class=\"cell\"", CellStyle(share, row == col),
                      " title=\"true ", HtmlEscape(report.class_names[row]),
                      ", predicted ", HtmlEscape(report.class_names[col]), ": ",
                      FormatCount(count), " (", Percent(share), " of row)\">",
                      FormatCount(count), "</td>");
    }
    absl::StrAppend(
        &out, "<td class=\"acc\">", Percent(report.per_class_accuracy[row]),
        "</td><td class=\"total\">", FormatCount(total), "</td></tr>");
  }
  absl::StrAppend(
      &out,
      "</table><div class=\"note\">Rows are true classes, columns predicted "
      "classes. Shading is the share of the row:"
      "<span class=\"swatch\" style=\"background:#2563eb\"></span>correct"
      "<span class=\"swatch\" style=\"background:#dc2626\"></span>"
      "confused</div></section>");
  return out;
}

std::string PerClass(const FinalReport& report) {
  const size_t n = report.class_names.size();
  std::vector<int64_t> counts(n, 0);
  for (const QueriedSample& sample : report.queried) ++counts[sample.label];
  const int64_t max_count =
      std::max<int64_t>(1, *std::max_element(counts.begin(), counts.end()));
  std::vector<double> count_fraction;
  std::vector<std::string> count_text;
  std::vector<std::string> accuracy_text;
  for (size_t i = 0; i < n; ++i) {
    count_fraction.push_back(static_cast<double>(counts[i]) / max_count);
    count_text.push_back(FormatCount(counts[i]));
    if (!report.per_class_accuracy.empty()) {
      accuracy_text.push_back(Percent(report.per_class_accuracy[i]));
    }
  }
  return absl::StrCat(
      "<section id=\"per-class\"><h2>Per class</h2><div class=\"charts\">",
      report.per_class_accuracy.empty()
          ? absl::StrCat("<p class=\"note\">", kWithheld, "</p>")
          : BarChart("Test accuracy per class", "", report.class_names,
                     report.per_class_accuracy, accuracy_text),
      BarChart("Queried labels per class", "queried", report.class_names,
               count_fraction, count_text),
      "</div></section>");
}

absl::StatusOr<std::string> Queried(const FinalReport& report) {
  std::string out = absl::StrCat(
      "<section id=\"queried\"><h2>Queried samples (",
      FormatCount(static_cast<int64_t>(report.queried.size())), ")</h2>");
  if (report.queried.empty()) {
    absl::StrAppend(&out, "<p class=\"empty\">No labels were queried.</p>",
                    "</section>");
    return out;
  }
  // Grouped by round, in the order given within a round.
  std::map<int, std::vector<const QueriedSample*>> by_round;
  for (const QueriedSample& sample : report.queried) {
    by_round[sample.round].push_back(&sample);
  }
  const int side = kImageSide * kImageScale;
  for (const auto& [round, samples] : by_round) {
    absl::StrAppend(&out, "<h3>Round ", round, " &middot; ",
                    FormatCount(static_cast<int64_t>(samples.size())),
                    samples.size() == 1 ? " image" : " images",
                    "</h3><div class=\"samples\">");
    for (const QueriedSample* sample : samples) {
      ASSIGN_OR_RETURN(
          const std::string uri,
          GrayscalePngDataUri(sample->pixels, kImageSide, kImageSide));
      const std::string name = HtmlEscape(report.class_names[sample->label]);
      absl::StrAppend(&out, "<figure class=\"sample\"><img src=\"", uri,
                      "\" width=\"", side, "\" height=\"", side, "\" alt=\"",
                      name, " #", sample->id, "\" title=\"#", sample->id, " ",
                      name, ", round ", sample->round, "\"><figcaption><b>#",
                      sample->id, "</b> r", sample->round, "<br>", name,
                      "</figcaption></figure>");
    }
    absl::StrAppend(&out, "</div>");
  }
  absl::StrAppend(&out, "</section>");
  return out;
}

std::string Config(const FinalReport& report) {
  std::string out = "<section id=\"config\"><h2>Configuration</h2>";
  if (report.config.empty()) {
    return absl::StrCat(out, "<p class=\"empty\">No configuration recorded.",
                        "</p></section>");
  }
  absl::StrAppend(&out, "<table class=\"plain config\">");
  for (const auto& [key, value] : report.config) {
    absl::StrAppend(&out, "<tr><td class=\"text key\">", HtmlEscape(key),
                    "</td><td class=\"text\">", HtmlEscape(value),
                    "</td></tr>");
  }
  absl::StrAppend(&out, "</table></section>");
  return out;
}

}  // namespace

std::string HtmlEscape(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out.push_back(c);
    }
  }
  return out;
}

std::string FormatCount(int64_t value) {
  // Work on the magnitude as unsigned so that INT64_MIN is handled.
  const bool negative = value < 0;
  const uint64_t magnitude = negative ? 0 - static_cast<uint64_t>(value)
                                      : static_cast<uint64_t>(value);
  const std::string digits = absl::StrCat(magnitude);
  std::string out = negative ? "-" : "";
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out.push_back(',');
    out.push_back(digits[i]);
  }
  return out;
}

absl::StatusOr<std::string> RenderReportHtml(const FinalReport& report) {
  RETURN_IF_ERROR(ValidateFinalReport(report));
  ASSIGN_OR_RETURN(const std::string queried, Queried(report));
  const std::string title =
      report.experiment.empty() ? "Training run" : report.experiment;
  return absl::StrCat(
      "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
      "<meta name=\"viewport\" content=\"width=device-width, "
      "initial-scale=1\"><title>",
      HtmlEscape(title), " &middot; fewlabels report</title><style>", kStyle,
      "</style></head><body><main>", Header(report),
      HasPretraining(report.pretrain) ? Pretraining(report.pretrain) : "",
      report.feature_quality.empty() ? ""
                                     : FeatureQuality(report.feature_quality),
      LearningCurves(report), Rounds(report), Confusion(report),
      PerClass(report), queried, Config(report),
      "<footer>Generated by the fewlabels trainer. Self-contained: no "
      "scripts, no network.</footer></main></body></html>\n");
}

}  // namespace trainer
