#include "tests/oracle_server/postgres_test_cluster.h"

#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <pwd.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <system_error>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"

namespace oracle_server {
namespace testdata {
namespace {

// The newest installed server's bin folder, or "" if there is none.
std::string FindBinDir() {
  std::vector<std::string> found;
  std::error_code error;
  for (const auto& entry :
       std::filesystem::directory_iterator("/usr/lib/postgresql", error)) {
    if (std::filesystem::exists(entry.path() / "bin" / "initdb")) {
      found.push_back((entry.path() / "bin").string());
    }
  }
  if (found.empty()) return "";
  std::sort(found.begin(), found.end(),
            [](const std::string& a, const std::string& b) {
              return a.size() != b.size() ? a.size() < b.size() : a < b;
            });
  return found.back();
}

absl::Mutex cluster_mu;
PostgresTestCluster* cluster ABSL_GUARDED_BY(cluster_mu) = nullptr;
std::string cluster_error ABSL_GUARDED_BY(cluster_mu);

// Stops the cluster when the test program ends.
class StopClusterEnvironment : public ::testing::Environment {
 public:
  void TearDown() override {
    absl::MutexLock lock(&cluster_mu);
    if (cluster != nullptr) cluster->Stop();
  }
};
const auto* const environment [[maybe_unused]] =
    ::testing::AddGlobalTestEnvironment(new StopClusterEnvironment);

}  // namespace

PostgresTestCluster* PostgresTestCluster::Get(std::string* why) {
  absl::MutexLock lock(&cluster_mu);
  if (cluster != nullptr || !cluster_error.empty()) {
    if (cluster == nullptr) *why = cluster_error;
    return cluster;
  }
  auto fail = [&](const std::string& message) -> PostgresTestCluster* {
    cluster_error = message;
    *why = message;
    return nullptr;
  };
  const std::string bin_dir = FindBinDir();
  if (bin_dir.empty()) {
    return fail(
        "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb; "
        "Debian package postgresql)");
  }
  std::string run_as;
  std::string dir_template =
      (std::filesystem::temp_directory_path() / "oracle-pg.XXXXXX").string();
  if (mkdtemp(dir_template.data()) == nullptr) {
    return fail("cannot create a temporary folder for PostgreSQL");
  }
  const std::string dir = dir_template;
  if (geteuid() == 0) {
    // initdb refuses root: run the server as the postgres user.
    struct passwd* postgres = getpwnam("postgres");
    if (postgres == nullptr) return fail("no postgres user to run initdb as");
    if (chown(dir.c_str(), postgres->pw_uid, postgres->pw_gid) != 0) {
      return fail(absl::StrCat("cannot chown ", dir, " to postgres"));
    }
    run_as = "runuser -u postgres -- ";
  }
  auto* started = new PostgresTestCluster;
  started->bin_dir_ = bin_dir;
  started->dir_ = dir;
  started->run_as_ = run_as;
  const std::string initdb =
      absl::StrCat(run_as, bin_dir, "/initdb -D ", dir,
                   "/data -A trust -U postgres -E UTF8 --locale=C --no-sync "
                   "> ",
                   dir, "/initdb.log 2>&1");
  if (std::system(initdb.c_str()) != 0) {
    return fail(absl::StrCat("initdb failed; see ", dir, "/initdb.log"));
  }
  // Unix socket only; fsync off: tests check transactions, not the disk.
  const std::string start = absl::StrCat(
      run_as, bin_dir, "/pg_ctl -D ", dir, "/data -l ", dir,
      "/server.log -w -t 60 -o \"-c listen_addresses='' -k ", dir,
      " -c fsync=off -c full_page_writes=off -c max_connections=200\" start "
      "> /dev/null");
  if (std::system(start.c_str()) != 0) {
    return fail(absl::StrCat("pg_ctl start failed; see ", dir, "/server.log"));
  }
  started->running_ = true;
  cluster = started;
  return cluster;
}

std::string PostgresTestCluster::ConnInfo(const std::string& name) const {
  return absl::StrCat("host=", dir_, " user=postgres dbname=", name);
}

absl::StatusOr<std::string> PostgresTestCluster::CreateDatabase() {
  std::string name;
  {
    absl::MutexLock lock(&cluster_mu);
    name = absl::StrCat("oracle_test_", ++databases_);
  }
  PGconn* conn = PQconnectdb(ConnInfo("postgres").c_str());
  if (PQstatus(conn) != CONNECTION_OK) {
    std::string message = PQerrorMessage(conn);
    PQfinish(conn);
    return absl::UnavailableError(message);
  }
  PGresult* result =
      PQexec(conn, absl::StrCat("CREATE DATABASE ", name).c_str());
  const bool ok = PQresultStatus(result) == PGRES_COMMAND_OK;
  std::string message = PQresultErrorMessage(result);
  PQclear(result);
  PQfinish(conn);
  if (!ok) return absl::InternalError(message);
  return ConnInfo(name);
}

absl::Status PostgresTestCluster::Execute(const std::string& conninfo,
                                          const std::string& sql) {
  PGconn* conn = PQconnectdb(conninfo.c_str());
  if (PQstatus(conn) != CONNECTION_OK) {
    std::string message = PQerrorMessage(conn);
    PQfinish(conn);
    return absl::UnavailableError(message);
  }
  PGresult* result = PQexec(conn, sql.c_str());
  const ExecStatusType status = PQresultStatus(result);
  std::string message = PQresultErrorMessage(result);
  PQclear(result);
  PQfinish(conn);
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
    return absl::InternalError(message);
  }
  return absl::OkStatus();
}

void PostgresTestCluster::Stop() {
  if (!running_) return;
  running_ = false;
  const std::string stop = absl::StrCat(run_as_, bin_dir_, "/pg_ctl -D ", dir_,
                                        "/data -m immediate -w stop > "
                                        "/dev/null 2>&1");
  std::system(stop.c_str());
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
}

}  // namespace testdata
}  // namespace oracle_server
