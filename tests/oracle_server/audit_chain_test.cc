#include "oracle_server/audit_chain.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/sha256.h"
#include "common/status_matchers.h"
#include "oracle_server/sqlite_label_store.h"
#include "tests/oracle_server/oracle_test_data.h"

namespace oracle_server {
namespace {

using ::common::IsOk;
using ::common::StatusIs;
using testdata::SyntheticStoreOptions;
using testdata::TestDir;
using ::testing::HasSubstr;

AuditRecord SampleRow() {
  AuditRecord row;
  row.sequence = 7;
  row.time_unix_micros = 1700000000123456;
  row.experiment = "exp";
  row.client = "trainer@host";
  row.strategy = "kcenter";
  row.round = 2;
  row.kind = kKindQuery;
  row.ids_asked = {5, 12, 3};
  row.ids_revealed = {12, 3};
  row.outcome = Outcome::kGranted;
  row.detail = "";
  return row;
}

TEST(AuditChainTest, CanonicalRowHasEveryFieldLengthPrefixed) {
  EXPECT_EQ(CanonicalAuditRow(SampleRow()),
            "sequence=1:7;time_unix_micros=16:1700000000123456;"
            "experiment=3:exp;client=12:trainer@host;strategy=7:kcenter;"
            "round=1:2;kind=5:query;ids_asked=6:5,12,3;ids_revealed=4:12,3;"
            "outcome=7:GRANTED;detail=0:;");
}

TEST(AuditChainTest, RoleAndPeerAreHashedOnlyWhenSet) {
  AuditRecord row = SampleRow();
  const std::string without = CanonicalAuditRow(row);
  row.role = "client";
  row.peer = "ipv4:10.0.0.7";
  EXPECT_EQ(CanonicalAuditRow(row),
            without + "role=6:client;peer=13:ipv4:10.0.0.7;");
  row.role = "";
  EXPECT_EQ(CanonicalAuditRow(row), without + "peer=13:ipv4:10.0.0.7;");
}

TEST(AuditChainTest, CanonicalRowIsUnambiguous) {
  AuditRecord a = SampleRow();
  a.client = "ab";
  a.strategy = "c";
  AuditRecord b = SampleRow();
  b.client = "a";
  b.strategy = "bc";
  EXPECT_NE(CanonicalAuditRow(a), CanonicalAuditRow(b));

  // A value that imitates the next field does not collide either.
  AuditRecord c = SampleRow();
  c.client = "x;strategy=7:kcenter";
  c.strategy = "";
  AuditRecord d = SampleRow();
  d.client = "x";
  EXPECT_NE(CanonicalAuditRow(c), CanonicalAuditRow(d));
}

TEST(AuditChainTest, HashIsSha256OfPrevHashAndRow) {
  const AuditRecord row = SampleRow();
  EXPECT_EQ(
      AuditRowHash(kGenesisHash, row),
      common::Sha256Hex(std::string(kGenesisHash) + CanonicalAuditRow(row)));
  EXPECT_EQ(std::string(kGenesisHash), std::string(64, '0'));
  AuditRecord other = row;
  other.round = 3;
  EXPECT_NE(AuditRowHash(kGenesisHash, row), AuditRowHash(kGenesisHash, other));
}

TEST(AuditChainTest, DetailTermsRoundTrip) {
  LedgerTerms query;
  query.budget = 100;
  query.spent = 40;
  EXPECT_EQ(DetailWithTerms(query, ""), "budget=100 spent=40");
  const std::string denied =
      DetailWithTerms(query, "requested 70 new labels but only 60 remain");
  EXPECT_EQ(denied,
            "budget=100 spent=40; requested 70 new labels but only 60 remain");
  std::optional<LedgerTerms> parsed = ParseDetailTerms(denied);
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ(parsed->budget, 100);
  EXPECT_EQ(parsed->spent, 40);
  EXPECT_EQ(parsed->evaluations, -1);
  EXPECT_EQ(parsed->evaluation_cap, -1);

  LedgerTerms evaluation;
  evaluation.evaluations = 3;
  evaluation.evaluation_cap = 10;
  evaluation.total = 7;
  evaluation.total_cap = 50;
  evaluation.peer_evaluations = 2;
  evaluation.peer_cap = 5;
  const std::string evaluated = DetailWithTerms(evaluation, "accuracy=0.5");
  EXPECT_EQ(evaluated,
            "evaluations=3 evaluation_cap=10 total=7 total_cap=50 "
            "peer_evaluations=2 peer_cap=5; accuracy=0.5");
  parsed = ParseDetailTerms(evaluated);
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ(parsed->budget, -1);
  EXPECT_EQ(parsed->evaluations, 3);
  EXPECT_EQ(parsed->evaluation_cap, 10);
  EXPECT_EQ(parsed->total, 7);
  EXPECT_EQ(parsed->total_cap, 50);
  EXPECT_EQ(parsed->peer_evaluations, 2);
  EXPECT_EQ(parsed->peer_cap, 5);
}

TEST(AuditChainTest, DetailsWithoutTermsParseAsNone) {
  // The details rows had before terms existed, and malformed terms.
  for (const char* detail :
       {"", "accuracy=0.500000 correct=1/2",
        "requested 1 new labels but only 0 remain",
        "evaluation cap of 3 reached", "INVALID_ARGUMENT: id 3 appears twice",
        "budget=", "budget=+5", "budget=-1", "budget=5 budget=6",
        "budget=5  spent=1", "budget=5 colour=2", "budget=5;spent=1",
        "budget=99999999999999999999", "; budget=5"}) {
    EXPECT_FALSE(ParseDetailTerms(detail).has_value()) << detail;
  }
}

TEST(AuditChainTest, OnlyTheTextBeforeTheFirstSeparatorIsTerms) {
  // A caller's note comes after "; " and cannot add or change terms.
  std::optional<LedgerTerms> parsed = ParseDetailTerms(
      "evaluations=1 evaluation_cap=2; accuracy=0.5 note=x; budget=9 "
      "evaluations=0");
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ(parsed->evaluations, 1);
  EXPECT_EQ(parsed->evaluation_cap, 2);
  EXPECT_EQ(parsed->budget, -1);
}

// A database with six audit rows: 1 granted {1,2}, 2 granted {3} (2 repeats),
// 3 denied over budget, 4 an evaluation, 5 a denied invalid request, 6 a
// granted reveal to a second experiment.
class AuditChainFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    db_path_ = dir_.path() + "/oracle.db";
    auto store = SqliteLabelStore::Open(
        SyntheticStoreOptions(dir_.path(), 100, 20, db_path_));
    ASSERT_THAT(store, IsOk());
    for (const char* name : {"a", "b"}) {
      ExperimentRecord experiment;
      experiment.name = name;
      experiment.label_budget = 3;
      experiment.evaluation_cap = 2;
      ASSERT_THAT((*store)->CreateExperiment(experiment, nullptr), IsOk());
    }
    ASSERT_THAT(Reveal(**store, "a", {1, 2}), IsOk());
    ASSERT_THAT(Reveal(**store, "a", {2, 3}), IsOk());
    ASSERT_THAT(Reveal(**store, "a", {4}), IsOk());
    EvaluationRequest evaluation;
    evaluation.experiment = "a";
    evaluation.detail = "accuracy=0.250000";
    ASSERT_THAT((*store)->RecordEvaluation(evaluation), IsOk());
    AuditRecord invalid;
    invalid.experiment = "a";
    invalid.kind = kKindQuery;
    invalid.ids_asked = {-1};
    invalid.outcome = Outcome::kDeniedInvalid;
    invalid.detail = "INVALID_ARGUMENT: id -1 at index 0 is not in [0, 100)";
    ASSERT_THAT((*store)->AppendAudit(invalid), IsOk());
    ASSERT_THAT(Reveal(**store, "b", {1}), IsOk());
  }

