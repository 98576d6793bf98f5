"""The containers end to end: the image, a docker compose Ray cluster with token auth, and the main job.

Every test here needs a Docker engine (marker `docker`); without one they skip and say why, except under CI=true,
where they fail. The image is built once per session through docker/build.sh, the script the README uses (layers
cache, so a warm build takes seconds). One cluster is shared by the module: it gets its own compose project name,
results dir, token and ports, and is always brought down with its volumes, even when a test fails.
"""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from tests_support import free_port

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parents[1]
IMAGE = os.environ.get("CHORUS_TEST_IMAGE", "chorus:cpu")
WORKERS = 2
SERVICES = ("ray-head", "ray-worker", "watchdog", "tensorboard")  # what `scripts/up.sh --cluster-only` starts


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


@pytest.fixture(scope="session", autouse=True)
def docker_engine() -> None:
    """No engine: a skip that says why, or under CI=true (where a skipped check is a failed one) a failure."""
    if _PROBLEM:
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(f"CI=true and the Docker tests cannot run: {_PROBLEM}")
        pytest.skip(f"Docker tests skipped: {_PROBLEM}")


def run(cmd: list[str], *, env: dict | None = None, timeout: float = 600, check: bool = True,
        cwd: Path = REPO) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if check and out.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {out.returncode}\n--- stdout\n{out.stdout[-4000:]}\n"
                             f"--- stderr\n{out.stderr[-4000:]}")
    return out


def expected_uid_gid() -> tuple[int, int]:
    """The user the containers run as: the invoking user, or 1000 when that is root (see docker/ids.sh)."""
    out = run(["bash", "-c", "source docker/ids.sh && echo $CHORUS_UID $CHORUS_GID"])
    uid, gid = out.stdout.split()
    return int(uid), int(gid)


# ------------------------------------------------------------------------------------------------- the image
@pytest.fixture(scope="session")
def image(docker_engine) -> str:
    start = time.monotonic()
    run(["bash", "docker/build.sh"], env={**os.environ, "CHORUS_IMAGE": IMAGE}, timeout=3600)
    print(f"\nimage {IMAGE} built in {time.monotonic() - start:.1f} s")
    return IMAGE


def test_image_runs_as_invoking_user_with_pinned_versions(image):
    uid, gid = expected_uid_gid()
    script = ("import os, tensorflow, ray, tf_keras, chorus.trainer.config as c; "
              "print(os.getuid(), os.getgid(), tensorflow.__version__, ray.__version__, tf_keras.__version__, "
              "c.CONFIG_DIR, (c.CONFIG_DIR / 'default.yaml').is_file(), os.environ['TF_USE_LEGACY_KERAS'], "
              "os.access('/app', os.W_OK), os.path.realpath('/app/.cache'))")
    out = run(["docker", "run", "--rm", image, "python", "-c", script]).stdout.split()
    assert out[:2] == [str(uid), str(gid)] and uid != 0
    pins = dict(line.split("==") for line in (REPO / "constraints.txt").read_text().split() if "==" in line)
    assert out[2:5] == [pins["tensorflow"], pins["ray"], pins["tf_keras"]]
    # the presets are package data of the installed wheel (no source tree in the image); /app writable (runs/);
    # the dataset cache on the shared volume
    assert out[5:] == ["/opt/venv/lib/python3.11/site-packages/chorus/configs", "True", "1", "True",
                       "/shared/.cache"]
    freeze = run(["docker", "run", "--rm", image, "cat", "/opt/venv/pip-freeze.txt"]).stdout
    frozen = {k.lower().replace("_", "-"): v for k, v in (line.split("==") for line in freeze.split() if "==" in line)}
    for name, version in pins.items():
        if name.lower().replace("_", "-") in frozen:
            assert frozen[name.lower().replace("_", "-")] == version, name


