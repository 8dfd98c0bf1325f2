// Renders a FinalReport as a self-contained HTML page: inline CSS, inline
// SVG charts and inline PNG images; no scripts and no network access.
#ifndef TRAINER_REPORT_REPORT_HTML_H_
#define TRAINER_REPORT_REPORT_HTML_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "trainer/report/run_report.h"

namespace trainer {

// Escapes &, <, >, " and ' so that `text` is safe in element content and in
// quoted attribute values.
std::string HtmlEscape(absl::string_view text);

// Formats an integer with thousands separators: 1234567 -> "1,234,567".
std::string FormatCount(int64_t value);

// Returns the report page. Elements carrying the headline numbers have the
// ids "headline-accuracy", "headline-labels", "headline-device",
// "headline-speed" and "headline-wall-time", the objective, strategy and
// initial weights are in "run-summary"; sections have the ids
// "pretraining" (only when pretrain.method is not "none"),
// "feature-quality" (only when feature_quality is not empty),
// "learning-curves", "rounds", "confusion", "per-class", "queried" and
// "config". Each queried sample is one <img> with a PNG data URI. Returns
// INVALID_ARGUMENT if ValidateFinalReport(report) fails.
absl::StatusOr<std::string> RenderReportHtml(const FinalReport& report);

}  // namespace trainer

#endif  // TRAINER_REPORT_REPORT_HTML_H_
