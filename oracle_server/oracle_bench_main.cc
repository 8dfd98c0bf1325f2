// oracle_bench: a closed-loop load generator for the label oracle. Each of
// --clients clients owns one gRPC channel (its own connection) and issues
// QueryLabels calls of --batch ids back to back for --seconds, then the
// program prints calls/s, labels/s and latency percentiles. With
// --client_api=sync (the default, and how the earlier rows in
// docs/BENCHMARKS.md were measured) each client is a thread making blocking
// calls; with --client_api=callback a client is a chain of gRPC callback-API
// calls, each started from the previous one's callback on gRPC's own threads,
// which costs the machine (shared with a local server) less CPU per call.
//
// Repeated ids are free and cheaper for the server, so to measure reveal
// throughput every client walks ids it has not revealed yet:
//  * --experiments: client i has its own experiments "<prefix>-c<i>-g<gen>"
//    with a budget of 60000 and walks 0, 1, 2, ...; once it has revealed all
//    60000 ids it creates the next generation and starts over (rollovers are
//    reported; their CreateExperiment calls are not counted as queries).
//  * otherwise all clients share one experiment "<prefix>-shared" (budget
//    60000) and client i walks its own slice of the ids; once a slice is done
//    the client walks it again and those calls are repeats (reported).
//
// With --server empty the program starts its own oracle_server subprocess
// (--oracle_binary) on a fresh database in a temp dir, and stops it with
// SIGTERM at the end.
#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/blocking_counter.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/grpc_status.h"
#include "common/idx_file.h"
#include "common/status_macros.h"
#include "proto/oracle.grpc.pb.h"

ABSL_FLAG(std::string, server, "",
          "host:port of a running oracle; empty: start one (--oracle_binary)");
ABSL_FLAG(std::string, oracle_binary, "",
          "oracle_server binary to start when --server is empty; empty: the "
          "oracle_server beside this program");
ABSL_FLAG(std::string, db, "",
          "database of the started server; empty: a fresh one in a temp dir "
          "that is removed at exit");
ABSL_FLAG(std::string, store, "",
          "--store of the started server (sqlite:PATH or postgres:CONNINFO); "
          "overrides --db");
ABSL_FLAG(std::string, train_labels,
          absl::StrCat(common::kDefaultDatasetDir, "/",
                       common::kTrainLabelsFile),
          "train labels of the started server");
ABSL_FLAG(std::string, test_labels,
          absl::StrCat(common::kDefaultDatasetDir, "/",
                       common::kTestLabelsFile),
          "test labels of the started server");
ABSL_FLAG(int, max_batch, 1000, "--max_batch of the started server");
ABSL_FLAG(std::vector<std::string>, server_args, {},
          "comma-separated extra flags for the started server, e.g. "
          "--server_args=--eval_cap=1000");
ABSL_FLAG(int, clients, 32, "concurrent clients, one channel each");
ABSL_FLAG(int, seconds, 10, "how long to send calls");
ABSL_FLAG(int, batch, 1, "ids per QueryLabels call");
ABSL_FLAG(bool, experiments, false,
          "each client its own experiments (else one shared experiment)");
ABSL_FLAG(std::string, client_api, "sync",
          "sync: a thread per client making blocking calls; callback: "
          "clients chain callback-API calls on gRPC's threads");
ABSL_FLAG(std::string, experiment_prefix, "",
          "prefix of experiment names; empty: bench-<unix seconds>");

