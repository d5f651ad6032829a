"""Ray nodes on this machine, each a `ray start` process of its own: a cluster without a second machine.

    with LocalCluster([home_a, home_b]) as cluster:    # a head and a second node, one CPU each
        os.environ.update(cluster.driver_env)            # RAY_ADDRESS (and RAY_AUTH_MODE)
        run_sweep(notebook, points, parallel=2, backend="ray")
        cluster.kill(1)                                  # the second node dies, as a machine would

What a real cluster has and one process cannot fake: separate raylets, object stores and worker
pools, and separate disks. Each node runs with its own WORKBENCH_HOME, so a worker on node i
writes only under `homes[i]`, as on machines that share no file system. Every process of a node
lives in that node's session (`start_new_session`), so `kill` and `stop` end exactly those, by
session id, not every Ray process on the machine as `ray stop` would.

Starting a node is slower than it looks on a busy machine: each node starts about eight Python
processes, and the raylet gives its dashboard agent a hard-coded 15 s to come up
(ray-project/ray#65983). When `rfc3987_syntax` is installed (a Jupyter dependency), jsonschema
imports it, and it builds an Earley parser at import: 2 to 3 CPU-seconds in every one of those
processes, for a format check Ray never uses. `skip_slow_imports` hides it from the nodes' Python
(jsonschema then simply skips that check), which is what keeps a node's start within 15 s on two
shared cores.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .errors import WorkbenchError

START_TIMEOUT_S = 150.0


def free_ports(count: int) -> list[int]:
    """Ports free right now (the OS picks them; held together so they differ)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def session_processes(session: int) -> list[int]:
    """Every live process of a session (Linux /proc), the session's leader included."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        if int(fields[3]) == session and fields[0] != "Z":
            pids.append(int(entry.name))
    return pids


def without_slow_imports(folder: Path) -> str:
    """A PYTHONPATH under which `rfc3987_syntax` does not import (see the module docstring)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "rfc3987_syntax.py").write_text('raise ImportError("hidden: slow to import")\n')
    return os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")]))


class LocalCluster:
    """A Ray head and `len(homes) - 1` more nodes on this machine, node i with WORKBENCH_HOME = homes[i]."""

    def __init__(self, homes: list[str | Path], cpus: int = 1, skip_slow_imports: bool = True):
        if not homes:
            raise WorkbenchError("a cluster needs at least one node: give one home folder per node")
        self.homes = [Path(h) for h in homes]
        self.cpus = cpus
        self.temp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))  # short: Ray's socket paths must stay < 108 bytes
        self.port = free_ports(1)[0]
        self.address = f"127.0.0.1:{self.port}"
        # Ray's token authentication is off, and explicitly so: unset, Ray turns it on wherever an
        # earlier `ray.init()` left a token in ~/.ray, and a driver whose Ray was imported before
        # it was told of a token sends none. These nodes live minutes, on this machine.
        self.driver_env = {"RAY_ADDRESS": self.address, "RAY_AUTH_MODE": "disabled"}
        self.env = {**os.environ, **self.driver_env}
        self.env.pop("RAY_ADDRESS")
        if skip_slow_imports:
            self.env["PYTHONPATH"] = without_slow_imports(self.temp / "shadow")
        self.processes: list[subprocess.Popen] = []

    def _start(self, index: int) -> subprocess.Popen:
        agent, grpc, runtime_env, metrics, objects, manager = free_ports(6)
        head = ["--head", f"--port={self.port}", "--include-dashboard=false"]
        role = head if index == 0 else [f"--address={self.address}"]
        command = [str(Path(sys.executable).with_name("ray")), "start", *role, "--block", "--node-ip-address=127.0.0.1",
                   f"--num-cpus={self.cpus}", f"--resources={json.dumps({f'node{index}': 1})}",
                   f"--temp-dir={self.temp}",
                   f"--dashboard-agent-listen-port={agent}", f"--dashboard-agent-grpc-port={grpc}",
                   f"--runtime-env-agent-port={runtime_env}", f"--metrics-export-port={metrics}",
                   f"--object-manager-port={objects}", f"--node-manager-port={manager}", "--disable-usage-stats"]
        self.homes[index].mkdir(parents=True, exist_ok=True)
        with open(self.temp / f"node{index}.log", "w") as log:
            return subprocess.Popen(command, env={**self.env, "WORKBENCH_HOME": str(self.homes[index])}, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)

    def _wait(self, indices: list[int], deadline: float) -> None:
        """Until each node says it is up (`ray start --block` prints so once its node registered)."""
        waiting = set(indices)
        while waiting:
            for index in list(waiting):
                text = (self.temp / f"node{index}.log").read_text(errors="replace")
                if "block forever" in text:
                    waiting.discard(index)
                elif self.processes[index].poll() is not None or time.monotonic() > deadline:
                    tail = " | ".join(line for line in text.splitlines()[-3:])
                    log = self.temp / f"node{index}.log"
                    raise WorkbenchError(f"Ray node {index} did not start (log {log}): {tail}")
            time.sleep(0.5)

    def start(self) -> LocalCluster:
        deadline = time.monotonic() + START_TIMEOUT_S
        try:
            self.processes.append(self._start(0))
            self._wait([0], deadline)  # the others join the head's control store
            self.processes += [self._start(i) for i in range(1, len(self.homes))]
            self._wait(list(range(1, len(self.homes))), deadline)
        except BaseException:
            self.stop()
            raise
        return self

    def kill(self, index: int) -> None:
        """SIGKILL every process of node `index` (its raylet, object store, workers): the node dies at once."""
        session = self.processes[index].pid
        for _ in range(20):  # a dying raylet may still be forking a worker: sweep until nothing is left
            pids = session_processes(session)
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.1)
        self.processes[index].wait()

    def stop(self) -> None:
        """Kill every node, workers included, the head last; remove Ray's temporary folder."""
        for index in reversed(range(len(self.processes))):
            self.kill(index)
        shutil.rmtree(self.temp, ignore_errors=True)

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
