#!/usr/bin/env python3
"""Start the `hello` task on a taskwire server, watch it change state, print its result.

    ./generate.sh                                  # once: the gRPC code, into ./gen
    python3 hello.py Lucy                          # TASKWIRE_TARGET=127.0.0.1:50051 by default

Set TASKWIRE_TOKEN when the server wants a bearer token, and TASKWIRE_CA (a PEM file) to
talk TLS to a server with a certificate. Exit code: 0 SUCCESS, 1 FAILURE, 3 REVOKED.
"""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "gen"))

import grpc  # noqa: E402  (python3-grpcio, or pip install grpcio)
from google.protobuf import json_format, struct_pb2  # noqa: E402
from taskwire.v1 import task_pb2, task_service_pb2, task_service_pb2_grpc  # noqa: E402

EXIT = {task_pb2.TASK_STATE_SUCCESS: 0, task_pb2.TASK_STATE_FAILURE: 1, task_pb2.TASK_STATE_REVOKED: 3}


def channel(target: str) -> grpc.Channel:
    ca = os.environ.get("TASKWIRE_CA")
    if not ca:
        return grpc.insecure_channel(target)
    with open(ca, "rb") as f:
        return grpc.secure_channel(target, grpc.ssl_channel_credentials(root_certificates=f.read()))


def main() -> int:
    target = os.environ.get("TASKWIRE_TARGET", "127.0.0.1:50051")
    name = sys.argv[1] if len(sys.argv) > 1 else "Lucy"
    token = os.environ.get("TASKWIRE_TOKEN")
    metadata = [("authorization", f"Bearer {token}")] if token else []

    with channel(target) as ch:
        stub = task_service_pb2_grpc.TaskServiceStub(ch)
        args = struct_pb2.ListValue()
        args.append(name)
        try:
            task = stub.Start(task_service_pb2.StartRequest(name="hello", args=args), metadata=metadata).task
        except grpc.RpcError as err:
            print(f"Start refused: {err.code().name}: {err.details()}", file=sys.stderr)
            return 2
        print(f"started {task.id}", flush=True)

        # Every change after version 0 (so from the first), in order; the stream ends after a
        # terminal state. A watch cut short resumes with after_version = the last version seen.
        # Heartbeats keep a quiet stream open through proxies; they carry no change.
        request = task_service_pb2.WatchStatusRequest(id=task.id, after_version=0)
        for msg in stub.WatchStatus(request, metadata=metadata):
            if msg.WhichOneof("event") != "task":
                continue
            t = msg.task
            print(f"{task_pb2.TaskState.Name(t.state)} v{t.version}", flush=True)
            if t.state in EXIT:
                if t.state == task_pb2.TASK_STATE_SUCCESS:
                    print("result:", json.dumps(json_format.MessageToDict(t.result)))
                else:
                    print(f"error: {t.error.type}: {t.error.message}")
                return EXIT[t.state]
    return 2


if __name__ == "__main__":
    sys.exit(main())