namespace {

constexpr int64_t kIdSpace = common::kTrainCount;
constexpr absl::Duration kCallDeadline = absl::Seconds(10);
constexpr absl::Duration kStartupDeadline = absl::Seconds(60);
constexpr absl::Duration kShutdownDeadline = absl::Seconds(20);
// A client gives up after this many failed calls in a row.
constexpr int kMaxConsecutiveErrors = 100;

struct BenchOptions {
  std::string server;                           // host:port of the oracle
  int clients = 32;                             // concurrent clients
  absl::Duration duration = absl::Seconds(10);  // sending window
  int batch = 1;                                // ids per call
  bool per_client_experiments = false;          // see the file comment
  bool callback_api = false;      // --client_api=callback (else sync)
  std::string experiment_prefix;  // experiment names start with this
  pid_t server_pid = -1;  // a local server whose CPU time to report; -1: none
};

struct ClientResult {
  std::vector<int64_t> latencies_us;  // one per successful QueryLabels call
  int64_t labels = 0;                 // labels received
  int64_t newly_revealed = 0;         // sum of newly_revealed
  int64_t repeat_calls = 0;           // successful calls that revealed none
  int64_t rollovers = 0;              // experiments created after the first
  std::map<grpc::StatusCode, int64_t> errors;  // failed calls by code
  absl::Time finished;                         // when its last call returned
  absl::Status fatal;  // set when the client gave up early
};

// A started oracle_server subprocess.
struct OracleProcess {
  pid_t pid = -1;
  std::string address;   // 127.0.0.1:<port>
  std::string log_path;  // its stdout and stderr
};

struct SpawnOptions {
  std::string binary;        // oracle_server to run
  std::string db;            // its --db
  std::string store;         // its --store if set (overrides db)
  std::string work_dir;      // holds the port file and the log
  std::string train_labels;  // its --train_labels
  std::string test_labels;   // its --test_labels
  int max_batch = 1000;      // its --max_batch
  std::vector<std::string> extra_args;  // appended to its command line
};

std::string TailOfFile(const std::string& path, size_t max_chars) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  std::string all = text.str();
  return all.size() > max_chars ? all.substr(all.size() - max_chars) : all;
}

