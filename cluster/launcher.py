"""Reaching a cluster started by Ray's cluster launcher (`ray up cluster/aws.yaml`).

The head's Jobs API is never public: `ray dashboard CLUSTER_YAML` forwards it over SSH to a local port. These
helpers read the dashboard port and the local token file from the launcher YAML and hold such a tunnel open.
"""
from __future__ import annotations

import contextlib
import os
import shlex
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from chorus.errors import InputError
from chorus.trainer.config import read_yaml


def cluster_settings(cluster_yaml: str | Path) -> dict:
    """{"dashboard_port": int, "token_path": str | None} from a cluster-launcher YAML."""
    cfg = read_yaml(cluster_yaml)
    port = 8265
    for cmd in cfg.get("head_start_ray_commands", []) or []:
        args = shlex.split(cmd)
        if args[:2] == ["ray", "start"]:
            for a in args:
                if a.startswith("--dashboard-port="):
                    port = int(a.split("=", 1)[1])
    env = {}
    for opt in (cfg.get("docker", {}) or {}).get("run_options", []) or []:
        parts = shlex.split(opt)
        if len(parts) == 2 and parts[0] in ("-e", "--env") and "=" in parts[1]:
            key, value = parts[1].split("=", 1)
            env[key] = value
    token, remote = None, env.get("RAY_AUTH_TOKEN_PATH")
    if remote:
        remote_dir, name = remote.rsplit("/", 1)
        for dst, src in (cfg.get("file_mounts", {}) or {}).items():
            if dst.rstrip("/") == remote_dir:
                token = str(Path(src) / name)
            elif dst == remote:
                token = src
    return {"dashboard_port": port, "token_path": token}


def free_port() -> int:
    """A free loopback port (free now: another process may take it before it is used)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def dashboard_tunnel(cluster_yaml: str | Path, timeout: float = 60) -> Iterator[str]:
    """`ray dashboard` (an SSH tunnel to the head) on a free local port; yields the local Jobs API address."""
    settings = cluster_settings(cluster_yaml)
    local = free_port()
    proc = subprocess.Popen(["ray", "dashboard", "--port", str(local), "--remote-port",
                             str(settings["dashboard_port"]), str(cluster_yaml)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.time() + timeout
        while True:
            if proc.poll() is not None:
                err = (proc.stderr.read() or "").strip().splitlines()
                raise InputError(f"{cluster_yaml}: `ray dashboard` exited ({err[-1] if err else proc.returncode}); "
                                 f"is the cluster up (ray up {cluster_yaml})?")
            try:
                socket.create_connection(("127.0.0.1", local), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline:
                    raise InputError(f"{cluster_yaml}: no tunnel to the head's dashboard after {timeout:.0f} s") \
                        from None
                time.sleep(0.5)
        if settings["token_path"] and not (os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")):
            os.environ["RAY_AUTH_TOKEN_PATH"] = settings["token_path"]
        yield f"http://127.0.0.1:{local}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
