#include "trainer/run/purchase_journal.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/status_matchers.h"

namespace trainer {
namespace {

using ::common::IsOk;
using ::common::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string FreshPath(const std::string& name) {
  std::string path =
      (std::filesystem::path(::testing::TempDir()) / name).string();
  std::filesystem::remove(path);
  return path;
}

RunIdentity Identity() {
  RunIdentity identity;
  identity.experiment = "exp-A";
  identity.label_budget = 12;
  identity.schedule = {6, 6};
  identity.pool_size = 300;
  return identity;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

TEST(PurchaseJournalTest, RecordsSurviveReopen) {
  const std::string path = FreshPath("journal_reopen.txt");
  {
    auto journal = PurchaseJournal::Open(path, Identity());
    ASSERT_THAT(journal, IsOk());
    ASSERT_THAT((*journal)->RecordIntent(0, {5, 9}), IsOk());
    ASSERT_THAT((*journal)->RecordPurchase(0, {5, 9}, {3, 1}), IsOk());
    ASSERT_THAT((*journal)->RecordIntent(1, {7}), IsOk());
  }
  auto journal = PurchaseJournal::Open(path, Identity());
  ASSERT_THAT(journal, IsOk());
  const PurchaseHistory& history = (*journal)->history();
  ASSERT_EQ(history.bought.size(), 2u);
  EXPECT_EQ(history.bought[0].id, 5);
  EXPECT_EQ(history.bought[0].label, 3);
  EXPECT_EQ(history.bought[1].id, 9);
  EXPECT_EQ(history.bought[1].label, 1);
  EXPECT_TRUE(history.RoundBought(0));
  EXPECT_FALSE(history.RoundBought(1));
  ASSERT_TRUE(history.pending_intent.has_value());
  EXPECT_EQ(history.pending_intent->first, 1);
  EXPECT_THAT(history.pending_intent->second, ElementsAre(7));
}

TEST(PurchaseJournalTest, FirstRecordWritesTheRunHeader) {
  const std::string path = FreshPath("journal_header.txt");
  {
    auto journal = PurchaseJournal::Open(path, Identity());
    ASSERT_THAT(journal, IsOk());
    // Nothing is written before the first record.
    EXPECT_FALSE((*journal)->history().identity.has_value());
    EXPECT_EQ(ReadFile(path), "");
    ASSERT_THAT((*journal)->RecordIntent(0, {5, 9}), IsOk());
    ASSERT_TRUE((*journal)->history().identity.has_value());
    ASSERT_THAT((*journal)->RecordPurchase(0, {5, 9}, {3, 1}), IsOk());
  }
  EXPECT_EQ(ReadFile(path),
            "run 1 experiment=exp-A;budget=12;schedule=6,6;pool=300\n"
            "intent 0 5,9\n"
            "bought 0 5:3,9:1\n");
  // Reopened by another run: the header stays as it was.
  RunIdentity other = Identity();
  other.experiment = "exp-B";
  auto journal = PurchaseJournal::Open(path, other);
  ASSERT_THAT(journal, IsOk());
  ASSERT_THAT((*journal)->RecordIntent(1, {7}), IsOk());
  const std::optional<RunIdentity>& identity = (*journal)->history().identity;
  ASSERT_TRUE(identity.has_value());
  EXPECT_EQ(identity->experiment, "exp-A");
  EXPECT_EQ(identity->label_budget, 12);
  EXPECT_THAT(identity->schedule, ElementsAre(6, 6));
  EXPECT_EQ(identity->pool_size, 300);
  EXPECT_EQ(ReadFile(path).rfind("run ", 0), 0u);
  EXPECT_EQ(ReadFile(path).find("run ", 1), std::string::npos);
}

TEST(PurchaseJournalTest, JournalWithoutHeaderParsesAndGetsNone) {
  const std::string path = FreshPath("journal_old.txt");
  { std::ofstream(path) << "bought 0 1:2\nintent 1 5,6\n"; }
  auto journal = PurchaseJournal::Open(path, Identity());
  ASSERT_THAT(journal, IsOk());
  EXPECT_FALSE((*journal)->history().identity.has_value());
  EXPECT_EQ((*journal)->history().bought.size(), 1u);
  ASSERT_THAT((*journal)->RecordPurchase(1, {5, 6}, {0, 0}), IsOk());
  EXPECT_EQ(ReadFile(path), "bought 0 1:2\nintent 1 5,6\nbought 1 5:0,6:0\n");
}

TEST(PurchaseJournalTest, MatchRunIdentityNamesTheFlagThatDiffers) {
  EXPECT_THAT(MatchRunIdentity(Identity(), Identity()), IsOk());
  RunIdentity run = Identity();
  run.experiment = "exp-B";
  EXPECT_THAT(MatchRunIdentity(Identity(), run),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       "the journal was written by a run with "
                       "--experiment=exp-A, not exp-B"));
  run = Identity();
  run.label_budget = 20;
  EXPECT_THAT(MatchRunIdentity(Identity(), run),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("--budget=12, not 20")));
  run = Identity();
  run.schedule = {4, 8};
  EXPECT_THAT(MatchRunIdentity(Identity(), run),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("--schedule=6,6, not 4,8")));
  run = Identity();
  run.pool_size = 200;
  EXPECT_THAT(MatchRunIdentity(Identity(), run),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("--train_limit=a pool of 300 images, not "
                                 "200")));
}