// Starts `options.binary` on port 0 and waits until it has written its port
// file. Returns UNAVAILABLE if it exits or stays silent past the deadline
// (the process is then killed), INTERNAL if it cannot be spawned.
absl::StatusOr<OracleProcess> StartOracle(const SpawnOptions& options) {
  OracleProcess process;
  const std::string port_file = options.work_dir + "/oracle.port";
  process.log_path = options.work_dir + "/oracle_server.log";
  std::vector<std::string> args = {
      options.binary,
      "--host=127.0.0.1",
      "--port=0",
      absl::StrCat("--port_file=", port_file),
      options.store.empty() ? absl::StrCat("--db=", options.db)
                            : absl::StrCat("--store=", options.store),
      absl::StrCat("--train_labels=", options.train_labels),
      absl::StrCat("--test_labels=", options.test_labels),
      absl::StrCat("--max_batch=", options.max_batch),
  };
  args.insert(args.end(), options.extra_args.begin(), options.extra_args.end());
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO,
                                   process.log_path.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  const int err = posix_spawn(&process.pid, options.binary.c_str(), &actions,
                              nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (err != 0) {
    return absl::InternalError(absl::StrCat("cannot start ", options.binary,
                                            ": ", std::strerror(err)));
  }

  const absl::Time deadline = absl::Now() + kStartupDeadline;
  while (absl::Now() < deadline) {
    int wstatus = 0;
    if (waitpid(process.pid, &wstatus, WNOHANG) == process.pid) {
      return absl::UnavailableError(
          absl::StrCat("oracle_server exited during startup (status ", wstatus,
                       "); log tail:\n", TailOfFile(process.log_path, 2000)));
    }
    std::ifstream in(port_file);
    std::string text;
    int port = 0;
    if (std::getline(in, text) &&
        absl::SimpleAtoi(absl::StripAsciiWhitespace(text), &port) && port > 0) {
      process.address = absl::StrCat("127.0.0.1:", port);
      return process;
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  kill(process.pid, SIGKILL);
  waitpid(process.pid, nullptr, 0);
  return absl::UnavailableError(
      absl::StrCat("oracle_server wrote no port file within ",
                   absl::FormatDuration(kStartupDeadline)));
}

// Sends SIGTERM and waits for the exit; SIGKILLs past the deadline. Returns
// INTERNAL unless the process exited with status 0 after SIGTERM.
absl::Status StopOracle(const OracleProcess& process) {
  kill(process.pid, SIGTERM);
  const absl::Time deadline = absl::Now() + kShutdownDeadline;
  while (absl::Now() < deadline) {
    int wstatus = 0;
    if (waitpid(process.pid, &wstatus, WNOHANG) == process.pid) {
      if (WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0) {
        return absl::OkStatus();
      }
      return absl::InternalError(
          absl::StrCat("oracle_server ended with wait status ", wstatus));
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  kill(process.pid, SIGKILL);
  waitpid(process.pid, nullptr, 0);
  return absl::InternalError("oracle_server ignored SIGTERM; killed");
}

std::shared_ptr<grpc::Channel> NewChannel(const std::string& server) {
  grpc::ChannelArguments args;
  // A subchannel pool per channel: every client gets its own connection.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel(server, grpc::InsecureChannelCredentials(),
                                   args);
}

absl::Status CreateExperiment(oracle::v1::LabelOracle::Stub& stub,
                              const std::string& name) {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + kCallDeadline));
  context.set_wait_for_ready(true);
  oracle::v1::CreateExperimentRequest request;
  request.set_name(name);
  request.set_label_budget(kIdSpace);
  oracle::v1::Experiment experiment;
  RETURN_IF_ERROR(common::FromGrpcStatus(
      stub.CreateExperiment(&context, request, &experiment)));
  if (experiment.label_budget() != kIdSpace) {
    return absl::FailedPreconditionError(
        absl::StrCat("experiment ", name, " has budget ",
                     experiment.label_budget(), ", want ", kIdSpace));
  }
  return absl::OkStatus();
}

// The ids client `index` walks: [begin, end).
struct IdRange {
  int64_t begin = 0;
  int64_t end = 0;
};

IdRange RangeOf(const BenchOptions& options, int index) {
  if (options.per_client_experiments) return {0, kIdSpace};
  return {kIdSpace * index / options.clients,
          kIdSpace * (index + 1) / options.clients};
}

std::string ExperimentName(const BenchOptions& options, int index,
                           int64_t generation) {
  if (!options.per_client_experiments) {
    return absl::StrCat(options.experiment_prefix, "-shared");
  }
  return absl::StrCat(options.experiment_prefix, "-c", index, "-g", generation);
}

// What one client asks next and what it has measured, for either client API.
class ClientWalk {
 public:
  ClientWalk(const BenchOptions& options, int index, ClientResult& result)
      : options_(options),
        index_(index),
        result_(result),
        range_(RangeOf(options, index)),
        cursor_(range_.begin),
        experiment_(ExperimentName(options, index, 0)) {
    request_.set_experiment(experiment_);
    request_.set_client(absl::StrCat("oracle_bench/c", index));
    request_.set_strategy("bench");
    result_.latencies_us.reserve(1 << 16);
  }

  // The experiment of the next call.
  const std::string& experiment() const { return experiment_; }

  // True if the ids of the current experiment are used up and the client
  // must create experiment() (already the next generation's) before Next().
  bool StartsNextGeneration() {
    if (cursor_ + options_.batch <= range_.end) return false;
    cursor_ = range_.begin;
    if (!options_.per_client_experiments) return false;
    ++generation_;
    experiment_ = ExperimentName(options_, index_, generation_);
    request_.set_experiment(experiment_);
    return true;
  }

  // The next call's request (valid until the next call to Next).
  const oracle::v1::QueryLabelsRequest& Next() {
    request_.clear_ids();
    for (int k = 0; k < options_.batch; ++k) request_.add_ids(cursor_ + k);
    request_.set_round(static_cast<int32_t>(generation_));
    return request_;
  }

  // Records a finished call. False (with result.fatal set) if the client
  // must stop after too many failures in a row.
  bool Record(const grpc::Status& status,
              const oracle::v1::QueryLabelsResponse& response,
              absl::Duration latency) {
    if (!status.ok()) {
      ++result_.errors[status.error_code()];
      if (++consecutive_errors_ >= kMaxConsecutiveErrors) {
        result_.fatal = absl::UnavailableError(absl::StrCat(
            "client ", index_, ": ", consecutive_errors_,
            " failed calls in a row, last: ", status.error_message()));
        return false;
      }
      return true;
    }
    consecutive_errors_ = 0;
    cursor_ += options_.batch;
    result_.latencies_us.push_back(absl::ToInt64Microseconds(latency));
    result_.labels += response.labels_size();
    result_.newly_revealed += response.newly_revealed();
    if (response.newly_revealed() == 0) ++result_.repeat_calls;
    return true;
  }

 private:
  const BenchOptions& options_;
  const int index_;
  ClientResult& result_;
  const IdRange range_;
  int64_t cursor_;
  int64_t generation_ = 0;
  std::string experiment_;
  oracle::v1::QueryLabelsRequest request_;
  int consecutive_errors_ = 0;
};

// One client on the sync API: creates its first experiment (per-client mode),
// counts down `ready`, waits for `start`, then calls until `stop_at`. Never
// throws; a failure to create an experiment ends the client with `fatal` set.
void RunClient(const BenchOptions& options, int index,
               absl::BlockingCounter& ready, const absl::Notification& start,
               const absl::Time& stop_at, ClientResult& result) {
  auto stub = oracle::v1::LabelOracle::NewStub(NewChannel(options.server));
  ClientWalk walk(options, index, result);
  if (options.per_client_experiments) {
    result.fatal = CreateExperiment(*stub, walk.experiment());
  }
  ready.DecrementCount();
  start.WaitForNotification();
  if (!result.fatal.ok()) return;

  oracle::v1::QueryLabelsResponse response;
  while (absl::Now() < stop_at) {
    if (walk.StartsNextGeneration()) {
      result.fatal = CreateExperiment(*stub, walk.experiment());
      if (!result.fatal.ok()) break;
      ++result.rollovers;
    }
    const oracle::v1::QueryLabelsRequest& request = walk.Next();
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + kCallDeadline));
    const absl::Time sent = absl::Now();
    const grpc::Status status = stub->QueryLabels(&context, request, &response);
    if (!walk.Record(status, response, absl::Now() - sent)) break;
  }
  result.finished = absl::Now();
}