def test_image_renders_audio_with_fluidsynth(image):
    """In the image, samples are rendered by FluidSynth with the General MIDI soundfont (the `auto` choice)."""
    script = ("import numpy as np; from chorus.data.midi_io import write_midi; from chorus.data import audio; "
              "r = np.zeros((32, 128, 4), bool); r[:, [72, 67, 60, 48], range(4)] = True; "
              "write_midi(r, '/tmp/s.mid', steps_per_beat=4, tempo=100.0, programs=[0, 40, 42, 32], "
              "track_names=list('satb')); assert audio.resolve_mode('auto') == 'fluidsynth'; "
              "audio.render_midi('/tmp/s.mid', '/tmp/s.wav'); a, sr = audio.read_wav('/tmp/s.wav'); "
              "print(sr, len(a) / sr, float(abs(a).max()))")
    sr, seconds, peak = run(["docker", "run", "--rm", image, "python", "-c", script]).stdout.split()[-3:]
    assert sr == "22050" and 4.8 <= float(seconds) <= 8.0 and float(peak) > 0.05


def test_code_only_change_rebuilds_from_cache(image, tmp_path):
    """Dependencies come before code: a changed source file rebuilds only the last layers."""
    ctx = tmp_path / "repo"
    ignore = shutil.ignore_patterns(".git", ".venv", ".cache", ".secrets", ".whl", "runs", "results", "__pycache__",
                                    "*.egg-info", ".pytest_cache", ".ruff_cache")
    shutil.copytree(REPO, ctx, ignore=ignore, symlinks=True)
    (ctx / "trainer" / "_rebuild_probe.py").write_text(f"PROBE = {uuid.uuid4().hex!r}\n")
    # a fresh tag with no image of its own: the dependency layers can only come from the build cache
    tag = f"chorus-rebuild-test:{uuid.uuid4().hex[:8]}"
    start = time.monotonic()
    try:
        out = run(["bash", str(ctx / "docker/build.sh")], env={**os.environ, "CHORUS_IMAGE": tag}, timeout=900)
        seconds = time.monotonic() - start
        print(f"\ncode-only rebuild: {seconds:.1f} s")
        log = out.stdout + out.stderr
        # Each of the dependency steps (the venv, then the pinned requirements) must be a cache hit: the classic
        # builder prints "Using cache" right after the step, BuildKit prints "CACHED" on the step's own line.
        for step in ("python3 -m venv /opt/venv", "pip install --no-cache-dir -r /tmp/pins/requirements-image.txt"):
            assert step in log, f"build log has no step running {step!r}:\n{log[-3000:]}"
            block = _build_step(log, step)
            assert "Using cache" in block or "CACHED" in block, f"{step!r} was rebuilt:\n{block}"
        assert "Using cache" not in _build_step(log, "COPY trainer /src/trainer")  # the code layer did rebuild
        run(["docker", "run", "--rm", tag, "python", "-c", "import chorus.trainer._rebuild_probe"])
    finally:
        run(["docker", "rmi", tag], check=False)


def _build_step(log: str, needle: str) -> str:
    """The build log of the step whose command contains needle: from its "Step N/M" (classic) or "#N" (BuildKit)
    line up to the next step."""
    lines = log.splitlines()
    at = next(i for i, line in enumerate(lines) if needle in line)
    start = max(i for i in range(at + 1) if lines[i].startswith(("Step ", "#")) or i == 0)
    end = next((i for i in range(at + 1, len(lines)) if lines[i].startswith("Step ")), len(lines))
    return "\n".join(lines[start:end])


