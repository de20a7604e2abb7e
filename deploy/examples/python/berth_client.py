"""A Berth client in Python, from the .proto files alone (grpcio).

    pip install grpcio grpcio-tools grpcio-reflection grpcio-health-checking
    BERTH_CA=ca.pem BERTH_TOKEN=berth_... \
      python3 berth_client.py --addr 127.0.0.1:7450 --image berth/workload -- echo hello

What a training pipeline does with the API: generate the berth.v1 stubs
from `proto/` (into a temporary directory, nothing to commit), check the
controller's health, list its services by reflection, list the nodes,
submit a job, stream its output, wait for its exit code. The last line
printed is a JSON summary; the exit code is the job's.

Every connection is TLS: the client trusts the cluster CA (--ca, BERTH_CA)
and expects the controller's role name (controller.berth) on its
certificate, and sends the user's token (--token, BERTH_TOKEN) with every
call.

Give every controller in --addr (comma-separated); the first that answers
is asked. Writes go to the leader: a follower answers with an error that
names it, and this example follows that once.
"""

import argparse
import atexit
import json
import os
import re
import shutil
import sys
import tempfile
import uuid

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from grpc_tools import protoc

# Only berth/v1 is read: the public API stands alone (berth/internal is
# Berth's own wiring). BERTH_PROTO_DIR points at another copy of it.
PROTO_DIR = os.environ.get("BERTH_PROTO_DIR") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "proto"
)


def stubs():
    """Compiles proto/berth/v1/*.proto into importable modules."""
    out = tempfile.mkdtemp(prefix="berth-py-")
    atexit.register(shutil.rmtree, out, True)  # the modules are loaded by then
    v1 = os.path.join(PROTO_DIR, "berth", "v1")
    files = [os.path.join("berth", "v1", f) for f in sorted(os.listdir(v1)) if f.endswith(".proto")]
    include = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    args = ["protoc", f"-I{PROTO_DIR}", f"-I{include}", f"--python_out={out}", f"--grpc_python_out={out}"]
    if protoc.main(args + files) != 0:
        sys.exit("protoc failed on " + PROTO_DIR)
    for d in (os.path.join(out, "berth"), os.path.join(out, "berth", "v1")):
        open(os.path.join(d, "__init__.py"), "a").close()
    sys.path.insert(0, out)


def secure_channel(addr, ca, token):
    """TLS to the cluster CA, the token on every call."""
    creds = grpc.composite_channel_credentials(
        grpc.ssl_channel_credentials(root_certificates=ca),
        grpc.access_token_call_credentials(token),
    )
    # Controllers' certificates name their role, not their address.
    return grpc.secure_channel(addr, creds, options=[("grpc.ssl_target_name_override", "controller.berth")])


def leader_channel(addrs, ca, token):
    """A channel to the first controller that answers."""
    errors = []
    for addr in addrs.split(","):
        channel = secure_channel(addr, ca, token)
        try:
            grpc.channel_ready_future(channel).result(timeout=5)
            return channel, addr
        except grpc.FutureTimeoutError:
            errors.append(f"{addr}: no answer")
    sys.exit("no controller answers: " + "; ".join(errors))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--addr", default=os.environ.get("BERTH_ADDR", "127.0.0.1:7450"))
    p.add_argument("--ca", default=os.environ.get("BERTH_CA"), help="the cluster CA (ca.pem)")
    p.add_argument("--token", default=os.environ.get("BERTH_TOKEN"), help="your Berth token")
    p.add_argument("--image", default="berth/workload:latest")
    p.add_argument("--gpus", type=int, default=1)
    p.add_argument("command", nargs="*", default=["echo", "hello from python"])
    a = p.parse_args()

    if not a.ca or not a.token:
        sys.exit("give the cluster CA and your token: --ca/BERTH_CA and --token/BERTH_TOKEN")
    with open(a.ca, "rb") as f:
        ca = f.read()
    stubs()
    from berth.v1 import jobs_pb2, jobs_pb2_grpc, nodes_pb2, nodes_pb2_grpc, types_pb2

    channel, addr = leader_channel(a.addr, ca, a.token)
    health = health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service="berth.v1.JobService"), timeout=5
    )
    services = sorted(ProtoReflectionDescriptorDatabase(channel).get_services())
    nodes = nodes_pb2_grpc.NodeServiceStub(channel).ListNodes(nodes_pb2.ListNodesRequest(), timeout=10)

    jobs = jobs_pb2_grpc.JobServiceStub(channel)
    spec = types_pb2.JobSpec(image=a.image, command=a.command, gpus=a.gpus)
    request = jobs_pb2.SubmitJobRequest(spec=spec, request_id=uuid.uuid4().hex)
    try:
        submitted = jobs.SubmitJob(request, timeout=30)
    except grpc.RpcError as e:
        # A follower names the leader ("... the leader is HOST:PORT").
        leader = re.search(r"leader is (\S+:\d+)", e.details() or "")
        if e.code() != grpc.StatusCode.UNAVAILABLE or not leader:
            sys.exit(f"submit refused: {e.details()}")
        channel = secure_channel(leader.group(1), ca, a.token)
        jobs = jobs_pb2_grpc.JobServiceStub(channel)
        submitted = jobs.SubmitJob(request, timeout=30)
    job = submitted.job
    print(f"submitted {job.id} ({job.name})", file=sys.stderr)

    done = jobs.WaitJob(jobs_pb2.WaitJobRequest(job=job.id), timeout=300)
    output = b"".join(c.data for c in jobs.JobLogs(jobs_pb2.JobLogsRequest(job=job.id), timeout=30))
    sys.stdout.write(output.decode(errors="replace"))
    print(json.dumps({
        "controller": addr,
        "health": health_pb2.HealthCheckResponse.ServingStatus.Name(health.status),
        "services": services,
        "nodes": [n.name for n in nodes.nodes],
        "job": job.id,
        "state": types_pb2.JobState.Name(done.job.state),
        "exit_code": done.exit_code,
    }))
    return done.exit_code


if __name__ == "__main__":
    sys.exit(main())