// One client on the callback API: each call is started from the callback of
// the one before (a rollover's CreateExperiment too), on gRPC's threads.
// Start() sends the first call; `finished` is counted down once, after the
// last callback. The owner must outlive that.
class CallbackClient {
 public:
  CallbackClient(const BenchOptions& options, int index,
                 const absl::Time& stop_at, ClientResult& result,
                 absl::BlockingCounter& finished)
      : stub_(oracle::v1::LabelOracle::NewStub(NewChannel(options.server))),
        walk_(options, index, result),
        stop_at_(stop_at),
        result_(result),
        finished_(finished) {}

  // Creates the first experiment (per-client mode), blocking.
  absl::Status Prepare(bool per_client_experiments) {
    if (!per_client_experiments) return absl::OkStatus();
    return CreateExperiment(*stub_, walk_.experiment());
  }

  void Start() { SendNext(); }

 private:
  void SendNext() {
    if (absl::Now() >= stop_at_) {
      Finish();
      return;
    }
    if (walk_.StartsNextGeneration()) {
      SendCreate();
      return;
    }
    context_ = std::make_unique<grpc::ClientContext>();
    context_->set_deadline(absl::ToChronoTime(absl::Now() + kCallDeadline));
    sent_ = absl::Now();
    stub_->async()->QueryLabels(
        context_.get(), &walk_.Next(), &response_, [this](grpc::Status status) {
          if (!walk_.Record(status, response_, absl::Now() - sent_)) {
            Finish();
            return;
          }
          SendNext();
        });
  }

