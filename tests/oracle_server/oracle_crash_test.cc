// Crash test of the real oracle_server binary: SIGKILL it while clients are
// querying, restart it on the same database, and check that nothing a client
// was told is missing from the audit log, that the budget matches the log,
// and that `oraclectl verify` accepts the hash chain.
//
// Needs $FEWLABELS_BUILD_DIR/oracle_server/{oracle_server,oraclectl}.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/idx_file.h"
#include "proto/oracle.grpc.pb.h"
#include "tests/oracle_server/postgres_test_cluster.h"

namespace {

using ::testing::ElementsAreArray;
using ::testing::StartsWith;

constexpr int kExperiments = 3;
constexpr int kThreadsPerExperiment = 2;
constexpr int64_t kBudget = 150;
// Ids are drawn from [0, kIdPool): twice the budget, so calls mix new
// ids, free repeats and, once the budget is spent, RESOURCE_EXHAUSTED denials.
constexpr int64_t kIdPool = 2 * kBudget;
constexpr int kMaxBatch = 8;
// The server is killed once clients have received this many granted replies.
constexpr int kKillAfterGranted = 300;
constexpr absl::Duration kCallDeadline = absl::Seconds(5);
constexpr absl::Duration kStartupDeadline = absl::Seconds(30);
constexpr absl::Duration kLoadDeadline = absl::Seconds(60);

// The synthetic ground truth the server is started with.
int TrueTrainLabel(int64_t id) {
  return static_cast<int>((id * 7 + id / 13) % 10);
}
int TrueTestLabel(int64_t id) { return static_cast<int>((id * 3) % 10); }

// Writes an uncompressed 1-d IDX label file: magic 0x00000801, the count
// (both big-endian), one byte per label.
void WriteLabelFile(const std::string& path, int64_t count,
                    int (*label_of)(int64_t)) {
  std::ofstream out(path, std::ios::binary);
  for (uint32_t word : {0x00000801u, static_cast<uint32_t>(count)}) {
    for (int shift = 24; shift >= 0; shift -= 8) {
      out.put(static_cast<char>((word >> shift) & 0xff));
    }
  }
  for (int64_t i = 0; i < count; ++i) out.put(static_cast<char>(label_of(i)));
  ASSERT_TRUE(out.good()) << path;
}

// $FEWLABELS_BUILD_DIR, else the build dir this test binary lives in
// (<build>/tests/oracle_server/oracle_crash_test).
std::string BuildDir() {
  if (const char* dir = std::getenv("FEWLABELS_BUILD_DIR"); dir != nullptr) {
    return dir;
  }
  std::error_code error;
  const std::filesystem::path self =
      std::filesystem::read_symlink("/proc/self/exe", error);
  if (error) return "build";
  return self.parent_path().parent_path().parent_path().string();
}

// Starts `args` (args[0] is the program's path) with stdout and stderr going
// to `output_path`. Returns the pid, or INTERNAL if it cannot be started.
absl::StatusOr<pid_t> Spawn(std::vector<std::string> args,
                            const std::string& output_path) {
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, output_path.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  pid_t pid = -1;
  const int err =
      posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (err != 0) {
    return absl::InternalError(
        absl::StrCat("cannot start ", args[0], ": ", std::strerror(err)));
  }
  return pid;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Runs `args` to completion. Returns its output (stdout and stderr) and wait
// status; the status is -1 if it could not be started.
std::pair<std::string, int> RunCommand(const std::vector<std::string>& args,
                                       const std::string& output_path) {
  absl::StatusOr<pid_t> pid = Spawn(args, output_path);
  if (!pid.ok()) return {pid.status().ToString(), -1};
  int wstatus = 0;
  waitpid(*pid, &wstatus, 0);
  return {ReadFile(output_path), wstatus};
}

// An oracle_server subprocess listening on 127.0.0.1 at a port the OS chose.
// The destructor SIGKILLs it if it is still running.
class OracleProcess {
 public:
  struct Options {
    std::string binary;        // oracle_server
    std::string store;         // --store
    std::string train_labels;  // --train_labels
    std::string test_labels;   // --test_labels
    std::string work_dir;      // receives <tag>.port and <tag>.log
    std::string tag;           // distinguishes the files of each start
  };

  // Starts the server and waits for its port file. Returns UNAVAILABLE if it
  // exits or writes no port within the deadline, INTERNAL if it cannot start.
  static absl::StatusOr<std::unique_ptr<OracleProcess>> Start(
      const Options& options) {
    auto process = std::unique_ptr<OracleProcess>(new OracleProcess());
    const std::string port_file =
        options.work_dir + "/" + options.tag + ".port";
    process->log_path_ = options.work_dir + "/" + options.tag + ".log";
    const std::vector<std::string> args = {
        options.binary,
        "--host=127.0.0.1",
        "--port=0",
        "--port_file=" + port_file,
        "--store=" + options.store,
        "--train_labels=" + options.train_labels,
        "--test_labels=" + options.test_labels,
        "--default_budget=1000",
        absl::StrCat("--max_batch=", kMaxBatch),
        "--eval_cap=3",
    };
    absl::StatusOr<pid_t> pid = Spawn(args, process->log_path_);
    if (!pid.ok()) return pid.status();
    process->pid_ = *pid;
    const absl::Time deadline = absl::Now() + kStartupDeadline;
    while (absl::Now() < deadline) {
      int wstatus = 0;
      if (waitpid(process->pid_, &wstatus, WNOHANG) == process->pid_) {
        process->pid_ = -1;
        return absl::UnavailableError(
            absl::StrCat("oracle_server exited at startup, wait status ",
                         wstatus, ", log:\n", process->Log()));
      }
      std::ifstream in(port_file);
      std::string line;
      int port = 0;
      if (std::getline(in, line) &&
          absl::SimpleAtoi(absl::StripAsciiWhitespace(line), &port) &&
          port > 0) {
        process->address_ = absl::StrCat("127.0.0.1:", port);
        return process;
      }
      absl::SleepFor(absl::Milliseconds(10));
    }
    return absl::UnavailableError("oracle_server wrote no port file");
  }

  ~OracleProcess() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }

  // SIGKILLs the server and reaps it.
  void Kill() {
    ASSERT_GT(pid_, 0);
    ASSERT_EQ(kill(pid_, SIGKILL), 0) << std::strerror(errno);
    int wstatus = 0;
    ASSERT_EQ(waitpid(pid_, &wstatus, 0), pid_);
    pid_ = -1;
    EXPECT_TRUE(WIFSIGNALED(wstatus) && WTERMSIG(wstatus) == SIGKILL);
  }

  // Sends SIGTERM and returns the wait status of the exit.
  int Terminate() {
    if (pid_ <= 0) return -1;
    kill(pid_, SIGTERM);
    int wstatus = 0;
    waitpid(pid_, &wstatus, 0);
    pid_ = -1;
    return wstatus;
  }

  std::string Log() const { return ReadFile(log_path_); }

  const std::string& address() const { return address_; }

 private:
  OracleProcess() = default;

  pid_t pid_ = -1;
  std::string address_;
  std::string log_path_;
};

std::string ExperimentName(int index) { return absl::StrCat("crash-e", index); }

std::unique_ptr<oracle::v1::LabelOracle::Stub> NewStub(
    const std::string& address) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return oracle::v1::LabelOracle::NewStub(grpc::CreateCustomChannel(
      address, grpc::InsecureChannelCredentials(), args));
}

