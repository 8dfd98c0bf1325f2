#!/usr/bin/python3
"""DIAGNOSTIC ONLY (reads the train label file, so never project code).

A selector that knows the true labels and buys the same number of labels of
every class: an upper bound on what class balance alone is worth.
--mode=random picks at random inside each class; --mode=typical runs
typiclust inside each class (k-means on the request's embedding over the
class's pool points, then the most typical point of the largest clusters
without a label).
"""
import argparse, gzip, os, random, signal, struct, sys, tempfile, math
from concurrent import futures


def read_labels(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, n = struct.unpack(">II", data[:8])
    assert magic == 2049, magic
    return list(data[8:8 + n])


def kmeans(points, k, rng, iters=20):
    centres = [points[i] for i in rng.sample(range(len(points)), k)]
    assign = [0] * len(points)
    for _ in range(iters):
        for i, p in enumerate(points):
            best, bd = 0, float("inf")
            for c, q in enumerate(centres):
                d = sum((a - b) ** 2 for a, b in zip(p, q))
                if d < bd:
                    best, bd = c, d
            assign[i] = best
        for c in range(k):
            members = [points[i] for i in range(len(points)) if assign[i] == c]
            if members:
                centres[c] = [sum(v) / len(members) for v in zip(*members)]
    return assign


def typicality(points, idx, knn=20):
    out = {}
    for i in idx:
        ds = sorted(math.dist(points[i], points[j]) for j in idx if j != i)[:knn]
        out[i] = 1.0 / (sum(ds) / max(len(ds), 1) + 1e-8)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port_file", required=True)
    ap.add_argument("--stubs_dir", required=True)
    ap.add_argument("--labels", default="/usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz")
    ap.add_argument("--mode", choices=["random", "typical"], default="random")
    args = ap.parse_args()
    sys.path.insert(0, args.stubs_dir)
    import grpc, selector_pb2, selector_pb2_grpc
    labels = read_labels(args.labels)

    class Balanced(selector_pb2_grpc.SelectorServicer):
        def Select(self, req, ctx):
            for i, l in zip(req.labelled_ids, req.labelled_labels):
                assert labels[i] == l, (i, l, labels[i])
            labelled = set(req.labelled_ids)
            have = [0] * 10
            for i in req.labelled_ids:
                have[labels[i]] += 1
            total = len(labelled) + req.count
            want = [total // 10 + (1 if c < total % 10 else 0) for c in range(10)]
            need = [max(0, want[c] - have[c]) for c in range(10)]
            while sum(need) > req.count:
                need[max(range(10), key=lambda c: need[c])] -= 1
            while sum(need) < req.count:
                need[min(range(10), key=lambda c: have[c] + need[c])] += 1
            rng = random.Random("%d:%d" % (req.seed, req.round))
            dim = req.embedding_dim
            pos = {pid: k for k, pid in enumerate(req.pool_ids)}
            picks = []
            for c in range(10):
                if need[c] == 0:
                    continue
                members = [p for p in req.pool_ids if labels[p] == c]
                free = [p for p in members if p not in labelled]
                if args.mode == "random" or dim == 0:
                    picks += rng.sample(free, need[c])
                    continue
                pts = [list(req.embeddings[pos[p] * dim:(pos[p] + 1) * dim]) for p in members]
                k = min(len(members), have[c] + need[c])
                assign = kmeans(pts, k, rng)
                covered = {assign[i] for i, p in enumerate(members) if p in labelled}
                sizes = {}
                for a in assign:
                    sizes[a] = sizes.get(a, 0) + 1
                order = sorted((a for a in sizes if a not in covered), key=lambda a: -sizes[a])
                got = 0
                for a in order:
                    if got == need[c]:
                        break
                    idx = [i for i, p in enumerate(members) if assign[i] == a]
                    t = typicality(pts, idx)
                    best = max(idx, key=lambda i: t[i])
                    picks.append(members[best]); got += 1
                rest = [p for p in free if p not in picks]
                picks += rng.sample(rest, need[c] - got)
            print("round %d: have %s buy %s" % (req.round, have, need), flush=True)
            return selector_pb2.SelectResponse(ids=picks)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2),
                         options=[("grpc.max_receive_message_length", 256 << 20)])
    selector_pb2_grpc.add_SelectorServicer_to_server(Balanced(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(args.port_file)))
    with os.fdopen(fd, "w") as f:
        f.write("%d\n" % port)
    os.replace(tmp, args.port_file)
    print("listening on %d" % port, flush=True)
    signal.signal(signal.SIGTERM, lambda *a: server.stop(1))
    server.wait_for_termination()


if __name__ == "__main__":
    main()