  void SendCreate() {
    context_ = std::make_unique<grpc::ClientContext>();
    context_->set_deadline(absl::ToChronoTime(absl::Now() + kCallDeadline));
    create_request_.set_name(walk_.experiment());
    create_request_.set_label_budget(kIdSpace);
    stub_->async()->CreateExperiment(
        context_.get(), &create_request_, &created_,
        [this](grpc::Status status) {
          result_.fatal = common::FromGrpcStatus(status);
          if (result_.fatal.ok() && created_.label_budget() != kIdSpace) {
            result_.fatal = absl::FailedPreconditionError(
                absl::StrCat("experiment ", walk_.experiment(), " has budget ",
                             created_.label_budget(), ", want ", kIdSpace));
          }
          if (!result_.fatal.ok()) {
            Finish();
            return;
          }
          ++result_.rollovers;
          SendNext();
        });
  }

  void Finish() {
    result_.finished = absl::Now();
    finished_.DecrementCount();
  }

  std::unique_ptr<oracle::v1::LabelOracle::Stub> stub_;
  ClientWalk walk_;
  const absl::Time& stop_at_;
  ClientResult& result_;
  absl::BlockingCounter& finished_;
  std::unique_ptr<grpc::ClientContext> context_;  // of the call in flight
  absl::Time sent_;
  oracle::v1::QueryLabelsResponse response_;
  oracle::v1::CreateExperimentRequest create_request_;
  oracle::v1::Experiment created_;
};

// CPU time (user + system) of process `pid` so far, from /proc; 0 if it
// cannot be read.
double ProcessCpuSeconds(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string text((std::istreambuf_iterator<char>(in)),
                   std::istreambuf_iterator<char>());
  // Fields after the parenthesised command name, which may hold spaces.
  const size_t paren = text.rfind(')');
  if (paren == std::string::npos) return 0;
  std::istringstream fields(text.substr(paren + 2));
  std::string field;
  int64_t utime = 0, stime = 0;
  // State is field 3; utime and stime are fields 14 and 15.
  for (int number = 3; number <= 15 && fields >> field; ++number) {
    if (number == 14 && !absl::SimpleAtoi(field, &utime)) return 0;
    if (number == 15 && !absl::SimpleAtoi(field, &stime)) return 0;
  }
  return static_cast<double>(utime + stime) / sysconf(_SC_CLK_TCK);
}

