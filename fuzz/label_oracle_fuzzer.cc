// Fuzzes request validation of every LabelOracle RPC, in process, on a fresh
// oracle over an in-memory SQLite store per input.
//
// Input: one configuration byte, then records
//   [rpc:1][token:1][peer:1][length:2, little endian][serialized request]
// (a short last record takes what is left). rpc % 5 picks CreateExperiment,
// QueryLabels, GetBudget, Evaluate or ListQueries; the payload is parsed
// into that request type (an unparsable one is skipped). Nothing may crash;
// OK responses must be self-consistent; statuses must be specific (never
// UNKNOWN or INTERNAL); and afterwards the audit log must verify.
// fuzz/make_corpus.py writes seeds in this format.
#include <google/protobuf/stubs/logging.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "fuzz/fuzz_support.h"
#include "oracle_server/audit_chain.h"
#include "oracle_server/label_oracle.h"
#include "oracle_server/sqlite_label_store.h"
#include "proto/oracle.pb.h"

namespace {

constexpr uint32_t kTrainCount = 64;
constexpr uint32_t kTestCount = 10;
constexpr int kMaxCalls = 32;
constexpr char kAdminToken[] = "admin-secret";

struct LabelFiles {
  std::string train;
  std::string test;
};

const LabelFiles& Files() {
  static const LabelFiles* files = [] {
    auto* f = new LabelFiles{fuzz::ScratchDir() + "/train-labels.idx",
                             fuzz::ScratchDir() + "/test-labels.idx"};
    fuzz::WriteIdxLabels(f->train, kTrainCount);
    fuzz::WriteIdxLabels(f->test, kTestCount);
    return f;
  }();
  return *files;
}

oracle_server::OracleOptions OptionsFrom(uint8_t config) {
  static constexpr int64_t kEvalCaps[] = {1, 2, 3, 100};
  static constexpr int64_t kMaxBatches[] = {1, 2, 4, 8, 16, 64, 100, 10000};
  oracle_server::OracleOptions options;
  options.default_budget = 8;
  if (config & 1) options.admin_token = kAdminToken;
  options.eval_cap = kEvalCaps[(config >> 1) & 3];
  options.max_evaluations_per_client = (config & 8) ? 2 : 0;
  options.max_evaluations_total = (config & 16) ? 3 : 0;
  options.max_batch = kMaxBatches[config >> 5];
  // Per-class results withheld unless every class is predicted at least
  // once (of the few test images), or always returned.
  options.evaluate_min_predictions_per_class = (config & 8) ? 1 : 0;
  return options;
}

oracle_server::Caller CallerFrom(uint8_t token, uint8_t peer) {
  static const char* const kTokens[] = {"", kAdminToken, "tok-a", "tok-b"};
  static const char* const kPeers[] = {"", "ipv4:10.0.0.1", "ipv6:[::1]"};
  return oracle_server::Caller(kTokens[token % 4], kPeers[peer % 3]);
}

// Statuses a request may end in: never UNKNOWN, INTERNAL or DATA_LOSS (the
// in-memory store does not fail).
void CheckStatus(const absl::Status& status, const char* rpc) {
  switch (status.code()) {
    case absl::StatusCode::kUnknown:
    case absl::StatusCode::kInternal:
    case absl::StatusCode::kDataLoss:
      fuzz::Fail(absl::StrCat(rpc, ": ", status.ToString()));
    default:
      break;
  }
  if (status.ok() != common::ToGrpcStatus(status).ok()) {
    fuzz::Fail(absl::StrCat(rpc, ": status mapping changes OK-ness"));
  }
}

template <typename Request>
bool Parse(const uint8_t* data, size_t size, Request* request) {
  return request->ParseFromArray(data, static_cast<int>(size));
}

void Call(oracle_server::LabelOracle& oracle, uint8_t rpc,
          const oracle_server::Caller& caller, const uint8_t* payload,
          size_t size) {
  switch (rpc % 5) {
    case 0: {
      oracle::v1::CreateExperimentRequest request;
      if (!Parse(payload, size, &request)) return;
      auto result = oracle.CreateExperiment(request, caller);
      CheckStatus(result.status(), "CreateExperiment");
      if (result.ok() && (result->name() != request.name() ||
                          result->label_budget() <= 0 || result->id() <= 0)) {
        fuzz::Fail("CreateExperiment: inconsistent experiment");
      }
      return;
    }
    case 1: {
      oracle::v1::QueryLabelsRequest request;
      if (!Parse(payload, size, &request)) return;
      auto result = oracle.QueryLabels(request, caller);
      CheckStatus(result.status(), "QueryLabels");
      if (!result.ok()) return;
      if (result->labels_size() != request.ids_size() ||
          result->remaining() < 0 ||
          result->newly_revealed() > request.ids_size()) {
        fuzz::Fail("QueryLabels: inconsistent response");
      }
      for (int i = 0; i < result->labels_size(); ++i) {
        if (result->labels(i) !=
            static_cast<int>((request.ids(i) * 7 + 3) % 10)) {
          fuzz::Fail("QueryLabels: wrong label");
        }
      }
      return;
    }
    case 2: {
      oracle::v1::GetBudgetRequest request;
      if (!Parse(payload, size, &request)) return;
      auto result = oracle.GetBudget(request, caller);
      CheckStatus(result.status(), "GetBudget");
      if (result.ok() &&
          (result->spent() < 0 || result->remaining() < 0 ||
           result->spent() + result->remaining() != result->label_budget())) {
        fuzz::Fail("GetBudget: inconsistent budget");
      }
      return;
    }
    case 3: {
      oracle::v1::EvaluateRequest request;
      if (!Parse(payload, size, &request)) return;
      auto result = oracle.Evaluate(request, caller);
      CheckStatus(result.status(), "Evaluate");
      if (!result.ok()) return;
      int64_t total = 0;
      for (int64_t count : result->confusion()) total += count;
      // Per-class results come whole or not at all (withheld).
      const bool withheld = result->confusion_size() == 0 &&
                            result->per_class_accuracy_size() == 0;
      const bool whole =
          result->confusion_size() ==
              result->num_classes() * result->num_classes() &&
          result->per_class_accuracy_size() == result->num_classes() &&
          total == kTestCount;
      if (result->accuracy() < 0 || result->accuracy() > 1 ||
          !(withheld || whole) || result->evaluations_left() < 0) {
        fuzz::Fail("Evaluate: inconsistent response");
      }
      return;
    }
    default: {
      oracle::v1::ListQueriesRequest request;
      if (!Parse(payload, size, &request)) return;
      auto result = oracle.ListQueries(request, caller);
      CheckStatus(result.status(), "ListQueries");
      if (!result.ok()) return;
      int64_t previous = request.after_sequence();
      for (const oracle::v1::AuditRow& row : result->rows()) {
        if (row.sequence() <= previous) fuzz::Fail("ListQueries: order");
        previous = row.sequence();
      }
      return;
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  // Unparsable requests (e.g. invalid UTF-8 in a string, which gRPC rejects
  // before any RPC) are expected; protobuf would log each.
  google::protobuf::SetLogHandler(nullptr);
  Files();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  oracle_server::StoreOptions store_options;
  store_options.db_path = ":memory:";
  store_options.train_labels_path = Files().train;
  store_options.test_labels_path = Files().test;
  store_options.train_count = kTrainCount;
  store_options.test_count = kTestCount;
  auto store = oracle_server::SqliteLabelStore::Open(store_options);
  if (!store.ok()) fuzz::Fail("store: " + store.status().ToString());
  auto oracle = oracle_server::LabelOracle::Create(OptionsFrom(data[0]),
                                                   *std::move(store));
  if (!oracle.ok()) fuzz::Fail("oracle: " + oracle.status().ToString());

  size_t at = 1;
  for (int call = 0; call < kMaxCalls && at + 3 <= size; ++call) {
    const uint8_t rpc = data[at];
    const oracle_server::Caller caller = CallerFrom(data[at + 1], data[at + 2]);
    at += 3;
    size_t length = 0;
    if (at + 2 <= size) {
      length = data[at] | (size_t{data[at + 1]} << 8);
      at += 2;
    }
    if (length > size - at) length = size - at;
    Call(**oracle, rpc, caller, data + at, length);
    at += length;
  }

  auto verified = oracle_server::VerifyAuditLog((*oracle)->store());
  if (!verified.ok()) fuzz::Fail("verify: " + verified.status().ToString());
  if (!verified->ok) {
    fuzz::Fail(absl::StrCat("audit log fails verification at row ",
                            verified->bad_sequence, ": ", verified->reason));
  }
  return 0;
}