# ----------------------------------------------------------------------------------------------- the cluster
@dataclass
class Cluster:
    project: str
    env: dict
    port: int
    token: str
    results: Path
    token_path: str = ""
    tensorboard_port: int = 0
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

    def wait_nodes(self, n: int, timeout: float = 180) -> float:
        start = time.monotonic()
        while (alive := self.alive_nodes()) != n:
            assert time.monotonic() - start < timeout, f"{alive} Ray nodes alive after {timeout} s, expected {n}"
            time.sleep(2)
        return time.monotonic() - start

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
    port, tb_port = free_port(), free_port()
    sock = os.environ.get("CHORUS_DOCKER_SOCKET", "/var/run/docker.sock")
    env = {**os.environ, "COMPOSE_PROJECT_NAME": project, "CHORUS_IMAGE": image, "CHORUS_DASHBOARD_PORT": str(port),
           "CHORUS_TENSORBOARD_PORT": str(tb_port), "CHORUS_DOCKER_GID": str(os.stat(sock).st_gid),
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
    c = Cluster(project, env, port, Path(token_path).read_text().strip(), tmp / "results", token_path=token_path,
                tensorboard_port=tb_port,
                compose=["bash", str(REPO / "docker/compose.sh"), "-f", str(REPO / "docker-compose.yml")])
    try:
        start = time.monotonic()
        c("up", "-d", "--scale", f"ray-worker={WORKERS}", *SERVICES)
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


def test_only_dashboard_and_tensorboard_published_on_loopback(cluster):
    published = []
    for service in SERVICES:
        for cid in cluster.containers(service):
            ports = cluster.inspect(cid)["NetworkSettings"]["Ports"] or {}
            for container_port, bindings in ports.items():
                for b in bindings or []:
                    published.append((service, container_port, b["HostIp"], b["HostPort"]))
                if container_port.split("/")[0] in ("6379", "10001"):
                    assert not bindings, f"{service} publishes {container_port}: {bindings}"
    assert sorted(published) == [("ray-head", "8265/tcp", "127.0.0.1", str(cluster.port)),
                                 ("tensorboard", "6006/tcp", "127.0.0.1", str(cluster.tensorboard_port))], published
    # Nothing answers on a non-loopback address of this host.
    ip = socket.gethostbyname(socket.gethostname())
    if not ip.startswith("127."):
        for port in (cluster.port, cluster.tensorboard_port):
            with socket.socket() as s:
                s.settimeout(3)
                assert s.connect_ex((ip, port)) != 0


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


def test_a_killed_worker_comes_back_and_rejoins(cluster):
    """`docker kill` (SIGKILL, as the OOM killer): Docker 20.10 restarts no such container; the watchdog does."""
    victim = cluster.containers("ray-worker")[0]
    started = cluster.inspect(victim)["State"]["StartedAt"]
    run(["docker", "kill", victim])
    start = time.monotonic()
    while cluster.inspect(victim)["State"]["StartedAt"] == started:
        assert time.monotonic() - start < 90, "the killed worker was not restarted:\n" + cluster(
            "logs", "watchdog", check=False).stdout[-3000:]
        time.sleep(1)
    cluster.wait_healthy("ray-worker", WORKERS)
    cluster.wait_nodes(1 + WORKERS)
    # a stop by hand is respected: no restart
    run(["docker", "stop", "-t", "10", victim])
    # "Not restarted" has no event to wait for: watch it stay down for longer than a wrong restart would take (the
    # restart policy acts at once, the watchdog 2 s after the death), and fail as soon as it is running again.
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        assert not cluster.inspect(victim)["State"]["Running"]
        time.sleep(0.5)
    cluster("up", "-d", "--scale", f"ray-worker={WORKERS}", "ray-worker")
    cluster.wait_healthy("ray-worker", WORKERS)


def test_scale_workers_up_and_down(cluster):
    cluster("up", "-d", "--scale", f"ray-worker={WORKERS + 1}", "ray-worker")
    cluster.wait_healthy("ray-worker", WORKERS + 1)
    cluster.wait_nodes(2 + WORKERS)
    cluster("up", "-d", "--scale", f"ray-worker={WORKERS}", "ray-worker")
    assert len(cluster.containers("ray-worker")) == WORKERS


# ------------------------------------------------------------------------- the main job: a search end to end
def host_chorus(cluster: Cluster, *args: str, timeout: float = 2400) -> subprocess.Popen:
    """`chorus` from the host, as the README and configs/search.yaml say, with the cluster's token."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "CHORUS_"))}
    env["RAY_AUTH_TOKEN_PATH"] = cluster.token_path
    return subprocess.Popen([sys.executable, "-m", "chorus", *args], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def test_storage_the_workers_cannot_see_fails_once_at_start(cluster):
    """A storage_path local to the head: one line saying what to set, exit 2, and no trial ever starts."""
    job = host_chorus(cluster, "submit", "--address", f"http://127.0.0.1:{cluster.port}", "--", "search",
                      "configs/search.yaml", "--set", "experiment=not-shared", "--set", "storage_path=/tmp/not-shared")
    out, _ = job.communicate(timeout=600)
    assert job.returncode == 2, out[-4000:]
    lines = [x for x in out.splitlines() if "is not shared" in x]  # the job's log, maybe echoed in its status
    assert lines, out[-4000:]
    line = lines[0]
    assert "storage_path: /tmp/not-shared is not shared" in line and "CHORUS_STORAGE_PATH" in line, line
    assert "chorus_trial" not in out and "Trial status" not in out, out[-4000:]


# the fault tests' search: 2 trials of 12 steps on small batches (they test recovery, not the model)
LIGHT = ["--set", "num_samples=2", "--set", "train.steps=12", "--set", "train.batch_size=16", "--set",
         "eval.num_samples=32", "--set", "train.checkpoint_every=6", "--set", "train.eval_every=6", "--set",
         "train.sample_every=6", "--set", "train.log_every=6"]
SHORT = ["--set", "train.steps=24", "--set", "train.checkpoint_every=6", "--set", "train.eval_every=6",
         "--set", "train.sample_every=6", "--set", "train.log_every=6", "--set", "train.batch_size=16",
         "--set", "eval.num_samples=32"]


@pytest.mark.slow
def test_submit_as_the_readme_says_survives_a_worker_cut_off_from_the_network(cluster):
    """`chorus submit --address http://127.0.0.1:8265 -- search configs/search.yaml` from the host, verbatim but for
    the port and a shorter training: storage and results come from the nodes' defaults. Midway, a worker is cut off
    the network (`docker network disconnect`) for longer than Ray's health check allows: the head marks it dead and
    Tune retries its trial from a checkpoint on the other worker. Reconnected, the worker's Ray exits (it was
    declared dead), its container restarts and it rejoins. TensorBoard lists every trial. (A SIGKILLed worker is
    brought back by the watchdog: test_a_killed_worker_comes_back_and_rejoins.)"""
    experiment = f"docker-e2e-{uuid.uuid4().hex[:6]}"
    start = time.monotonic()
    job = host_chorus(cluster, "submit", "--address", f"http://127.0.0.1:{cluster.port}", "--", "search",
                      "configs/search.yaml", "--set", f"experiment={experiment}", *SHORT)
    # both first trials (one per worker) have a complete checkpoint, reported to Tune a moment later
    while len(newest_checkpoints(cluster, experiment)) < 2:
        assert job.poll() is None, job.stdout.read()[-6000:]
        assert time.monotonic() - start < 1200, "no checkpoints within 20 minutes"
        time.sleep(2)
    time.sleep(2)
    victim = cluster.containers("ray-worker")[-1]
    network = next(iter(cluster.inspect(victim)["NetworkSettings"]["Networks"]))

    def partition() -> None:  # in the background: the job's output keeps being read meanwhile
        run(["docker", "network", "disconnect", network, victim])
        try:
            time.sleep(75)  # Ray marks a node dead after about 30 s of failed health checks
        finally:
            run(["docker", "network", "connect", network, victim])

    cut = threading.Thread(target=partition)
    cut.start()
    out, _ = job.communicate(timeout=2400)
    cut.join()
    print(f"\ntiny search with a worker cut off: {time.monotonic() - start:.0f} s, exit {job.returncode}")
    assert job.returncode == 0, out[-8000:]
    cluster.wait_healthy("ray-worker", WORKERS, timeout=300)
    cluster.wait_nodes(1 + WORKERS, timeout=300)  # the cut-off worker is back without an `up`

    res = cluster.results / experiment
    rows = list(csv.DictReader((res / "trials.csv").open()))
    assert len(rows) == 4, rows
    assert all(r["status"] == "TERMINATED" and r["step"] == "24" for r in rows), rows
    # The trial on the killed worker failed once and resumed from a checkpoint, not from step 0.
    retried = [r for r in rows if int(r["failures"]) > 0]
    assert retried, rows
    assert all(int(r["resumed_from_step"]) > 0 for r in retried), rows
    for name in ("trials.md", "report.html", "best"):
        assert (res / name).exists(), name
    # Every best sample has a WAV rendered by FluidSynth in the image, and the report plays it.
    report = (res / "report.html").read_text()
    wavs = sorted((res / "samples").glob("*.wav"))
    assert wavs and report.count("<audio") >= 2, (wavs, report[:2000])
    for wav in wavs:
        assert f"samples/{wav.name}" in report, wav
    uid, gid = expected_uid_gid()
    assert all((p.stat().st_uid, p.stat().st_gid) == (uid, gid) for p in [res, *res.rglob("*")])
    # TensorBoard answers on loopback and lists one run per trial of this search.
    runs = {}
    deadline = time.monotonic() + 60
    while len(runs) < 4 and time.monotonic() < deadline:
        with urllib.request.urlopen(f"http://127.0.0.1:{cluster.tensorboard_port}/data/runs", timeout=10) as r:
            runs = {x for x in json.loads(r.read()) if x.startswith(f"{experiment}/tensorboard/")}
        time.sleep(3)
    assert {x.rsplit("/", 1)[-1] for x in runs} == {r["trial_id"] for r in rows}, runs
    # The best run directory loads with `chorus generate`.
    run(["docker", "run", "--rm", "-v", f"{res}:/out:ro", cluster.env["CHORUS_IMAGE"], "chorus", "generate",
         "--run", "/out/best", "--num", "1", "--out", "/tmp/generated"], timeout=600)


@pytest.mark.slow
def test_multi_worker_search_runs_as_the_one_shot_job(cluster):
    """`resources.workers: 2` on 2 workers of 1 CPU: one trial's worker group at a time, no deadlock. Run by the
    one-shot `search` service, as scripts/up.sh does."""
    experiment = f"docker-multi-{uuid.uuid4().hex[:6]}"
    job = ("chorus submit --address http://ray-head:8265 -- search configs/search.yaml"
           f" --set experiment={experiment} --set num_samples=1 --set resources.workers=2 --set train.steps=6"
           " --set train.checkpoint_every=3 --set train.eval_every=3 --set train.sample_every=6"
           " --set train.log_every=3")
    saved = cluster.env
    cluster.env = {**saved, "CHORUS_JOB": job}
    try:
        cluster("up", "-d", "--scale", f"ray-worker={WORKERS}", "search")
        search = cluster.containers("search")[0]
        rc = int(run(["docker", "wait", search], timeout=1800).stdout.strip())
        logs = cluster("logs", "search", check=False).stdout
    finally:
        cluster.env = saved
    assert rc == 0, logs[-8000:]
    rows = list(csv.DictReader((cluster.results / experiment / "trials.csv").open()))
    assert len(rows) == 1 and all(r["status"] == "TERMINATED" and r["step"] == "6" for r in rows), rows


# --------------------------------------------------------------------------------- faults: head, partition
MANIFESTS = r"""python -c '
import glob, json, os, sys
steps = {}
for m in glob.glob(sys.argv[1] + "/*/checkpoint_*/chorus-checkpoint.json"):
    doc = json.load(open(m))
    trial = m.split("/")[-3]
    ok = all(os.path.getsize(os.path.join(os.path.dirname(m), f)) == n for f, n in doc["files"].items()
             if os.path.exists(os.path.join(os.path.dirname(m), f))) and all(
             os.path.exists(os.path.join(os.path.dirname(m), f)) for f in doc["files"])
    if ok:
        steps[trial] = max(steps.get(trial, 0), doc["step"])
