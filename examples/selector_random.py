#!/usr/bin/python3
"""An out-of-process selection strategy: uniformly random unlabelled ids.

The smallest useful implementation of proto/selector.proto, and a template
for writing your own selector in Python.

Generate the Python stubs once, into any directory (here build/py_stubs):

  mkdir -p build/py_stubs
  protoc --proto_path=proto \
      --python_out=build/py_stubs --grpc_out=build/py_stubs \
      --plugin=protoc-gen-grpc="$(command -v grpc_python_plugin)" \
      proto/selector.proto

Then serve (Debian's python3-grpcio loads only in /usr/bin/python3):

  /usr/bin/python3 examples/selector_random.py \
      --stubs_dir=build/py_stubs --port=50061

and point the trainer at it with --strategy=grpc://localhost:50061.
--port=0 picks a free port; the port is printed as "listening on PORT" and,
with --port_file, written to that file once the server accepts calls.
"""

import argparse
import os
import random
import signal
import sys
import tempfile
from concurrent import futures


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on ([::] for all)")
    parser.add_argument("--port", type=int, default=50061,
                        help="port to listen on; 0 picks a free one")
    parser.add_argument("--port_file", default="",
                        help="write the port here once serving")
    parser.add_argument("--stubs_dir",
                        default=os.environ.get("SELECTOR_STUBS_DIR", ""),
                        help="directory holding selector_pb2.py and "
                             "selector_pb2_grpc.py (default: "
                             "$SELECTOR_STUBS_DIR)")
    parser.add_argument("--max_message_mb", type=int, default=256,
                        help="largest request accepted; 60000 x 256 float "
                             "embeddings are about 60 MB")
    return parser.parse_args()


def write_atomically(path, text):
    """Writes text to path so that a reader never sees a partial file."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".port.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def main():
    args = parse_args()
    if args.stubs_dir:
        sys.path.insert(0, args.stubs_dir)
    import grpc
    import selector_pb2
    import selector_pb2_grpc

    class RandomSelector(selector_pb2_grpc.SelectorServicer):
        """Picks request.count unlabelled pool ids uniformly at random.

        The choice depends only on (seed, round) and the request, so a
        repeated call returns the same ids.
        """

        def Select(self, request, context):
            if len(set(request.pool_ids)) != len(request.pool_ids):
                context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                              "pool_ids contain duplicates")
            labelled = set(request.labelled_ids)
            unlabelled = [i for i in request.pool_ids if i not in labelled]
            if not 0 <= request.count <= len(unlabelled):
                context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "asked for %d ids but only %d unlabelled pool ids remain"
                    % (request.count, len(unlabelled)))
            # Seeding with a string hashes it with SHA-512: reproducible
            # across processes, unlike hash().
            rng = random.Random("%d:%d" % (request.seed, request.round))
            return selector_pb2.SelectResponse(
                ids=rng.sample(unlabelled, request.count))

    limit = args.max_message_mb << 20
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=4),
        options=[("grpc.max_receive_message_length", limit),
                 ("grpc.max_send_message_length", limit)])
    selector_pb2_grpc.add_SelectorServicer_to_server(RandomSelector(), server)
    port = server.add_insecure_port("%s:%d" % (args.host, args.port))
    if port == 0:
        sys.exit("cannot listen on %s:%d" % (args.host, args.port))
    server.start()
    print("listening on %d" % port, flush=True)
    if args.port_file:
        write_atomically(args.port_file, "%d\n" % port)

    def stop(signum, frame):
        server.stop(grace=1)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