  static absl::Status Reveal(LabelStore& store, const std::string& experiment,
                             std::vector<int64_t> ids) {
    RevealRequest request;
    request.experiment = experiment;
    request.ids = std::move(ids);
    request.client = "test";
    return store.Reveal(request).status();
  }

  // Runs `sql` on the closed database file, as someone tampering with it.
  void Tamper(const std::string& sql) {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(db_path_.c_str(), &db), SQLITE_OK);
    char* error = nullptr;
    ASSERT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &error),
              SQLITE_OK)
        << (error != nullptr ? error : "");
    ASSERT_EQ(sqlite3_changes(db), 1) << sql;
    sqlite3_close(db);
  }

  // The audit rows as the file holds them, read through a read-only store.
  std::vector<AuditRecord> ReadRows() {
    StoreOptions options;
    options.db_path = db_path_;
    options.read_only = true;
    auto store = SqliteLabelStore::Open(options);
    EXPECT_THAT(store, IsOk());
    if (!store.ok()) return {};
    auto rows = (*store)->ListAudit("", 0, 100);
    EXPECT_THAT(rows, IsOk());
    return rows.ok() ? *std::move(rows) : std::vector<AuditRecord>();
  }

  // Rewrites the log as a careful forger would: `edit` changes the rows as
  // read, each statement of `sql` makes the same change to the file, and
  // every row is re-hashed (and the recorded head), so the chain holds and
  // only the cross-checks can catch the forgery.
  void ForgeAndRehash(
      const std::function<void(std::vector<AuditRecord>&)>& edit,
      const std::vector<std::string>& sql) {
    std::vector<AuditRecord> rows = ReadRows();
    edit(rows);
    std::string prev = kGenesisHash;
    for (AuditRecord& row : rows) {
      row.prev_hash = prev;
      row.hash = AuditRowHash(prev, row);
      prev = row.hash;
    }
    for (const std::string& statement : sql) Tamper(statement);
    for (const AuditRecord& row : rows) {
      Tamper("UPDATE audit SET prev_hash = '" + row.prev_hash + "', hash = '" +
             row.hash + "' WHERE seq = " + std::to_string(row.sequence));
    }
    Tamper("UPDATE metadata SET value = '" + prev +
           "' WHERE key = 'audit_head_hash'");
  }

  // Forges row `sequence`'s id lists.
  void ForgeIdsAndRehash(int64_t sequence, const std::string& ids_asked,
                         const std::string& ids_revealed) {
    auto asked = ParseAuditIds(ids_asked, sequence);
    auto revealed = ParseAuditIds(ids_revealed, sequence);
    ASSERT_THAT(asked, IsOk());
    ASSERT_THAT(revealed, IsOk());
    ForgeAndRehash(
        [&](std::vector<AuditRecord>& rows) {
          ASSERT_GE(rows.size(), static_cast<size_t>(sequence));
          rows[sequence - 1].ids_asked = *asked;
          rows[sequence - 1].ids_revealed = *revealed;
        },
        {"UPDATE audit SET ids_asked = '" + ids_asked + "', ids_revealed = '" +
         ids_revealed + "' WHERE seq = " + std::to_string(sequence)});
  }

  // Forges the details of rows: sequence -> detail (without single quotes).
  void ForgeDetailsAndRehash(const std::map<int64_t, std::string>& details) {
    std::vector<std::string> sql;
    for (const auto& [sequence, detail] : details) {
      sql.push_back("UPDATE audit SET detail = '" + detail +
                    "' WHERE seq = " + std::to_string(sequence));
    }
    ForgeAndRehash(
        [&](std::vector<AuditRecord>& rows) {
          for (const auto& [sequence, detail] : details) {
            ASSERT_GE(rows.size(), static_cast<size_t>(sequence));
            rows[sequence - 1].detail = detail;
          }
        },
        sql);
  }

  // Verifies the file and expects it to fail first at row `sequence`, for a
  // reason that contains `reason`.
  void ExpectFailsAt(int64_t sequence, const std::string& reason) {
    AuditVerification verification = Verify();
    EXPECT_FALSE(verification.ok);
    EXPECT_EQ(verification.bad_sequence, sequence);
    EXPECT_THAT(verification.reason, HasSubstr(reason));
  }

  AuditVerification Verify() {
    auto verification = VerifyAuditLogFile(db_path_);
    EXPECT_THAT(verification, IsOk());
    return verification.ok() ? *verification : AuditVerification();
  }

  TestDir dir_;
  std::string db_path_;
};

