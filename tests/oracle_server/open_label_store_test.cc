#include "oracle_server/open_label_store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/status_matchers.h"
#include "tests/oracle_server/oracle_test_data.h"

namespace oracle_server {
namespace {

using ::common::IsOk;
using ::common::StatusIs;
using ::testing::HasSubstr;

TEST(OpenLabelStoreTest, OpensSqliteAndRefusesOtherSpecs) {
  testdata::TestDir dir;
  const StoreOptions synthetic =
      testdata::SyntheticStoreOptions(dir.path(), 100, 20);
  OpenStoreOptions options;
  options.store = SqliteStoreSpec(dir.path() + "/oracle.db");
  options.train_labels_path = synthetic.train_labels_path;
  options.test_labels_path = synthetic.test_labels_path;
  options.train_count = 100;
  options.test_count = 20;
  auto store = OpenLabelStore(options);
  ASSERT_THAT(store, IsOk());
  EXPECT_EQ((*store)->LoadLabels(Split::kTrain)->size(), 100u);
  store->reset();

  OpenStoreOptions read_only;
  read_only.store = options.store;
  read_only.read_only = true;
  EXPECT_THAT(OpenLabelStore(read_only), IsOk());

  OpenStoreOptions bad = options;
  bad.store = "mysql:oracle";
  EXPECT_THAT(OpenLabelStore(bad),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("neither sqlite:PATH nor postgres:CONNINFO")));
  bad.store = "sqlite:";
  EXPECT_THAT(OpenLabelStore(bad),
              StatusIs(absl::StatusCode::kInvalidArgument));
  bad.store = "postgres:";
  EXPECT_THAT(OpenLabelStore(bad),
              StatusIs(absl::StatusCode::kInvalidArgument));
  bad = options;
  bad.labels_table = "train";
  bad.test_labels_table = "test";
  EXPECT_THAT(OpenLabelStore(bad), StatusIs(absl::StatusCode::kInvalidArgument,
                                            HasSubstr("postgres")));
}

TEST(OpenLabelStoreTest, UnreachablePostgresIsUnavailable) {
  testdata::TestDir dir;
  OpenStoreOptions options;
  options.store = "postgres:host=" + dir.path() + " dbname=oracle";
  EXPECT_THAT(OpenLabelStore(options), StatusIs(absl::StatusCode::kUnavailable,
                                                HasSubstr("cannot connect")));
}

}  // namespace
}  // namespace oracle_server