print(json.dumps(steps))
' """


def newest_checkpoints(cluster: Cluster, experiment: str) -> dict[str, int]:
    """trial folder -> step of its newest complete checkpoint on the shared volume (read from a worker)."""
    worker = cluster.containers("ray-worker")[0]
    out = run(["docker", "exec", worker, "bash", "-c", MANIFESTS + f"/shared/ray_results/{experiment}"]).stdout
    return json.loads(out.strip().splitlines()[-1])


def wait_for_first_checkpoint(cluster: Cluster, search: str, experiment: str) -> None:
    start = time.monotonic()
    while not newest_checkpoints(cluster, experiment):
        assert cluster.inspect(search)["State"]["Running"], run(["docker", "logs", search], check=False).stderr
        assert time.monotonic() - start < 1200, "no checkpoint within 20 minutes"
        time.sleep(1)


def on_volume(cluster: Cluster, path: str) -> bool:
    worker = cluster.containers("ray-worker")[0]
    return run(["docker", "exec", worker, "test", "-e", path], check=False).returncode == 0


def wait_for_log(cluster: Cluster, cid: str, needle: str, count: int, timeout: float) -> float:
    """Until needle appears count times in the container's log; returns when."""
    start = time.monotonic()
    while True:
        logs = run(["docker", "logs", cid], check=False)
        if (logs.stdout + logs.stderr).count(needle) >= count:
            return time.time()
        state = cluster.inspect(cid)["State"]
        assert state["Running"], f"{needle!r} never came ({count}x):\n{(logs.stdout + logs.stderr)[-6000:]}"
        assert time.monotonic() - start < timeout, f"no {needle!r} ({count}x) in {timeout} s"
        time.sleep(0.5)


