"""Talks to a running oracle with Debian's python3-grpcio and checks replies.

Usage: /usr/bin/python3 python_client.py --server 127.0.0.1:PORT
       [--train_labels PATH] [--tls_ca PEM [--tls_cert PEM --tls_key PEM]]
       [--expect_refused]

Stubs (proto/oracle_pb2*.py) are generated at build time; the wrapper puts
their folder on PYTHONPATH. With --train_labels the labels received are also
compared with that IDX file. Any --tls_* flag connects over TLS
(grpc.ssl_channel_credentials) instead of plaintext. With --expect_refused the
only check is that a call fails with UNAVAILABLE (the server refuses this
client's transport or certificate). Exits 0 if every check passed, 1
otherwise.
"""

import argparse
import gzip
import sys
import time

import grpc

from proto import oracle_pb2
from proto import oracle_pb2_grpc

BUDGET = 5
IDS = [0, 1, 2, 59999]


def read_idx_labels(path):
    """Returns the labels of a 1-d IDX file, gzipped or plain."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    if data[:4] != b"\x00\x00\x08\x01":
        raise ValueError(f"{path}: not an IDX label file")
    count = int.from_bytes(data[4:8], "big")
    return list(data[8:8 + count])


def read_file(path):
    """The bytes of path, or None for an empty path."""
    if not path:
        return None
    with open(path, "rb") as f:
        return f.read()


def open_channel(args):
    """A plaintext channel, or TLS if any --tls_* flag is set."""
    if not (args.tls_ca or args.tls_cert or args.tls_key):
        return grpc.insecure_channel(args.server)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=read_file(args.tls_ca),
        private_key=read_file(args.tls_key),
        certificate_chain=read_file(args.tls_cert))
    return grpc.secure_channel(args.server, credentials)


def check_refused(channel, check):
    """One call must fail with UNAVAILABLE (transport or handshake refused)."""
    stub = oracle_pb2_grpc.LabelOracleStub(channel)
    try:
        stub.GetBudget(oracle_pb2.GetBudgetRequest(experiment="refused"),
                       timeout=10)
        check.failures.append("a call that should be refused was answered")
    except grpc.RpcError as error:
        check.equal("refused call code", error.code(),
                    grpc.StatusCode.UNAVAILABLE)


class Checker:
    """Collects failed checks instead of stopping at the first."""

    def __init__(self):
        self.failures = []

    def equal(self, what, got, want):
        if got != want:
            self.failures.append(f"{what}: got {got!r}, want {want!r}")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--server", required=True, help="host:port")
    parser.add_argument("--train_labels", default="",
                        help="IDX train labels the server was started with")
    parser.add_argument("--tls_ca", default="",
                        help="CA certificates (PEM) of the server's certificate")
    parser.add_argument("--tls_cert", default="",
                        help="client certificate (PEM) for mutual TLS")
    parser.add_argument("--tls_key", default="",
                        help="private key of --tls_cert (PEM)")
    parser.add_argument("--expect_refused", action="store_true",
                        help="only check that the server refuses this client")
    args = parser.parse_args()

    check = Checker()
    channel = open_channel(args)
    if args.expect_refused:
        check_refused(channel, check)
        channel.close()
        for failure in check.failures:
            print(f"FAIL {failure}", file=sys.stderr)
        return 1 if check.failures else 0
    grpc.channel_ready_future(channel).result(timeout=10)
    stub = oracle_pb2_grpc.LabelOracleStub(channel)
    name = f"python-client-{int(time.time() * 1000)}"

    experiment = stub.CreateExperiment(
        oracle_pb2.CreateExperimentRequest(name=name, label_budget=BUDGET),
        timeout=10)
    check.equal("created", experiment.created, True)
    check.equal("experiment name", experiment.name, name)
    check.equal("label_budget", experiment.label_budget, BUDGET)

    again = stub.CreateExperiment(
        oracle_pb2.CreateExperimentRequest(name=name), timeout=10)
    check.equal("repeat created", again.created, False)
    check.equal("repeat id", again.id, experiment.id)

    reply = stub.QueryLabels(
        oracle_pb2.QueryLabelsRequest(experiment=name, ids=IDS,
                                      client="python_client", strategy="fixed",
                                      round=1),
        timeout=10)
    check.equal("number of labels", len(reply.labels), len(IDS))
    check.equal("newly_revealed", reply.newly_revealed, len(IDS))
    check.equal("remaining", reply.remaining, BUDGET - len(IDS))
    if not all(0 <= label < 10 for label in reply.labels):
        check.failures.append(f"labels out of range: {list(reply.labels)}")
    if args.train_labels:
        truth = read_idx_labels(args.train_labels)
        check.equal("labels", list(reply.labels), [truth[i] for i in IDS])

    # Repeats are free: same labels, nothing spent.
    repeat = stub.QueryLabels(
        oracle_pb2.QueryLabelsRequest(experiment=name, ids=IDS[:2]),
        timeout=10)
    check.equal("repeat labels", list(repeat.labels), list(reply.labels[:2]))
    check.equal("repeat newly_revealed", repeat.newly_revealed, 0)
    check.equal("audit sequence grows",
                repeat.audit_sequence > reply.audit_sequence, True)

    # Two new ids with one label left: all or nothing.
    try:
        stub.QueryLabels(
            oracle_pb2.QueryLabelsRequest(experiment=name, ids=[10, 11]),
            timeout=10)
        check.failures.append("over-budget query was granted")
    except grpc.RpcError as error:
        check.equal("over-budget code", error.code(),
                    grpc.StatusCode.RESOURCE_EXHAUSTED)

    budget = stub.GetBudget(oracle_pb2.GetBudgetRequest(experiment=name),
                            timeout=10)
    check.equal("budget experiment", budget.experiment, name)
    check.equal("budget label_budget", budget.label_budget, BUDGET)
    check.equal("budget spent", budget.spent, len(IDS))
    check.equal("budget remaining", budget.remaining, BUDGET - len(IDS))
    check.equal("budget requests_granted", budget.requests_granted, 2)
    check.equal("budget requests_denied", budget.requests_denied, 1)

    rows = stub.ListQueries(
        oracle_pb2.ListQueriesRequest(experiment=name), timeout=10).rows
    check.equal("audit outcomes", [row.outcome for row in rows],
                [oracle_pb2.GRANTED, oracle_pb2.GRANTED,
                 oracle_pb2.DENIED_BUDGET])
    if len(rows) == 3:
        check.equal("audit ids_revealed", list(rows[0].ids_revealed), IDS)
        check.equal("audit client", rows[0].client, "python_client")

    try:
        stub.GetBudget(oracle_pb2.GetBudgetRequest(experiment=name + "-nope"),
                       timeout=10)
        check.failures.append("GetBudget of an unknown experiment succeeded")
    except grpc.RpcError as error:
        check.equal("unknown experiment code", error.code(),
                    grpc.StatusCode.NOT_FOUND)

    channel.close()
    for failure in check.failures:
        print(f"FAIL {failure}", file=sys.stderr)
    if check.failures:
        return 1
    print(f"python_client: all checks passed against {args.server}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
