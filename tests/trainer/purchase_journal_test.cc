#include "trainer/run/purchase_journal.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

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

TEST(PurchaseJournalTest, RecordsSurviveReopen) {
  const std::string path = FreshPath("journal_reopen.txt");
  {
    auto journal = PurchaseJournal::Open(path);
    ASSERT_THAT(journal, IsOk());
    ASSERT_THAT((*journal)->RecordIntent(0, {5, 9}), IsOk());
    ASSERT_THAT((*journal)->RecordPurchase(0, {5, 9}, {3, 1}), IsOk());
    ASSERT_THAT((*journal)->RecordIntent(1, {7}), IsOk());
  }
  auto journal = PurchaseJournal::Open(path);
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

TEST(PurchaseJournalTest, TornLastLineIsIgnored) {
  auto history = ParsePurchaseJournal("bought 0 1:2,3:4\nintent 1 5,6");
  ASSERT_THAT(history, IsOk());
  EXPECT_EQ(history->bought.size(), 2u);
  EXPECT_FALSE(history->pending_intent.has_value());
}

TEST(PurchaseJournalTest, AppendAfterTornLineStartsANewLine) {
  const std::string path = FreshPath("journal_torn.txt");
  { std::ofstream(path) << "bought 0 1:2\nintent 1 5,"; }
  auto journal = PurchaseJournal::Open(path);
  ASSERT_THAT(journal, IsOk());
  ASSERT_THAT((*journal)->RecordPurchase(1, {8}, {0}), IsOk());
  journal->reset();
  auto reopened = PurchaseJournal::Open(path);
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
  auto journal = PurchaseJournal::Open(path);
  ASSERT_THAT(journal, IsOk());
  EXPECT_THAT((*journal)->RecordPurchase(0, {1, 2}, {3}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_TRUE((*journal)->history().bought.empty());
}

}  // namespace
}  // namespace trainer
