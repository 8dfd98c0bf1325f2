// A throw-away PostgreSQL cluster for tests: initdb into a temporary folder,
// postgres listening only on a unix socket in that folder, started on first
// use and stopped (and removed) when the test program ends. As root (CI),
// initdb and pg_ctl run as the `postgres` user, which initdb requires.
#ifndef TESTS_ORACLE_SERVER_POSTGRES_TEST_CLUSTER_H_
#define TESTS_ORACLE_SERVER_POSTGRES_TEST_CLUSTER_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace oracle_server {
namespace testdata {

class PostgresTestCluster {
 public:
  // The process's cluster, started on the first call. nullptr when it
  // cannot run: `*why` then says what is missing (for GTEST_SKIP) or what
  // failed.
  static PostgresTestCluster* Get(std::string* why);

  // Creates a new empty database and returns its libpq connection string.
  absl::StatusOr<std::string> CreateDatabase();

  // Runs `sql` (one or more statements) on the database of `conninfo`.
  static absl::Status Execute(const std::string& conninfo,
                              const std::string& sql);

  // The connection string of database `name`.
  std::string ConnInfo(const std::string& name) const;

  // Stops the server and removes its folder.
  void Stop();

 private:
  PostgresTestCluster() = default;

  std::string bin_dir_;  // /usr/lib/postgresql/N/bin
  std::string dir_;      // data folder and socket
  std::string run_as_;   // "runuser -u postgres -- " when root
  int databases_ = 0;
  bool running_ = false;
};

}  // namespace testdata
}  // namespace oracle_server

#endif  // TESTS_ORACLE_SERVER_POSTGRES_TEST_CLUSTER_H_