void SetDeadline(grpc::ClientContext& context) {
  context.set_deadline(absl::ToChronoTime(absl::Now() + kCallDeadline));
}

// A granted reply as the client received it.
struct ReceivedReply {
  int experiment = 0;
  int64_t audit_sequence = 0;
  std::vector<int64_t> ids;
  std::vector<int32_t> labels;
};

// What one load thread saw.
struct LoadResult {
  std::vector<ReceivedReply> granted;
  int64_t denied_budget = 0;
  // Failures seen before the kill (none expected), as "code: message".
  std::vector<std::string> unexpected;
};

struct LoadShared {
  std::atomic<int> granted{0};
  std::atomic<bool> killing{false};
  absl::Notification enough;  // kKillAfterGranted replies were received
};

// Queries random batches for `experiment` until a call fails with anything
// but RESOURCE_EXHAUSTED (expected once the server is killed).
void RunLoad(const std::string& address, int experiment, uint32_t seed,
             LoadShared& shared, LoadResult& result) {
  auto stub = NewStub(address);
  std::mt19937 random(seed);
  std::uniform_int_distribution<int> batch_size(1, kMaxBatch);
  std::uniform_int_distribution<int64_t> id_of(0, kIdPool - 1);
  const absl::Time give_up = absl::Now() + kLoadDeadline;
  while (absl::Now() < give_up) {
    oracle::v1::QueryLabelsRequest request;
    request.set_experiment(ExperimentName(experiment));
    request.set_client(absl::StrCat("crash_test/", seed));
    request.set_strategy("random");
    std::set<int64_t> ids;
    const int want = batch_size(random);
    while (static_cast<int>(ids.size()) < want) ids.insert(id_of(random));
    for (int64_t id : ids) request.add_ids(id);

    grpc::ClientContext context;
    SetDeadline(context);
    oracle::v1::QueryLabelsResponse response;
    const grpc::Status status = stub->QueryLabels(&context, request, &response);
    if (status.ok()) {
      result.granted.push_back(
          {experiment,
           response.audit_sequence(),
           {request.ids().begin(), request.ids().end()},
           {response.labels().begin(), response.labels().end()}});
      if (shared.granted.fetch_add(1) + 1 == kKillAfterGranted) {
        shared.enough.Notify();
      }
      continue;
    }
    if (status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
      ++result.denied_budget;
      continue;
    }
    if (!shared.killing.load()) {
      result.unexpected.push_back(
          absl::StrCat(status.error_code(), ": ", status.error_message()));
    }
    return;
  }
  result.unexpected.push_back("load thread ran past its deadline");
}