TEST_F(AuditChainFileTest, UntouchedLogVerifies) {
  AuditVerification verification = Verify();
  EXPECT_TRUE(verification.ok) << verification.reason;
  EXPECT_EQ(verification.rows_verified, 6);
  EXPECT_EQ(verification.bad_sequence, 0);
  EXPECT_EQ(verification.reason, "");
}

TEST_F(AuditChainFileTest, EditedRowFailsAtItsSequence) {
  Tamper("UPDATE audit SET ids_revealed = '2' WHERE seq = 2");
  AuditVerification verification = Verify();
  EXPECT_FALSE(verification.ok);
  EXPECT_EQ(verification.bad_sequence, 2);
  EXPECT_THAT(verification.reason,
              HasSubstr("does not match the row's content"));
  EXPECT_EQ(verification.rows_verified, 1);
}

TEST_F(AuditChainFileTest, EditedDetailFailsAtItsSequence) {
  Tamper("UPDATE audit SET detail = 'accuracy=0.990000' WHERE seq = 4");
  AuditVerification verification = Verify();
  EXPECT_FALSE(verification.ok);
  EXPECT_EQ(verification.bad_sequence, 4);
}

TEST_F(AuditChainFileTest, DeletedRowFails) {
  Tamper("DELETE FROM audit WHERE seq = 3");
  AuditVerification verification = Verify();
  EXPECT_FALSE(verification.ok);
  EXPECT_EQ(verification.bad_sequence, 4);
  EXPECT_THAT(verification.reason, HasSubstr("sequence jumps from 2 to 4"));
}

