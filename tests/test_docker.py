"""The containers end to end: the image, a docker compose Ray cluster with token auth, and the main job.

Every test here needs a Docker engine (marker `docker`); without one they all skip and say why. The image is built
once per session through docker/build.sh, the script the README uses (layers cache, so a warm build takes
seconds). The cluster gets its own compose project name, results dir, token and dashboard port, and is always
brought down with its volumes, even when a test fails.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parents[1]
IMAGE = os.environ.get("CHORUS_TEST_IMAGE", "chorus:cpu")
WORKERS = 2


def _engine_problem() -> str | None:
    """Why no Docker engine can be used, or None when one answers."""
    if shutil.which("docker") is None:
        return "no `docker` CLI on PATH"
    try:
        out = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True,
                             timeout=30)
    except subprocess.TimeoutExpired:
        return "`docker info` timed out: the Docker engine does not answer"
    if out.returncode != 0 or not out.stdout.strip():
        return f"no Docker engine reachable: {out.stderr.strip()[:200]}"
    if subprocess.run(["bash", str(REPO / "docker/compose.sh"), "version"], capture_output=True).returncode != 0:
        return "neither `docker compose` nor `docker-compose` is installed"
    return None


_PROBLEM = _engine_problem()
if _PROBLEM:
    pytestmark = [pytest.mark.docker, pytest.mark.skip(reason=f"Docker tests skipped: {_PROBLEM}")]


def run(cmd: list[str], *, env: dict | None = None, timeout: float = 600, check: bool = True,
        cwd: Path = REPO) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if check and out.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {out.returncode}\n--- stdout\n{out.stdout[-4000:]}\n"
                             f"--- stderr\n{out.stderr[-4000:]}")
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def expected_uid_gid() -> tuple[int, int]:
    """The user the containers run as: the invoking user, or 1000 when that is root (see docker/ids.sh)."""
    out = run(["bash", "-c", "source docker/ids.sh && echo $CHORUS_UID $CHORUS_GID"])
    uid, gid = out.stdout.split()
    return int(uid), int(gid)


# ------------------------------------------------------------------------------------------------- the image
@pytest.fixture(scope="session")
def image() -> str:
    start = time.monotonic()
    run(["bash", "docker/build.sh"], env={**os.environ, "CHORUS_IMAGE": IMAGE}, timeout=3600)
    print(f"\nimage {IMAGE} built in {time.monotonic() - start:.1f} s")
    return IMAGE


def test_image_runs_as_invoking_user_with_pinned_versions(image):
    uid, gid = expected_uid_gid()
    script = ("import os, tensorflow, ray, tf_keras, trainer.config as c; "
              "print(os.getuid(), os.getgid(), tensorflow.__version__, ray.__version__, tf_keras.__version__, "
              "c.CONFIG_DIR, (c.CONFIG_DIR / 'default.yaml').is_file(), os.environ['TF_USE_LEGACY_KERAS'], "
              "os.access('/app', os.W_OK), os.path.realpath('/app/.cache'))")
    out = run(["docker", "run", "--rm", image, "python", "-c", script]).stdout.split()
    assert out[:2] == [str(uid), str(gid)] and uid != 0
    pins = dict(line.split("==") for line in (REPO / "constraints.txt").read_text().split() if "==" in line)
    assert out[2:5] == [pins["tensorflow"], pins["ray"], pins["tf_keras"]]
    # configs/ next to the packages; /app writable (runs/); the dataset cache on the shared volume
    assert out[5:] == ["/app/configs", "True", "1", "True", "/shared/.cache"]
    freeze = run(["docker", "run", "--rm", image, "cat", "/opt/venv/pip-freeze.txt"]).stdout
    frozen = {k.lower().replace("_", "-"): v for k, v in (line.split("==") for line in freeze.split() if "==" in line)}
    for name, version in pins.items():
        if name.lower().replace("_", "-") in frozen:
            assert frozen[name.lower().replace("_", "-")] == version, name


def test_code_only_change_rebuilds_from_cache(image, tmp_path):
    """Dependencies come before code: a changed source file rebuilds only the last layers."""
    ctx = tmp_path / "repo"
    ignore = shutil.ignore_patterns(".git", ".venv", ".cache", ".secrets", ".whl", "runs", "results", "__pycache__",
                                    "*.egg-info", ".pytest_cache", ".ruff_cache")
    shutil.copytree(REPO, ctx, ignore=ignore, symlinks=True)
    (ctx / "trainer" / "_rebuild_probe.py").write_text(f"PROBE = {uuid.uuid4().hex!r}\n")
    tag = f"chorus-rebuild-test:{uuid.uuid4().hex[:8]}"
    start = time.monotonic()
    try:
        out = run(["bash", str(ctx / "docker/build.sh")], env={**os.environ, "CHORUS_IMAGE": tag}, timeout=900)
        seconds = time.monotonic() - start
        print(f"\ncode-only rebuild: {seconds:.1f} s")
        log = out.stdout + out.stderr
        # The classic builder says "Using cache" per step, BuildKit says CACHED: the pip install step must be one.
        step = log[log.index("pip install --no-cache-dir -r /tmp/pins/requirements.txt"):][:400]
        assert "Using cache" in step or "CACHED" in log, step
        assert seconds < 120
        run(["docker", "run", "--rm", tag, "python", "-c", "import trainer._rebuild_probe"])
    finally:
        run(["docker", "rmi", tag], check=False)


# ----------------------------------------------------------------------------------------------- the cluster
@dataclass
class Cluster:
    project: str
    env: dict
    port: int
    token: str
    results: Path
    compose: list[str] = field(default_factory=list)

    def __call__(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
        return run([*self.compose, *args], env=self.env, timeout=timeout, check=check)

    def containers(self, service: str) -> list[str]:
        return self("ps", "-q", service).stdout.split()

    def inspect(self, cid: str) -> dict:
        return json.loads(run(["docker", "inspect", cid]).stdout)[0]

    def api(self, path: str, *, token: str | None = "", data: dict | None = None) -> tuple[int, str]:
        """Call the dashboard / Jobs API from the host. token "" means the cluster's token, None means none."""
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}",
                                     data=json.dumps(data).encode() if data is not None else None,
                                     method="POST" if data is not None else "GET")
        if token is not None:
            req.add_header("Authorization", f"Bearer {token or self.token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def wait_healthy(self, service: str, n: int, timeout: float = 180) -> float:
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            ids = self.containers(service)
            if len(ids) == n and all(self.inspect(c)["State"].get("Health", {}).get("Status") == "healthy"
                                     for c in ids):
                return time.monotonic() - start
            time.sleep(1)
        raise AssertionError(f"{n} x {service} not healthy after {timeout} s:\n{self('ps', check=False).stdout}")

    def alive_nodes(self) -> int:
        head = self.containers("ray-head")[0]
        code = "import ray; ray.init(); print('NODES', sum(n['Alive'] for n in ray.nodes()))"
        out = run(["docker", "exec", head, "python", "-c", code], timeout=120).stdout
        return int(out.split("NODES")[-1].split()[0])

    def submit(self, entrypoint: str, timeout: float = 300) -> tuple[str, str]:
        """Submit a job through the Jobs REST API; wait for it; return (status, logs)."""
        code, body = self.api("/api/jobs/", data={"entrypoint": entrypoint})
        assert code == 200, body
        job = json.loads(body)["submission_id"]
        start = time.monotonic()
        status = "PENDING"
        while time.monotonic() - start < timeout:
            status = json.loads(self.api(f"/api/jobs/{job}")[1])["status"]
            if status in ("SUCCEEDED", "FAILED", "STOPPED"):
                break
            time.sleep(1)
        logs = json.loads(self.api(f"/api/jobs/{job}/logs")[1])["logs"]
        return status, logs


@pytest.fixture(scope="module")
def cluster(image, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cluster")
    project = f"chorustest{uuid.uuid4().hex[:10]}"
    port = free_port()
    env = {**os.environ, "COMPOSE_PROJECT_NAME": project, "CHORUS_IMAGE": image, "CHORUS_DASHBOARD_PORT": str(port),
           "CHORUS_RESULTS_DIR": str(tmp / "results"), "CHORUS_SECRETS_DIR": str(tmp / "secrets"),
           "CHORUS_DATA_DIR": str(tmp / "data")}
    uid, gid = expected_uid_gid()
    for d in ("results", "data"):
        (tmp / d).mkdir()
        if os.getuid() == 0:
            os.chown(tmp / d, uid, gid)
    # tmp_path's parents are 0700 for root only: the container user must be able to reach the bind mounts.
    for p in [tmp, *tmp.parents]:
        if p == Path("/tmp") or p == Path("/"):
            break
        p.chmod(p.stat().st_mode | 0o011)
    token_path = run(["bash", "docker/token.sh"], env=env).stdout.strip()
    c = Cluster(project, env, port, Path(token_path).read_text().strip(), tmp / "results",
                compose=["bash", str(REPO / "docker/compose.sh"), "-f", str(REPO / "docker-compose.yml")])
    try:
        start = time.monotonic()
        c("up", "-d", "--scale", f"ray-worker={WORKERS}", "ray-head", "ray-worker")
        c.wait_healthy("ray-worker", WORKERS)
        print(f"\ncluster ({WORKERS} workers) healthy {time.monotonic() - start:.1f} s after `up`")
        yield c
    finally:
        logs = c("logs", "--tail=30", check=False).stdout
        c("down", "-v", "--remove-orphans", "--timeout", "10", check=False, timeout=300)
        # Belt and braces: nothing of this project may survive, whatever compose did.
        for kind, flags in (("container", ["-a"]), ("volume", []), ("network", [])):
            left = run(["docker", kind, "ls", "-q", *flags, "--filter", f"label=com.docker.compose.project={project}"],
                       check=False).stdout.split()
            if left:
                run(["docker", kind, "rm", *(["-f"] if kind != "network" else []), *left], check=False)
        if os.environ.get("CHORUS_TEST_SHOW_LOGS"):
            print(logs)


def test_cluster_has_head_and_two_workers(cluster):
    assert len(cluster.containers("ray-head")) == 1
    assert len(cluster.containers("ray-worker")) == WORKERS
    assert cluster.alive_nodes() == 1 + WORKERS


def test_only_dashboard_port_published_on_loopback(cluster):
    published = []
    for service in ("ray-head", "ray-worker"):
        for cid in cluster.containers(service):
            ports = cluster.inspect(cid)["NetworkSettings"]["Ports"] or {}
            for container_port, bindings in ports.items():
                for b in bindings or []:
                    published.append((service, container_port, b["HostIp"], b["HostPort"]))
                if container_port.split("/")[0] in ("6379", "10001"):
                    assert not bindings, f"{service} publishes {container_port}: {bindings}"
    assert published == [("ray-head", "8265/tcp", "127.0.0.1", str(cluster.port))], published
    # Nothing answers on a non-loopback address of this host.
    ip = socket.gethostbyname(socket.gethostname())
    if not ip.startswith("127."):
        with socket.socket() as s:
            s.settimeout(3)
            assert s.connect_ex((ip, cluster.port)) != 0


def test_jobs_api_refuses_calls_without_the_token(cluster):
    code, body = cluster.api("/api/jobs/", token=None)
    assert code == 401, body
    code, body = cluster.api("/api/jobs/", token="not-the-token")
    assert code == 403, body
    code, body = cluster.api("/api/jobs/")
    assert code == 200, body
    # Submitting is refused too, and nothing runs.
    code, _ = cluster.api("/api/jobs/", token=None, data={"entrypoint": "echo pwned"})
    assert code == 401
    assert "pwned" not in cluster.api("/api/jobs/")[1]


JOB = r"""python -c '
import os, socket, ray
ray.init()
@ray.remote(num_cpus=1)
def where():
    import tensorflow as tf
    return socket.gethostname(), tf.__version__, float(tf.reduce_sum(tf.ones((2, 2))))
print("WORKERS", sorted(set(ray.get([where.remote() for _ in range(8)]))))
os.makedirs("/results/probe", exist_ok=True)
open("/results/probe/written-by-driver.txt", "w").write(socket.gethostname())
'"""


def test_job_runs_tensorflow_on_both_workers_and_writes_results_as_the_user(cluster):
    status, logs = cluster.submit(JOB)
    assert status == "SUCCEEDED", logs
    line = next(x for x in logs.splitlines() if x.startswith("WORKERS"))
    placed = eval(line[len("WORKERS"):])  # noqa: S307 - our own job's output
    worker_hosts = {cluster.inspect(c)["Config"]["Hostname"] for c in cluster.containers("ray-worker")}
    assert {host for host, _, _ in placed} == worker_hosts  # both workers, never the head (it has 0 CPUs)
    assert {(tf, total) for _, tf, total in placed} == {("2.21.0", 4.0)}
    probe = cluster.results / "probe" / "written-by-driver.txt"
    uid, gid = expected_uid_gid()
    assert probe.read_text() == "ray-head"
    for p in (probe, probe.parent):
        assert (p.stat().st_uid, p.stat().st_gid) == (uid, gid)


def test_worker_that_crashes_restarts_and_rejoins(cluster):
    victim = cluster.containers("ray-worker")[0]
    started = cluster.inspect(victim)["State"]["StartedAt"]
    # Kill the worker's Ray processes from inside: `ray start --block` exits, as after an OOM kill of the raylet,
    # and `restart: unless-stopped` brings the container back. (A `docker kill` counts as a manual stop: Docker
    # leaves that container down.)
    run(["docker", "exec", victim, "ray", "stop", "--force"], check=False)
    start = time.monotonic()
    while cluster.inspect(victim)["State"]["StartedAt"] == started:
        assert time.monotonic() - start < 90, "the worker was not restarted"
        time.sleep(1)
    cluster.wait_healthy("ray-worker", WORKERS)
    start = time.monotonic()
    while cluster.alive_nodes() != 1 + WORKERS:
        assert time.monotonic() - start < 60
        time.sleep(2)


def test_scale_workers_up_and_down(cluster):
    cluster("up", "-d", "--scale", f"ray-worker={WORKERS + 1}", "ray-worker")
    cluster.wait_healthy("ray-worker", WORKERS + 1)
    start = time.monotonic()
    while cluster.alive_nodes() != 2 + WORKERS:
        assert time.monotonic() - start < 60
        time.sleep(2)
    cluster("up", "-d", "--scale", f"ray-worker={WORKERS}", "ray-worker")
    assert len(cluster.containers("ray-worker")) == WORKERS


# ------------------------------------------------------------------------- the main job: a search end to end
@pytest.mark.slow
@pytest.mark.skipif(not (REPO / "cluster" / "search.py").exists(), reason="needs chorus search (cluster/search.py)")
def test_tiny_search_survives_a_killed_worker(cluster):
    """The one-shot `search` service, as `scripts/up.sh` runs it, on a tiny search; one worker is killed midway."""
    experiment = f"docker-e2e-{uuid.uuid4().hex[:6]}"
    # configs/search.yaml (4 trials over configs/tiny.yaml) made shorter, with frequent checkpoints.
    job = ("chorus submit --address http://ray-head:8265 -- search configs/search.yaml"
           f" --set experiment={experiment} --set storage_path=/shared/ray_results --set results_dir=/results"
           " --set train.steps=24 --set train.checkpoint_every=6 --set train.eval_every=6"
           " --set train.sample_every=12 --set train.log_every=6")
    saved = cluster.env
    cluster.env = {**saved, "CHORUS_JOB": job}
    try:
        start = time.monotonic()
        cluster("up", "-d", "--scale", f"ray-worker={WORKERS}", "search")
        search = cluster.containers("search")[0]
        # Once a trial has reported a checkpoint to the shared storage, kill a worker: its trial must resume there.
        head = cluster.containers("ray-head")[0]
        find = f"find /shared/ray_results/{experiment} -name 'checkpoint_*' -type d 2>/dev/null | head -1"
        while not run(["docker", "exec", head, "bash", "-c", find], check=False).stdout.strip():
            assert cluster.inspect(search)["State"]["Running"], cluster("logs", "search", check=False).stdout[-6000:]
            assert time.monotonic() - start < 1200, "no checkpoint within 20 minutes"
            time.sleep(2)
        run(["docker", "kill", cluster.containers("ray-worker")[-1]])
        rc = int(run(["docker", "wait", search], timeout=2400).stdout.strip())
        logs = cluster("logs", "search", check=False).stdout
        print(f"\ntiny search with a killed worker: {time.monotonic() - start:.0f} s, exit {rc}")
        assert rc == 0, logs[-8000:]
    finally:
        cluster.env = saved
        cluster("up", "-d", "--scale", f"ray-worker={WORKERS}", "ray-worker", check=False)  # the killed one back
    out = cluster.results / experiment
    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert len(rows) == 4, rows
    assert all(r["status"] == "TERMINATED" and r["step"] == "24" for r in rows), rows
    # The trial on the killed worker failed once and resumed from a checkpoint, not from step 0.
    retried = [r for r in rows if int(r["failures"]) > 0]
    assert retried, rows
    assert all(int(r["resumed_from_step"]) > 0 for r in retried), rows
    for name in ("trials.md", "report.html", "best"):
        assert (out / name).exists(), name
    uid, gid = expected_uid_gid()
    assert all((p.stat().st_uid, p.stat().st_gid) == (uid, gid) for p in [out, *out.rglob("*")])
    # The best run directory loads with `chorus generate`.
    run(["docker", "run", "--rm", "-v", f"{out}:/out:ro", cluster.env["CHORUS_IMAGE"], "chorus", "generate",
         "--run", "/out/best", "--num", "1", "--out", "/tmp/generated"], timeout=600)
