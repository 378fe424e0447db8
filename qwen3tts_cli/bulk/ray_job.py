"""A bulk job's rows on a Ray cluster: Ray Data hands batches of rows to an actor pool of replicas
(replica.py), and each batch's results stream back to the driver as it ends.

Every replica is one actor holding one loaded model. Ray Data restarts an actor that dies and
retries its batches on the pool (its defaults for actor pools: ``max_restarts=-1``,
``max_task_retries=-1``), so a killed replica loses no row; the driver drops a row that comes back
twice (job.py).

The driver reads and checks the manifest itself (ids must be unique and a rerun must know which
rows are done, which takes every id) and hands Ray Data the rows still to do.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import asdict, dataclass
from typing import Iterator

from ..errors import InputError, ModelError
from .manifest import ManifestRow
from .replica import CALLS_PER_REPLICA, JobSpec, Replica
from .results import RowResult


@dataclass(frozen=True)
class Cluster:
    address: str  # "local" (start one on this machine), "auto" (the one this machine belongs to), or HOST:PORT
    replicas: int = 1
    gpus_per_replica: float = 0.0
    cpus_per_replica: float = 1.0


def import_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise InputError("--ray needs Ray Data: pip install 'qwen3tts-cli[ray]'") from None
    return ray


@contextlib.contextmanager
def session(cluster: Cluster):
    """Connected to the cluster (``local``: one started here, and stopped on leaving) while inside;
    an unreachable cluster or a pool this machine cannot hold is an InputError on entry."""
    ray = import_ray()
    started = _connect(ray, cluster)
    try:
        if cluster.address == "local":
            _check_gpus(ray, cluster)
        yield ray
    finally:
        if started:
            ray.shutdown()


def ray_rows(spec: JobSpec, rows: list[ManifestRow], cluster: Cluster) -> Iterator[tuple[RowResult, bytes | None]]:
    """(result, WAV bytes or None) for each row, as the batches holding them end (connecting
    first unless already inside ``session``)."""
    if not rows:
        return
    with session(cluster) as ray:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False  # the command draws its own
        ctx.print_on_execution_start = False
        ds = ray.data.from_items([asdict(r) for r in rows])
        made = ds.map_batches(
            Replica, fn_constructor_kwargs={"spec": spec}, batch_size=spec.max_batch, batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(
                size=cluster.replicas, max_tasks_in_flight_per_actor=CALLS_PER_REPLICA,
                max_concurrent_calls_per_actor=CALLS_PER_REPLICA, enable_true_multi_threading=True),
            num_cpus=cluster.cpus_per_replica, num_gpus=cluster.gpus_per_replica or None)
        try:
            for batch in made.iter_batches(batch_size=None, batch_format="pyarrow"):
                for record in batch.to_pylist():
                    wav = record.pop("wav")
                    yield RowResult(**record), wav
        except ray.exceptions.RayError as e:  # e.g. a replica that cannot load the model: Ray's report, shortened
            raise ModelError(f"the Ray job failed: {_first_line(e)} (Ray's logs: "
                             "/tmp/ray/session_latest/logs on each node)") from None


def _connect(ray, cluster: Cluster) -> bool:
    """Join or start the cluster; True when this call started it (and must stop it)."""
    if ray.is_initialized():
        return False
    for handler in logging.getLogger("ray.data").handlers:  # set up when Ray Data is imported
        if not isinstance(handler, logging.FileHandler) and type(handler).__name__ != "SessionFileHandler":
            handler.setLevel(logging.ERROR)  # the command reports progress and errors itself
    quiet = dict(logging_level=logging.ERROR, log_to_driver=False, include_dashboard=False)
    if cluster.address == "local":
        # Logical CPUs: at least what the replicas ask for, so that they all start on a small machine
        # (each replica still runs as many torch threads as it was given).
        need = cluster.replicas * cluster.cpus_per_replica
        ray.init(num_cpus=max(os.cpu_count() or 1, int(need + 0.999)), **quiet)
        return True
    if cluster.address != "auto":
        probe(cluster.address)
    try:
        ray.init(address=cluster.address, **quiet)
    except ConnectionError as e:
        if "InvalidAuthToken" in str(e.__cause__):  # the cluster runs with Ray token authentication
            raise InputError(f"--ray {cluster.address}: the cluster wants its authentication token: set "
                             "RAY_AUTH_MODE=token here, with the cluster's token in RAY_AUTH_TOKEN or "
                             "~/.ray/auth_token") from None
        raise InputError(f"--ray {cluster.address}: no Ray cluster there ({e})") from None
    return True


def host_port(address: str) -> tuple[str, int]:
    """A cluster address's (host, port): HOST:PORT; InputError otherwise."""
    from urllib.parse import urlsplit

    if address.startswith("ray://"):
        # Ray Data runs its executor in the driver, which a Ray Client connection cannot host.
        raise InputError(f"--ray {address}: Ray Client addresses do not work with Ray Data: run the command on "
                         "a node of the cluster with --ray auto (or submit it: ray job submit -- qwen3tts bulk "
                         "... --ray auto)")
    parts = urlsplit(f"ray://{address}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host = port = None
    if "://" in address or not host or port is None or parts.path or parts.query or " " in address:
        raise InputError(f"--ray {address}: expected local, auto or the head's HOST:PORT (e.g. 10.0.0.5:6379)")
    return host, port


# An HTTP/2 client preface and an empty SETTINGS frame: a gRPC server (the head's GCS) answers with
# a SETTINGS frame of its own; anything else (a web page, the dashboard) does not.
_HTTP2_HELLO = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])


def probe(address: str, timeout_s: float = 10.0) -> None:
    """The head at HOST:PORT answers as a Ray head does (its GCS speaks gRPC), in seconds: Ray
    itself waits minutes for an address where nothing or something else listens."""
    import socket

    host, port = host_port(address)
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as conn:
            conn.sendall(_HTTP2_HELLO)
            head = b""
            while len(head) < 9:
                piece = conn.recv(9 - len(head))
                if not piece:
                    break
                head += piece
    except socket.timeout:
        head = b""
    except OSError as e:
        raise InputError(f"--ray {address}: nothing answers at {host}:{port} ({e.strerror or e})") from None
    if len(head) < 9 or head[3] != 4:
        raise InputError(f"--ray {address}: what answers at {host}:{port} is not a Ray cluster's head (its GCS "
                         "port, 6379 unless `ray start --port` chose another)")


def _check_gpus(ray, cluster: Cluster) -> None:
    """A pool this machine cannot hold would wait forever: refuse it now. (An existing cluster may
    add nodes as the pool asks for them: there Ray waits.)"""
    gpus = float(ray.cluster_resources().get("GPU", 0))
    need = cluster.replicas * cluster.gpus_per_replica
    if need > gpus:
        raise InputError(f"{cluster.replicas} replicas × {cluster.gpus_per_replica:g} GPUs need {need:g} GPUs; "
                         f"this machine has {gpus:g}")


def _first_line(error: BaseException) -> str:
    """The gist of a Ray error, whose text carries the remote traceback: its last non-blank line
    that is not a traceback frame (the original exception), else its first."""
    lines = [x.strip() for x in str(error).splitlines() if x.strip()]
    causes = [x for x in lines if not x.startswith(("File ", "Traceback", "^", "~")) and ":" in x]
    return (causes[-1] if causes else lines[0] if lines else type(error).__name__)[:300]