def kill_head(cluster: Cluster) -> float:
    """`docker kill` the head (SIGKILL: Docker 20.10 will not restart it; the watchdog must)."""
    head = cluster.containers("ray-head")[0]
    started = cluster.inspect(head)["State"]["StartedAt"]
    run(["docker", "kill", head])
    killed = time.time()
    deadline = time.monotonic() + 90
    while cluster.inspect(head)["State"]["StartedAt"] == started:
        assert time.monotonic() < deadline, "the killed head was not restarted:\n" + cluster(
            "logs", "watchdog", check=False).stdout[-3000:]
        time.sleep(1)
    return killed


def start_search_service(cluster: Cluster, job: str) -> str:
    saved = cluster.env
    cluster.env = {**saved, "CHORUS_JOB": job}
    try:
        cluster("up", "-d", "--scale", f"ray-worker={WORKERS}", "search")
        return cluster.containers("search")[0]
    finally:
        cluster.env = saved


def finish_search_service(cluster: Cluster, cid: str, timeout: float = 1800) -> tuple[int, str]:
    rc = int(run(["docker", "wait", cid], timeout=timeout).stdout.strip())
    logs = run(["docker", "logs", cid], check=False)
    return rc, logs.stdout + logs.stderr


def listing(path: Path) -> list[tuple[str, int]]:
    return sorted((str(p.relative_to(path)), p.stat().st_size) for p in path.rglob("*"))