double SelfCpuSeconds() {
  rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  auto seconds = [](const timeval& t) {
    return static_cast<double>(t.tv_sec) + t.tv_usec / 1e6;
  };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

int64_t Percentile(const std::vector<int64_t>& sorted, double q) {
  if (sorted.empty()) return 0;
  const size_t rank =
      static_cast<size_t>(std::ceil(q * static_cast<double>(sorted.size())));
  return sorted[std::clamp<size_t>(rank, 1, sorted.size()) - 1];
}

std::string Ms(int64_t micros) {
  return absl::StrFormat("%.2f", static_cast<double>(micros) / 1000.0);
}

// Runs the clients and prints the report to stdout. Returns the first fatal
// client error, or INTERNAL if no call succeeded.
absl::Status RunBench(const BenchOptions& options) {
  std::vector<ClientResult> results(options.clients);
  if (!options.per_client_experiments) {
    auto stub = oracle::v1::LabelOracle::NewStub(NewChannel(options.server));
    RETURN_IF_ERROR(CreateExperiment(*stub, ExperimentName(options, 0, 0)));
  }
  double server_cpu_before = 0;
  double self_cpu_before = 0;
  absl::Time started;
  absl::Time stop_at = absl::InfiniteFuture();
  auto start_clock = [&] {
    server_cpu_before =
        options.server_pid > 0 ? ProcessCpuSeconds(options.server_pid) : 0;
    self_cpu_before = SelfCpuSeconds();
    started = absl::Now();
    stop_at = started + options.duration;
  };
  if (options.callback_api) {
    std::vector<std::unique_ptr<CallbackClient>> clients;
    absl::BlockingCounter finished(options.clients);
    for (int i = 0; i < options.clients; ++i) {
      clients.push_back(std::make_unique<CallbackClient>(options, i, stop_at,
                                                         results[i], finished));
      RETURN_IF_ERROR(clients.back()->Prepare(options.per_client_experiments));
    }
    start_clock();
    for (auto& client : clients) client->Start();
    finished.Wait();
  } else {
    absl::BlockingCounter ready(options.clients);
    absl::Notification start;
    std::vector<std::thread> threads;
    threads.reserve(options.clients);
    for (int i = 0; i < options.clients; ++i) {
      threads.emplace_back(RunClient, std::cref(options), i, std::ref(ready),
                           std::cref(start), std::cref(stop_at),
                           std::ref(results[i]));
    }
    ready.Wait();
    start_clock();  // stop_at is published by Notify().
    start.Notify();
    for (std::thread& thread : threads) thread.join();
  }
  const double self_cpu = SelfCpuSeconds() - self_cpu_before;
  const double server_cpu =
      options.server_pid > 0
          ? ProcessCpuSeconds(options.server_pid) - server_cpu_before
          : 0;

  std::vector<int64_t> latencies;
  int64_t labels = 0, newly_revealed = 0, repeat_calls = 0, rollovers = 0;
  std::map<grpc::StatusCode, int64_t> errors;
  absl::Time finished = started;
  for (const ClientResult& r : results) {
    RETURN_IF_ERROR(r.fatal);
    latencies.insert(latencies.end(), r.latencies_us.begin(),
                     r.latencies_us.end());
    labels += r.labels;
    newly_revealed += r.newly_revealed;
    repeat_calls += r.repeat_calls;
    rollovers += r.rollovers;
    for (const auto& [code, count] : r.errors) errors[code] += count;
    finished = std::max(finished, r.finished);
  }
  if (latencies.empty()) {
    return absl::InternalError("no QueryLabels call succeeded");
  }
  std::sort(latencies.begin(), latencies.end());
  const double seconds = absl::ToDoubleSeconds(finished - started);
  const int64_t calls = static_cast<int64_t>(latencies.size());
  std::vector<std::string> error_text;
  for (const auto& [code, count] : errors) {
    error_text.push_back(absl::StrCat("code ", code, ": ", count));
  }
  const std::string mode =
      options.per_client_experiments ? "per-client" : "shared";

  std::cout << absl::StrFormat(
      "server          %s\n"
      "clients         %d (experiments: %s, %s API), batch %d, %.2f s\n"
      "calls ok        %d  (%.0f calls/s)\n"
      "labels          %d  (%.0f labels/s)\n"
      "newly revealed  %d  (%.0f labels/s); repeat calls %d; rollovers %d\n"
      "latency ms      p50 %s  p90 %s  p99 %s  max %s\n"
      "errors          %s\n",
      options.server, options.clients, mode,
      options.callback_api ? "callback" : "sync", options.batch, seconds, calls,
      calls / seconds, labels, labels / seconds, newly_revealed,
      newly_revealed / seconds, repeat_calls, rollovers,
      Ms(Percentile(latencies, 0.50)), Ms(Percentile(latencies, 0.90)),
      Ms(Percentile(latencies, 0.99)), Ms(latencies.back()),
      error_text.empty() ? "none" : absl::StrJoin(error_text, ", "));
  std::cout << absl::StrFormat("cpu             bench %.2f s (%.0f us/call)",
                               self_cpu, 1e6 * self_cpu / calls);
  if (options.server_pid > 0) {
    std::cout << absl::StrFormat(", server %.2f s (%.0f us/call)", server_cpu,
                                 1e6 * server_cpu / calls);
  }
  std::cout << "\n";
  std::cout << absl::StrFormat(
      "row | %d | %d | %s | %.0f | %.0f | %.0f | %s | %s | %s |\n",
      options.clients, options.batch, mode, calls / seconds, labels / seconds,
      newly_revealed / seconds, Ms(Percentile(latencies, 0.50)),
      Ms(Percentile(latencies, 0.99)), Ms(latencies.back()));
  return absl::OkStatus();
}

absl::Status ValidateOptions(const BenchOptions& options) {
  if (options.clients < 1) {
    return absl::InvalidArgumentError("--clients must be at least 1");
  }
  if (options.duration <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("--seconds must be positive");
  }
  const IdRange smallest = RangeOf(options, 0);
  if (options.batch < 1 || options.batch > smallest.end - smallest.begin) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--batch must be in [1, ", smallest.end - smallest.begin,
        "] (a client walks ", smallest.end - smallest.begin, " ids)"));
  }
  return absl::OkStatus();
}

