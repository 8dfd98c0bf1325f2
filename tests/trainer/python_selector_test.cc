// GrpcSelectionStrategy against examples/selector_random.py run as a child
// process. Skipped where the configured Python cannot import grpc.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/status_matchers.h"
#include "trainer/select/selection_strategy.h"

extern char** environ;

namespace trainer {
namespace {

using ::common::IsOk;

// Runs argv to completion with stdout and stderr discarded; returns its exit
// status, or -1 if it could not be started.
int RunQuietly(const std::vector<std::string>& argv) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
  std::vector<char*> args;
  for (const std::string& a : argv)
    args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid;
  const int rc =
      posix_spawn(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) return -1;
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// Owns the selector process: started with --port=0 --port_file, polled until
// the port file appears, terminated on teardown.
class PythonSelectorTest : public testing::Test {
 protected:
  void SetUp() override {
    const std::string python = FEWLABELS_SELECTOR_PYTHON;
    if (RunQuietly({python, "-c", "import grpc, google.protobuf"}) != 0) {
      GTEST_SKIP() << python << " cannot import grpc and google.protobuf";
    }
    char dir_template[] = "/tmp/python_selector_test.XXXXXX";
    ASSERT_NE(mkdtemp(dir_template), nullptr);
    dir_ = dir_template;
    const std::string port_file = dir_ + "/port";
    const std::vector<std::string> argv = {
        python, FEWLABELS_SELECTOR_SCRIPT, "--port=0",
        "--port_file=" + port_file,
        std::string("--stubs_dir=") + FEWLABELS_PY_STUBS_DIR};
    std::vector<char*> args;
    for (const std::string& a : argv)
      args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ASSERT_EQ(
        posix_spawn(&pid_, args[0], nullptr, nullptr, args.data(), environ), 0);

    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (port_ == 0) {
      std::ifstream in(port_file);
      if (in >> port_) break;
      int status;
      ASSERT_EQ(waitpid(pid_, &status, WNOHANG), 0)
          << "selector exited before writing " << port_file;
      ASSERT_LT(std::chrono::steady_clock::now(), deadline)
          << "no port file after 30 s";
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }

  void TearDown() override {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      int status;
      waitpid(pid_, &status, 0);
    }
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  std::string target() const { return "127.0.0.1:" + std::to_string(port_); }

  pid_t pid_ = 0;
  int port_ = 0;
  std::string dir_;
};

// 20000 pool ids 0, 3, 6, ... with 64-d embeddings (5 MB, above gRPC's 4 MB
// default) and the first 500 labelled.
PoolState LargePool() {
  PoolState pool;
  const int64_t n = 20000;
  for (int64_t i = 0; i < n; ++i) pool.pool_ids.push_back(3 * i);
  for (int64_t i = 0; i < 500; ++i) pool.labelled_ids.push_back(3 * i);
  pool.embeddings = torch::rand({n, 64});
  pool.probabilities = torch::softmax(torch::rand({n, 10}), 1);
  pool.round = 2;
  pool.seed = 11;
  return pool;
}

TEST_F(PythonSelectorTest, SelectsDistinctUnlabelledIdsReproducibly) {
  absl::StatusOr<std::unique_ptr<SelectionStrategy>> strategy =
      MakeSelectionStrategy("grpc://" + target(), StrategyOptions());
  ASSERT_THAT(strategy, IsOk());
  EXPECT_EQ((*strategy)->name(), "grpc://" + target());

  PoolState pool = LargePool();
  absl::StatusOr<std::vector<int64_t>> ids = (*strategy)->Select(pool, 100);
  ASSERT_THAT(ids, IsOk());  // the client checked distinct, pooled, unlabelled
  ASSERT_EQ(ids->size(), 100u);
  for (int64_t id : *ids) {
    EXPECT_EQ(id % 3, 0);
    EXPECT_GE(id, 1500);
  }
  EXPECT_EQ(*(*strategy)->Select(pool, 100), *ids);
  pool.round = 3;
  EXPECT_NE(*(*strategy)->Select(pool, 100), *ids);
}

TEST_F(PythonSelectorTest, ReturnsTheRestWhenAskedForAll) {
  absl::StatusOr<std::unique_ptr<SelectionStrategy>> strategy =
      MakeSelectionStrategy("grpc://" + target(), StrategyOptions());
  ASSERT_THAT(strategy, IsOk());
  PoolState pool;
  pool.pool_ids = {4, 8, 15, 16, 23, 42};
  pool.labelled_ids = {8, 16, 42};
  pool.embeddings = torch::zeros({6, 2});
  absl::StatusOr<std::vector<int64_t>> ids = (*strategy)->Select(pool, 3);
  ASSERT_THAT(ids, IsOk());
  EXPECT_EQ(std::set<int64_t>(ids->begin(), ids->end()),
            (std::set<int64_t>{4, 15, 23}));
}

}  // namespace
}  // namespace trainer