@pytest.mark.slow
def test_head_killed_in_training_and_in_export_then_the_main_job_runs_again(cluster):
    """The main job's search service, as scripts/up.sh runs it. The head is killed (docker kill) while the trials
    train, and again while the resumed search exports its results; nobody types anything. The search still ends
    with every trial TERMINATED, each resumed from its newest complete checkpoint, and complete results on the
    host. Then the same service runs again on the same volume: a new experiment, `latest` pointing at it, the first
    one untouched. Prints the figures of docs' failure section (benchmarks/head_loss.sh runs this with -s)."""
    experiment = f"docker-headloss-{uuid.uuid4().hex[:6]}"
    # 24 steps: at the first checkpoint (step 6) both trials are far from done when the head dies
    job = ("chorus submit --address http://ray-head:8265 -- search configs/search.yaml"
           f" --set experiment={experiment} " + " ".join(LIGHT) + " --set train.steps=24")
    started = time.time()
    search = start_search_service(cluster, job)
    wait_for_first_checkpoint(cluster, search, experiment)
    killed = kill_head(cluster)
    resumed = wait_for_log(cluster, search, "chorus: head lost at", 1, 900)
    # a trial's old process can outlive the head by some seconds and still write a checkpoint, so this is a floor
    at_kill = newest_checkpoints(cluster, experiment)
    wait_for_log(cluster, search, "unfinished trial(s) continue from their newest complete checkpoint", 1, 900)
    logs = run(["docker", "logs", search], check=False)
    plan = {m[0]: int(m[1]) for m in re.findall(r"chorus: resume: trial (\S+): continues from step (\d+)",
                                                 logs.stdout + logs.stderr)}
    at_resume = newest_checkpoints(cluster, experiment)
    # a trial restored from its checkpoint says so when it starts training again
    training_again = wait_for_log(cluster, search, "chorus: resuming at step", 1, 900)
    # second kill: while the resumed search exports, once its staging folder (written whole, then swapped in) is there
    start = time.monotonic()
    while not list(cluster.results.glob(f".{experiment}.*-partial")):
        assert cluster.inspect(search)["State"]["Running"], run(["docker", "logs", search], check=False).stderr
        assert time.monotonic() - start < 1200, "the search did not start exporting"
        time.sleep(0.1)
    kill_head(cluster)
    assert not on_volume(cluster, f"/shared/ray_results/{experiment}/chorus-done.json"), "export had finished"
    rc, logs = finish_search_service(cluster, search)
    first_wall = time.time() - started
    assert rc == 0, logs[-8000:]
    assert logs.count("chorus: head lost at") == 2 and "resumed at" in logs, logs[-8000:]
    cluster.wait_healthy("ray-worker", WORKERS)
    cluster.wait_nodes(1 + WORKERS)

    res = cluster.results / experiment
    rows = {r["trial_id"]: r for r in csv.DictReader((res / "trials.csv").open())}
    assert len(rows) == 2 and all(r["status"] == "TERMINATED" and r["step"] == "24" for r in rows.values()), rows
    redone = {}
    for folder, step in at_kill.items():
        tid, row = next((tid, r) for tid, r in rows.items() if tid in folder)
        if step < 24:  # unfinished at the kill: the resumed driver chose its newest complete checkpoint, not earlier
            assert tid in plan and step <= plan[tid] <= at_resume[folder], (folder, step, plan, at_resume)
            assert int(row["resumed_from_step"]) == plan[tid], (folder, plan, row)
        redone[tid] = int(row["resumed_from_step"])
    for name in ("trials.md", "report.html", "best/config.yaml", "search.json"):
        assert (res / name).exists(), name
    assert sorted(p.name for p in cluster.results.iterdir() if p.name.endswith("-partial")) == []
    assert os.readlink(cluster.results / "latest") == experiment
    assert {r["trial_id"] for r in csv.DictReader((res / "trials.csv").open())} == set(rows)
    report = (res / "report.html").read_text()
    assert all(f"samples/{w.name}" in report for w in (res / "samples").glob("*.wav"))
    print(f"\nhead loss figures ({len(rows)} trials of 24 steps, checkpoints every 6):"
          f"\n  head kill -> search resubmitted: {resumed - killed:.0f} s"
          f"\n  head kill -> a trial training again (restored from its checkpoint): {training_again - killed:.0f} s"
          f"\n  trials resumed from step (newest complete checkpoint at the resume): {redone}"
          f"\n  search with two head kills, start to exit: {first_wall:.0f} s")

    # the same main job again, on the same volume: a new experiment; the finished one is kept as it was
    before = listing(res)
    started = time.time()
    rc, logs = finish_search_service(cluster, start_search_service(cluster, job))
    second_wall = time.time() - started
    assert rc == 0, logs[-8000:]
    assert f"this search is '{experiment}-2'" in logs, logs[-8000:]
    again = list(csv.DictReader((cluster.results / f"{experiment}-2" / "trials.csv").open()))
    assert len(again) == 2 and all(r["status"] == "TERMINATED" and r["step"] == "24" for r in again), again
    assert os.readlink(cluster.results / "latest") == f"{experiment}-2"
    assert listing(res) == before
    print(f"  the same search without a fault: {second_wall:.0f} s; extra wall time of the two kills: "
          f"{first_wall - second_wall:.0f} s")