std::string BinaryBesideSelf(const std::string& name) {
  std::error_code error;
  const std::filesystem::path self =
      std::filesystem::read_symlink("/proc/self/exe", error);
  if (error) return name;
  return (self.parent_path() / name).string();
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Measures QueryLabels throughput and latency of a label oracle.");
  absl::ParseCommandLine(argc, argv);
  // Writes to a closed channel must fail, not kill the benchmark.
  signal(SIGPIPE, SIG_IGN);

  BenchOptions options;
  options.server = absl::GetFlag(FLAGS_server);
  options.clients = absl::GetFlag(FLAGS_clients);
  options.duration = absl::Seconds(absl::GetFlag(FLAGS_seconds));
  options.batch = absl::GetFlag(FLAGS_batch);
  options.per_client_experiments = absl::GetFlag(FLAGS_experiments);
  const std::string client_api = absl::GetFlag(FLAGS_client_api);
  if (client_api != "sync" && client_api != "callback") {
    std::cerr << "oracle_bench: --client_api must be sync or callback, got "
              << client_api << "\n";
    return 2;
  }
  options.callback_api = client_api == "callback";
  options.experiment_prefix = absl::GetFlag(FLAGS_experiment_prefix);
  if (options.experiment_prefix.empty()) {
    options.experiment_prefix =
        absl::StrCat("bench-", absl::ToUnixSeconds(absl::Now()));
  }
  if (absl::Status status = ValidateOptions(options); !status.ok()) {
    std::cerr << "oracle_bench: " << status << "\n";
    return 2;
  }

  std::optional<OracleProcess> process;
  std::string temp_dir;
  if (options.server.empty()) {
    char dir_template[] = "/tmp/oracle_bench.XXXXXX";
    if (mkdtemp(dir_template) == nullptr) {
      std::cerr << "oracle_bench: mkdtemp: " << std::strerror(errno) << "\n";
      return 1;
    }
    temp_dir = dir_template;
    SpawnOptions spawn;
    spawn.binary = absl::GetFlag(FLAGS_oracle_binary);
    if (spawn.binary.empty()) spawn.binary = BinaryBesideSelf("oracle_server");
    spawn.db = absl::GetFlag(FLAGS_db);
    if (spawn.db.empty()) spawn.db = temp_dir + "/oracle.db";
    spawn.store = absl::GetFlag(FLAGS_store);
    spawn.work_dir = temp_dir;
    spawn.train_labels = absl::GetFlag(FLAGS_train_labels);
    spawn.test_labels = absl::GetFlag(FLAGS_test_labels);
    spawn.max_batch = absl::GetFlag(FLAGS_max_batch);
    spawn.extra_args = absl::GetFlag(FLAGS_server_args);
    absl::StatusOr<OracleProcess> started = StartOracle(spawn);
    if (!started.ok()) {
      std::cerr << "oracle_bench: " << started.status() << "\n";
      std::filesystem::remove_all(temp_dir);
      return 1;
    }
    process = *std::move(started);
    options.server = process->address;
    options.server_pid = process->pid;
    std::cout << "started         " << spawn.binary << " ("
              << (spawn.store.empty() ? "db " + spawn.db : spawn.store)
              << ")\n";
  }

  const absl::Status bench = RunBench(options);
  int exit_code = 0;
  if (!bench.ok()) {
    std::cerr << "oracle_bench: " << bench << "\n";
    exit_code = 1;
  }
  if (process.has_value()) {
    if (absl::Status stopped = StopOracle(*process); !stopped.ok()) {
      std::cerr << "oracle_bench: " << stopped << "; log tail:\n"
                << TailOfFile(process->log_path, 2000);
      exit_code = 1;
    }
    std::filesystem::remove_all(temp_dir);
  }
  return exit_code;
}