TEST(PurchaseJournalTest, MalformedHeaderIsDataLoss) {
  EXPECT_THAT(ParsePurchaseJournal("run 2 experiment=a;budget=1;schedule=1;"
                                   "pool=9\n"),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("line 1")));
  EXPECT_THAT(ParsePurchaseJournal("run 1 experiment=a;budget=x;schedule=1;"
                                   "pool=9\n"),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("bad run field budget='x'")));
  EXPECT_THAT(ParsePurchaseJournal("run 1 experiment=a;budget=1;pool=9\n"),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("needs experiment, budget, schedule and "
                                 "pool")));
  EXPECT_THAT(ParsePurchaseJournal("bought 0 1:1\n"
                                   "run 1 experiment=a;budget=1;schedule=1;"
                                   "pool=9\n"),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("line 2: the run header must be the first")));
}

TEST(PurchaseJournalTest, RefusesAnExperimentNameTheHeaderCannotHold) {
  RunIdentity identity = Identity();
  identity.experiment = "two words";
  EXPECT_THAT(PurchaseJournal::Open(FreshPath("journal_bad_name.txt"),
                                    identity),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("\"two words\"")));
}

TEST(PurchaseJournalTest, TornLastLineIsIgnored) {
  auto history = ParsePurchaseJournal("bought 0 1:2,3:4\nintent 1 5,6");
  ASSERT_THAT(history, IsOk());
  EXPECT_EQ(history->bought.size(), 2u);
  EXPECT_FALSE(history->pending_intent.has_value());
}

TEST(PurchaseJournalTest, AppendAfterTornLineStartsANewLine) {
  const std::string path = FreshPath("journal_torn.txt");
  { std::ofstream(path) << "bought 0 1:2\nintent 1 5,"; }
  auto journal = PurchaseJournal::Open(path, Identity());
  ASSERT_THAT(journal, IsOk());
  ASSERT_THAT((*journal)->RecordPurchase(1, {8}, {0}), IsOk());
  journal->reset();
  auto reopened = PurchaseJournal::Open(path, Identity());
  ASSERT_THAT(reopened, IsOk());
  EXPECT_EQ((*reopened)->history().bought.size(), 2u);
  EXPECT_EQ((*reopened)->history().bought_per_round.at(1), 1);
}

TEST(PurchaseJournalTest, MalformedRecordIsDataLoss) {
  EXPECT_THAT(ParsePurchaseJournal("bought 0 1:x\n"),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("line 1")));
  EXPECT_THAT(ParsePurchaseJournal("bought 0 1:1\nsold 0 1\n"),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("line 2")));
}

TEST(PurchaseJournalTest, PurchaseNeedsOneLabelPerId) {
  const std::string path = FreshPath("journal_mismatch.txt");
  auto journal = PurchaseJournal::Open(path, Identity());
  ASSERT_THAT(journal, IsOk());
  EXPECT_THAT((*journal)->RecordPurchase(0, {1, 2}, {3}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_TRUE((*journal)->history().bought.empty());
}

}  // namespace
}  // namespace trainer