TEST_F(AuditChainFileTest, RenumberedRowsBreakTheChain) {
  // Hiding a deletion by renumbering still breaks prev_hash.
  Tamper("DELETE FROM audit WHERE seq = 3");
  Tamper("UPDATE audit SET seq = 3 WHERE seq = 4");
  AuditVerification verification = Verify();
  EXPECT_FALSE(verification.ok);
  EXPECT_EQ(verification.bad_sequence, 3);
  EXPECT_THAT(verification.reason, HasSubstr("prev_hash"));
}

TEST_F(AuditChainFileTest, DeletedLastRowFails) {
  Tamper("DELETE FROM audit WHERE seq = 6");
  AuditVerification verification = Verify();
  EXPECT_FALSE(verification.ok);
  EXPECT_EQ(verification.bad_sequence, 6);
  EXPECT_THAT(verification.reason, HasSubstr("removed from the end"));
}

TEST_F(AuditChainFileTest, RevealedLabelWithoutGrantFails) {
  Tamper(
      "INSERT INTO revealed (experiment_id, sample_id, audit_seq) "
      "SELECT id, 50, 2 FROM experiments WHERE name = 'a'");
  ExpectFailsAt(2,
                "id 50 is recorded as revealed to \"a\" by row 2 but "
                "no GRANTED row lists it");
}

TEST_F(AuditChainFileTest, GrantWithoutRevealedRowFails) {
  Tamper("DELETE FROM revealed WHERE sample_id = 3");
  ExpectFailsAt(2, "revealed table does not record it");
}

TEST_F(AuditChainFileTest, RehashedForgeryIsCaughtByCrossChecks) {
  // Claim row 2 revealed id 1 again instead of 3.
  ForgeIdsAndRehash(2, "1", "1");
  ExpectFailsAt(2,
                "reveals id 1 to \"a\" again (already revealed by "
                "row 1)");
}

// A GRANTED row returns the label of every id it asked for, so each must be
// paid for by that row or an earlier one of the same experiment.
TEST_F(AuditChainFileTest, GrantedIdsThatWereNeverPaidForFail) {
  ForgeIdsAndRehash(1, "1,2,3,4,5,6,7,8,9", "1,2");
  AuditVerification verification = Verify();
  EXPECT_FALSE(verification.ok);
  EXPECT_EQ(verification.bad_sequence, 1);
  EXPECT_THAT(verification.reason,
              HasSubstr("returns id 3 to \"a\" but no row up to it "
                        "revealed (paid for) that id"));
  EXPECT_EQ(verification.rows_verified, 0);
}

TEST_F(AuditChainFileTest, IdsPaidForByAnotherExperimentAreNotFree) {
  // Row 6 reveals {1} to "b"; id 2 was revealed only to "a".
  ForgeIdsAndRehash(6, "1,2", "1");
  AuditVerification verification = Verify();
  EXPECT_FALSE(verification.ok);
  EXPECT_EQ(verification.bad_sequence, 6);
  EXPECT_THAT(verification.reason, HasSubstr("returns id 2 to \"b\""));
}

TEST_F(AuditChainFileTest, GrantedRowOfRepeatsOnlyVerifies) {
  {
    auto store = SqliteLabelStore::Open(
        SyntheticStoreOptions(dir_.path(), 100, 20, db_path_));
    ASSERT_THAT(store, IsOk());
    // All repeats: granted at no cost though the budget is spent.
    RevealRequest request;
    request.experiment = "a";
    request.ids = {3, 1, 2, 1};
    auto result = (*store)->Reveal(request);
    ASSERT_THAT(result, IsOk());
    ASSERT_TRUE(result->granted);
    EXPECT_TRUE(result->newly_revealed.empty());
  }
  AuditVerification verification = Verify();
  EXPECT_TRUE(verification.ok) << verification.reason;
  EXPECT_EQ(verification.rows_verified, 7);
}

TEST_F(AuditChainFileTest, RowsRecordTheTermsTheyWereDecidedUnder) {
  const std::vector<AuditRecord> rows = ReadRows();
  ASSERT_EQ(rows.size(), 6u);
  EXPECT_EQ(rows[0].detail, "budget=3 spent=2");
  EXPECT_EQ(rows[1].detail, "budget=3 spent=3");
  EXPECT_EQ(rows[2].detail,
            "budget=3 spent=3; requested 1 new labels but only 0 remain");
  EXPECT_EQ(rows[3].detail,
            "evaluations=1 evaluation_cap=2; accuracy=0.250000");
  EXPECT_EQ(rows[4].detail,
            "INVALID_ARGUMENT: id -1 at index 0 is not in [0, 100)");
  EXPECT_EQ(rows[5].detail, "budget=3 spent=1");
}

