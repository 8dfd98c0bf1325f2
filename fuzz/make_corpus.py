#!/usr/bin/python3
"""Writes the hand-made seed corpora of fuzz/corpus/idx_file and
fuzz/corpus/label_oracle (see fuzz/*_fuzzer.cc for the input formats) and
the random starting seeds of fuzz/corpus/audit_chain.

    /usr/bin/python3 fuzz/make_corpus.py   # Debian python3-protobuf

Needs protoc and python3-protobuf (scripts/deps.sh installs both). The
grown_* files were grown by the fuzzers themselves: a few minutes of fuzzing,
`-merge=1` into an empty folder, the 30 largest files kept.
"""
import gzip
import importlib
import os
import random
import struct
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")


def write(target, name, data):
    folder = os.path.join(CORPUS, target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


def idx(rank, dims, payload=b"", elem=0x08):
    return bytes([0, 0, elem, rank]) + b"".join(
        struct.pack(">I", d) for d in dims) + payload


def idx_seeds():
    labels = idx(1, [5], bytes([0, 1, 2, 3, 9]))
    write("idx_file", "labels_valid", labels)
    write("idx_file", "labels_valid_gz", gzip.compress(labels, mtime=0))
    write("idx_file", "images_valid", idx(3, [2, 2, 2], bytes(range(8))))
    write("idx_file", "truncated_header", idx(3, [2, 2, 2])[:9])
    write("idx_file", "truncated_data", idx(1, [5], b"\x01\x02"))
    write("idx_file", "trailing_bytes", idx(1, [1], b"\x01\x02\x03"))
    write("idx_file", "bad_magic", b"\x1f\x00\x08\x01\x00\x00\x00\x00")
    write("idx_file", "float_elements", idx(1, [1], b"\x00" * 4, elem=0x0D))
    # Regression: 65536^4 wrapped around to 0 values (tests/common).
    write("idx_file", "dims_overflow", idx(4, [65536] * 4))


def oracle_pb2():
    out = tempfile.mkdtemp()
    subprocess.check_call(["protoc", "--proto_path=" + ROOT,
                           "--python_out=" + out, "proto/oracle.proto"])
    sys.path.insert(0, out)
    return importlib.import_module("proto.oracle_pb2")


CREATE, QUERY, BUDGET, EVALUATE, LIST = range(5)
NO_TOKEN, ADMIN, TOK_A, TOK_B = range(4)


def record(rpc, message, token=NO_TOKEN, peer=0):
    payload = message.SerializeToString()
    return bytes([rpc, token, peer]) + struct.pack("<H", len(payload)) + payload


def oracle_seeds():
    pb = oracle_pb2()
    exp = "exp-1"
    create = pb.CreateExperimentRequest(name=exp, label_budget=5, token="tok-a")
    query = pb.QueryLabelsRequest(experiment=exp, ids=[1, 2, 3],
                                  client="fuzz", strategy="random", round=1)
    budget = pb.GetBudgetRequest(experiment=exp)
    evaluate = pb.EvaluateRequest(experiment=exp, predictions=list(range(10)),
                                  client="fuzz", note="seed")
    listing = pb.ListQueriesRequest(experiment=exp, page_size=2)
    # Config byte: bit 0 admin token, bits 1-2 eval cap, bit 3 per-client
    # cap, bit 4 total cap, bits 5-7 max_batch.
    open_server = 0b111_00_11_0
    admin_server = open_server | 1
    write("label_oracle", "open_session", bytes([open_server]) + b"".join([
        record(CREATE, create, TOK_A),
        record(QUERY, query, TOK_A, 1),
        record(QUERY, pb.QueryLabelsRequest(experiment=exp, ids=[3, 4, 5]),
               TOK_A),
        record(BUDGET, budget, TOK_A),
        record(EVALUATE, evaluate, TOK_A, 1),
        record(LIST, listing, TOK_A),
        record(LIST, pb.ListQueriesRequest(after_sequence=1), NO_TOKEN),
    ]))
    write("label_oracle", "admin_session", bytes([admin_server]) + b"".join([
        record(CREATE, create, ADMIN),
        record(CREATE, pb.CreateExperimentRequest(name=exp), TOK_A),
        record(CREATE, pb.CreateExperimentRequest(name="other"), TOK_B),
        record(QUERY, query, TOK_A, 2),
        record(QUERY, query, TOK_B),
        record(EVALUATE, evaluate, TOK_A, 1),
        record(EVALUATE, evaluate, TOK_A, 1),
        record(EVALUATE, evaluate, ADMIN, 2),
        record(LIST, pb.ListQueriesRequest(), TOK_A),
        record(LIST, pb.ListQueriesRequest(), ADMIN),
    ]))
    write("label_oracle", "invalid_requests", bytes([open_server]) + b"".join([
        record(CREATE, pb.CreateExperimentRequest(name="bad name!")),
        record(CREATE, pb.CreateExperimentRequest(name="e", label_budget=-1)),
        record(CREATE, pb.CreateExperimentRequest(name="e", label_budget=2)),
        record(QUERY, pb.QueryLabelsRequest(experiment="e", ids=[7, 7])),
        record(QUERY, pb.QueryLabelsRequest(experiment="e", ids=[-1, 64])),
        record(QUERY, pb.QueryLabelsRequest(experiment="e")),
        record(QUERY, pb.QueryLabelsRequest(experiment="e", ids=[1, 2, 3])),
        record(EVALUATE, pb.EvaluateRequest(experiment="e", predictions=[10])),
        record(BUDGET, pb.GetBudgetRequest(experiment="nope")),
        record(LIST, pb.ListQueriesRequest(page_size=-1, after_sequence=-5)),
    ]))


def audit_seeds():
    # The audit fuzzer reads its input through FuzzedDataProvider, so any
    # bytes are a valid input; these give it room to build whole logs.
    rng = random.Random(20261127)
    for size in (64, 256, 1024):
        write("audit_chain", "random_%d" % size,
              bytes(rng.randrange(256) for _ in range(size)))


if __name__ == "__main__":
    idx_seeds()
    oracle_seeds()
    audit_seeds()