// All audit rows of `experiment` ("" for all), in sequence order.
std::vector<oracle::v1::AuditRow> ListAll(oracle::v1::LabelOracle::Stub& stub,
                                          const std::string& experiment) {
  std::vector<oracle::v1::AuditRow> rows;
  int64_t after = 0;
  for (int page = 0; page < 1000; ++page) {
    grpc::ClientContext context;
    SetDeadline(context);
    oracle::v1::ListQueriesRequest request;
    request.set_experiment(experiment);
    request.set_after_sequence(after);
    request.set_page_size(500);
    oracle::v1::ListQueriesResponse response;
    const grpc::Status status = stub.ListQueries(&context, request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    if (!status.ok()) break;
    rows.insert(rows.end(), response.rows().begin(), response.rows().end());
    if (response.next_after_sequence() == 0) break;
    after = response.next_after_sequence();
  }
  return rows;
}

// The same crash test on each store: SQLite, and PostgreSQL on a throw-away
// cluster the test starts (the database server keeps running; the oracle
// process is killed).
enum class StoreKind { kSqlite, kPostgres };

// For test names and ctest: "sqlite" or "postgres", not the enum's bytes.
void PrintTo(StoreKind kind, std::ostream* out) {
  *out << (kind == StoreKind::kSqlite ? "sqlite" : "postgres");
}

class OracleCrashTest : public testing::TestWithParam<StoreKind> {
 protected:
  void SetUp() override {
    char dir_template[] = "/tmp/oracle_crash_test.XXXXXX";
    ASSERT_NE(mkdtemp(dir_template), nullptr) << std::strerror(errno);
    dir_ = dir_template;
    options_.binary = BuildDir() + "/oracle_server/oracle_server";
    if (GetParam() == StoreKind::kSqlite) {
      options_.store = "sqlite:" + dir_ + "/oracle.db";
    } else {
      std::string why;
      auto* cluster = oracle_server::testdata::PostgresTestCluster::Get(&why);
      if (cluster == nullptr) {
        if (absl::StartsWith(why, "PostgreSQL is not installed")) {
          GTEST_SKIP() << why;
        }
        FAIL() << why;
      }
      absl::StatusOr<std::string> conninfo = cluster->CreateDatabase();
      ASSERT_TRUE(conninfo.ok()) << conninfo.status();
      options_.store = "postgres:" + *conninfo;
    }
    options_.train_labels = dir_ + "/train-labels-idx1-ubyte";
    options_.test_labels = dir_ + "/t10k-labels-idx1-ubyte";
    options_.work_dir = dir_;
    ASSERT_TRUE(std::filesystem::exists(options_.binary)) << options_.binary;
    WriteLabelFile(options_.train_labels, common::kTrainCount, TrueTrainLabel);
    WriteLabelFile(options_.test_labels, common::kTestCount, TrueTestLabel);
  }

  void TearDown() override {
    server_.reset();
    if (HasFailure()) {
      std::cerr << "kept the database and server logs in " << dir_ << "\n";
    } else {
      std::filesystem::remove_all(dir_);
    }
  }

  // Starts (or restarts) the server on the same database.
  void StartServer(const std::string& tag) {
    options_.tag = tag;
    absl::StatusOr<std::unique_ptr<OracleProcess>> started =
        OracleProcess::Start(options_);
    ASSERT_TRUE(started.ok()) << started.status();
    server_ = *std::move(started);
  }

  std::string dir_;
  OracleProcess::Options options_;
  std::unique_ptr<OracleProcess> server_;
};

TEST_P(OracleCrashTest, EveryReceivedLabelIsAuditedAfterKillMidLoad) {
  ASSERT_NO_FATAL_FAILURE(StartServer("first"));
  {
    auto stub = NewStub(server_->address());
    for (int e = 0; e < kExperiments; ++e) {
      grpc::ClientContext context;
      SetDeadline(context);
      oracle::v1::CreateExperimentRequest request;
      request.set_name(ExperimentName(e));
      request.set_label_budget(kBudget);
      oracle::v1::Experiment experiment;
      const grpc::Status status =
          stub->CreateExperiment(&context, request, &experiment);
      ASSERT_TRUE(status.ok()) << status.error_message();
      EXPECT_TRUE(experiment.created());
      EXPECT_EQ(experiment.label_budget(), kBudget);
    }
  }

  LoadShared shared;
  std::vector<LoadResult> results(kExperiments * kThreadsPerExperiment);
  std::vector<std::thread> threads;
  for (int t = 0; t < static_cast<int>(results.size()); ++t) {
    threads.emplace_back(RunLoad, server_->address(), t % kExperiments,
                         static_cast<uint32_t>(1000 + t), std::ref(shared),
                         std::ref(results[t]));
  }
  const bool enough =
      shared.enough.WaitForNotificationWithTimeout(kLoadDeadline);
  shared.killing.store(true);
  server_->Kill();
  for (std::thread& thread : threads) thread.join();
  ASSERT_TRUE(enough) << "only " << shared.granted.load()
                      << " granted replies before the deadline; log:\n"
                      << server_->Log();

  std::vector<ReceivedReply> received;
  int64_t denied_budget = 0;
  for (const LoadResult& result : results) {
    EXPECT_THAT(result.unexpected, testing::IsEmpty());
    received.insert(received.end(), result.granted.begin(),
                    result.granted.end());
    denied_budget += result.denied_budget;
  }
  ASSERT_GE(static_cast<int>(received.size()), kKillAfterGranted);
  // The load must have spent the budgets, so denials were exercised too.
  EXPECT_GT(denied_budget, 0);

  std::cout << "killed after " << received.size() << " granted replies and "
            << denied_budget << " budget denials" << std::endl;

  ASSERT_NO_FATAL_FAILURE(StartServer("restarted"));
  auto stub = NewStub(server_->address());

  // The log as a whole: contiguous sequences and an unbroken hash chain.
  const std::vector<oracle::v1::AuditRow> all_rows = ListAll(*stub, "");
  ASSERT_GE(all_rows.size(), received.size());
  for (size_t i = 1; i < all_rows.size(); ++i) {
    EXPECT_EQ(all_rows[i].sequence(), all_rows[i - 1].sequence() + 1);
    EXPECT_EQ(all_rows[i].prev_hash(), all_rows[i - 1].hash())
        << "at sequence " << all_rows[i].sequence();
  }

  for (int e = 0; e < kExperiments; ++e) {
    SCOPED_TRACE(ExperimentName(e));
    const std::vector<oracle::v1::AuditRow> rows =
        ListAll(*stub, ExperimentName(e));
    // For each id, the sequence of the row that revealed it.
    std::map<int64_t, int64_t> revealed_at;
    std::map<int64_t, const oracle::v1::AuditRow*> by_sequence;
    int64_t granted_rows = 0;
    int64_t denied_rows = 0;
    for (const oracle::v1::AuditRow& row : rows) {
      EXPECT_EQ(row.experiment(), ExperimentName(e));
      by_sequence[row.sequence()] = &row;
      if (row.outcome() == oracle::v1::GRANTED) ++granted_rows;
      if (row.outcome() == oracle::v1::DENIED_BUDGET) {
        ++denied_rows;
        EXPECT_EQ(row.ids_revealed_size(), 0);
      }
      for (int64_t id : row.ids_revealed()) {
        EXPECT_TRUE(revealed_at.emplace(id, row.sequence()).second)
            << "id " << id << " revealed twice";
      }
    }

    grpc::ClientContext context;
    SetDeadline(context);
    oracle::v1::GetBudgetRequest request;
    request.set_experiment(ExperimentName(e));
    oracle::v1::BudgetStatus budget;
    const grpc::Status status = stub->GetBudget(&context, request, &budget);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(budget.label_budget(), kBudget);
    EXPECT_EQ(budget.spent(), static_cast<int64_t>(revealed_at.size()));
    EXPECT_EQ(budget.remaining(), kBudget - budget.spent());
    EXPECT_EQ(budget.requests_granted(), granted_rows);
    EXPECT_EQ(budget.requests_denied(), denied_rows);

    int64_t replies = 0;
    for (const ReceivedReply& reply : received) {
      if (reply.experiment != e) continue;
      ++replies;
      const auto row = by_sequence.find(reply.audit_sequence);
      ASSERT_TRUE(row != by_sequence.end())
          << "reply with audit_sequence " << reply.audit_sequence
          << " has no audit row";
      EXPECT_EQ(row->second->outcome(), oracle::v1::GRANTED);
      EXPECT_THAT(row->second->ids_asked(), ElementsAreArray(reply.ids));
      ASSERT_EQ(reply.labels.size(), reply.ids.size());
      for (size_t i = 0; i < reply.ids.size(); ++i) {
        const int64_t id = reply.ids[i];
        EXPECT_EQ(reply.labels[i], TrueTrainLabel(id)) << "id " << id;
        const auto revealed = revealed_at.find(id);
        ASSERT_TRUE(revealed != revealed_at.end())
            << "id " << id << " was received but never revealed in the log";
        EXPECT_LE(revealed->second, reply.audit_sequence) << "id " << id;
      }
    }
    EXPECT_GE(granted_rows, replies);
  }

  stub.reset();  // An idle open connection slows the server's shutdown.
  const int terminated = server_->Terminate();
  EXPECT_TRUE(WIFEXITED(terminated) && WEXITSTATUS(terminated) == 0)
      << "wait status " << terminated << "; log:\n"
      << server_->Log();

  const auto [output, wstatus] =
      RunCommand({BuildDir() + "/oracle_server/oraclectl", "verify",
                  "--store=" + options_.store},
                 dir_ + "/verify.out");
  EXPECT_TRUE(WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0)
      << "wait status " << wstatus << ", output:\n"
      << output;
  EXPECT_THAT(output, StartsWith(absl::StrCat("OK: ", all_rows.size(),
                                              " rows verified")));
}

// Two oracle_server processes on one PostgreSQL database, as behind a load
// balancer: concurrent calls to both never overspend a shared budget, every
// revealed id is in exactly one audit row, both report the same budget, and
// `oraclectl verify` accepts the log.
TEST(OracleTwoServersTest, ShareOneBudgetOnOnePostgresDatabase) {
  std::string why;
  auto* cluster = oracle_server::testdata::PostgresTestCluster::Get(&why);
  if (cluster == nullptr) {
    if (absl::StartsWith(why, "PostgreSQL is not installed")) {
      GTEST_SKIP() << why;
    }
    FAIL() << why;
  }
  absl::StatusOr<std::string> conninfo = cluster->CreateDatabase();
  ASSERT_TRUE(conninfo.ok()) << conninfo.status();
  char dir_template[] = "/tmp/oracle_two_servers.XXXXXX";
  ASSERT_NE(mkdtemp(dir_template), nullptr) << std::strerror(errno);
  const std::string dir = dir_template;
  OracleProcess::Options options;
  options.binary = BuildDir() + "/oracle_server/oracle_server";
  options.store = "postgres:" + *conninfo;
  options.train_labels = dir + "/train-labels-idx1-ubyte";
  options.test_labels = dir + "/t10k-labels-idx1-ubyte";
  options.work_dir = dir;
  WriteLabelFile(options.train_labels, common::kTrainCount, TrueTrainLabel);
  WriteLabelFile(options.test_labels, common::kTestCount, TrueTestLabel);
  std::vector<std::unique_ptr<OracleProcess>> servers;
  for (const char* tag : {"a", "b"}) {
    options.tag = tag;
    auto started = OracleProcess::Start(options);
    ASSERT_TRUE(started.ok()) << started.status();
    servers.push_back(*std::move(started));
  }

  constexpr int64_t kSharedBudget = 60;
  {
    auto stub = NewStub(servers[0]->address());
    grpc::ClientContext context;
    SetDeadline(context);
    oracle::v1::CreateExperimentRequest request;
    request.set_name("shared");
    request.set_label_budget(kSharedBudget);
    oracle::v1::Experiment experiment;
    const grpc::Status status =
        stub->CreateExperiment(&context, request, &experiment);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }

  constexpr int kThreads = 8;
  constexpr int kCallsPerThread = 25;
  std::atomic<int64_t> granted_new{0};
  std::atomic<int> failures{0};
  std::atomic<int> denied{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const std::unique_ptr<oracle::v1::LabelOracle::Stub> both[] = {
          NewStub(servers[0]->address()), NewStub(servers[1]->address())};
      for (int i = 0; i < kCallsPerThread; ++i) {
        oracle::v1::QueryLabelsRequest request;
        request.set_experiment("shared");
        request.set_client(absl::StrCat("two_servers/", t));
        const int64_t first = (t * 41 + i * 13) % 190;
        const int count = i % 3 == 0 ? 5 : 1;
        for (int k = 0; k < count; ++k) request.add_ids(first + k);
        grpc::ClientContext context;
        SetDeadline(context);
        oracle::v1::QueryLabelsResponse response;
        const grpc::Status status =
            both[(t + i) % 2]->QueryLabels(&context, request, &response);
        if (status.ok()) {
          granted_new += response.newly_revealed();
        } else if (status.error_code() ==
                   grpc::StatusCode::RESOURCE_EXHAUSTED) {
          ++denied;
        } else {
          ++failures;
          ADD_FAILURE() << status.error_code() << ": "
                        << status.error_message();
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(failures, 0);
  EXPECT_GT(denied, 0);  // the budget ran out while both were serving
  EXPECT_LE(granted_new, kSharedBudget);

  std::map<int64_t, int> times_revealed;
  for (const auto& server : servers) {
    auto stub = NewStub(server->address());
    const std::vector<oracle::v1::AuditRow> rows = ListAll(*stub, "shared");
    EXPECT_EQ(static_cast<int>(rows.size()), kThreads * kCallsPerThread);
    times_revealed.clear();
    for (const oracle::v1::AuditRow& row : rows) {
      for (int64_t id : row.ids_revealed()) ++times_revealed[id];
    }
    for (const auto& [id, times] : times_revealed) {
      EXPECT_EQ(times, 1) << "id " << id;
    }
    grpc::ClientContext context;
    SetDeadline(context);
    oracle::v1::GetBudgetRequest request;
    request.set_experiment("shared");
    oracle::v1::BudgetStatus budget;
    const grpc::Status status = stub->GetBudget(&context, request, &budget);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(budget.spent(), static_cast<int64_t>(times_revealed.size()));
    EXPECT_EQ(budget.spent(), granted_new.load());
    EXPECT_LE(budget.spent(), kSharedBudget);
  }
  for (auto& server : servers) {
    const int terminated = server->Terminate();
    EXPECT_TRUE(WIFEXITED(terminated) && WEXITSTATUS(terminated) == 0)
        << "wait status " << terminated << "; log:\n"
        << server->Log();
  }
  const auto [output, wstatus] =
      RunCommand({BuildDir() + "/oracle_server/oraclectl", "verify",
                  "--store=" + options.store},
                 dir + "/verify.out");
  EXPECT_TRUE(WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0) << output;
  EXPECT_THAT(output, StartsWith(absl::StrCat(
                          "OK: ", kThreads * kCallsPerThread, " rows verified")));
  if (!HasFailure()) std::filesystem::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(
    Stores, OracleCrashTest,
    testing::Values(StoreKind::kSqlite, StoreKind::kPostgres),
    [](const testing::TestParamInfo<StoreKind>& info) {
      return info.param == StoreKind::kSqlite ? "Sqlite" : "Postgres";
    });

}  // namespace