// The budget lives in the experiments table, outside the chain; the rows
// decided under it record it, so raising it afterwards shows.
TEST_F(AuditChainFileTest, BudgetRaisedInTheTableFails) {
  Tamper("UPDATE experiments SET label_budget = 10 WHERE name = 'a'");
  ExpectFailsAt(1,
                "was decided under a budget of 3 but the experiments "
                "table now gives \"a\" 10");
}

TEST_F(AuditChainFileTest, EvaluationCapRaisedInTheTableFails) {
  Tamper("UPDATE experiments SET evaluation_cap = 9 WHERE name = 'a'");
  ExpectFailsAt(4,
                "was decided under an evaluation cap of 2 but the "
                "experiments table now gives \"a\" 9");
}

TEST_F(AuditChainFileTest, ForgedSpentCountFails) {
  ForgeDetailsAndRehash(
      {{3, "budget=3 spent=2; requested 1 new labels but only 1 remain"}});
  ExpectFailsAt(3,
                "records 2 labels spent by \"a\" but the log up to "
                "it reveals 3");
}

TEST_F(AuditChainFileTest, EvaluationBeyondTheCapItRecordsFails) {
  // Table and row agree on a cap of 0, yet the row evaluated.
  Tamper("UPDATE experiments SET evaluation_cap = 0 WHERE name = 'a'");
  ForgeDetailsAndRehash({{4, "evaluations=1 evaluation_cap=0; accuracy=0.25"}});
  ExpectFailsAt(4, "an evaluation beyond a cap it records");
}

TEST_F(AuditChainFileTest, DenialWithoutAReachedCapFails) {
  const std::string detail =
      "evaluations=0 evaluation_cap=2; evaluation cap of 2 reached";
  ForgeAndRehash(
      [&](std::vector<AuditRecord>& rows) {
        rows[3].outcome = Outcome::kDeniedEvaluationCap;
        rows[3].detail = detail;
      },
      {"UPDATE audit SET outcome = 'DENIED_EVALUATION_CAP', detail = '" +
       detail + "' WHERE seq = 4"});
  ExpectFailsAt(4,
                "denied an evaluation though no cap it records was "
                "reached");
}

// Logs written before rows recorded their terms still verify.
TEST_F(AuditChainFileTest, RowsWithoutTermsVerify) {
  ForgeDetailsAndRehash({{1, ""},
                         {2, ""},
                         {3, "requested 1 new labels but only 0 remain"},
                         {4, "accuracy=0.250000"},
                         {6, ""}});
  AuditVerification verification = Verify();
  EXPECT_TRUE(verification.ok) << verification.reason;
  EXPECT_EQ(verification.rows_verified, 6);
}

TEST(AuditHeadTest, FormatsAndParses) {
  const std::string hash(64, 'a');
  const AuditHead head{12, hash};
  EXPECT_EQ(FormatAuditHead(head), "12 " + hash);
  for (const std::string& text : {"12 " + hash, "12:" + hash}) {
    auto parsed = ParseAuditHead(text);
    ASSERT_THAT(parsed, IsOk()) << text;
    EXPECT_EQ(parsed->sequence, 12);
    EXPECT_EQ(parsed->hash, hash);
  }
  EXPECT_THAT(ParseAuditHead(std::string("0:") + kGenesisHash), IsOk());
}

TEST(AuditHeadTest, RejectsWhatIsNotAHead) {
  const std::string hash(64, 'a');
  const std::vector<std::string> not_heads = {"",
                                              hash,
                                              "12",
                                              "12:" + hash.substr(1),
                                              "-1:" + hash,
                                              "x:" + hash,
                                              "12:" + std::string(64, 'A'),
                                              "12:" + hash + ":1",
                                              "12::" + hash,
                                              "0:" + hash};
  for (const std::string& text : not_heads) {
    EXPECT_THAT(ParseAuditHead(text),
                StatusIs(absl::StatusCode::kInvalidArgument))
        << text;
  }
}

TEST(AuditChainMissingFileTest, MissingDatabaseIsNotFound) {
  TestDir dir;
  EXPECT_THAT(VerifyAuditLogFile(dir.path() + "/absent.db"),
              StatusIs(absl::StatusCode::kNotFound));
}

}  // namespace
}  // namespace oracle_server
