"""`chorus submit/jobs/logs` against a real `ray start --head` with token authentication on."""
from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from tests_support import free_port

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

pytestmark = [pytest.mark.ray]


def clean_env(home: str) -> dict[str, str]:
    """No token anywhere Ray would look: no env vars, an empty HOME."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE", "RAY_ADDRESS",
                        "RAY_API_SERVER_ADDRESS")}
    env.update(HOME=home, PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}")
    return env


def start_head(tmp: str, token_file: Path, port: int, dash: int, agent_port: int) -> subprocess.Popen:
    """`ray start --head --block` with token auth, in its own process group (so that a test can kill all of it)."""
    env = clean_env(tmp)
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token_file), RAY_TMPDIR=tmp)
    log = open(Path(tmp) / "head.log", "a")
    return subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", f"--port={port}", f"--dashboard-port={dash}",
         "--dashboard-host=127.0.0.1", "--include-dashboard=true", "--num-cpus=1", f"--temp-dir={tmp}/ray",
         # the job agent's default port (52365) may be taken by another Ray on this machine: no agent, no jobs
         f"--dashboard-agent-listen-port={agent_port}",
         "--disable-usage-stats"],
        env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def wait_for_jobs_api(head: subprocess.Popen, address: str, token: str, tmp: str) -> None:
    deadline = time.time() + 180
    while True:
        try:
            urllib.request.urlopen(f"{address}/api/version", timeout=2)
            break
        except urllib.error.HTTPError:
            break  # it answers (maybe 401): up
        except OSError:
            if head.poll() is not None or time.time() > deadline:
                pytest.fail("ray start --head did not come up:\n" + (Path(tmp) / "head.log").read_text()[-3000:])
            time.sleep(1)
    # the dashboard answers before its job agent has registered ("No available agent"): wait for a job to land
    while True:
        req = urllib.request.Request(f"{address}/api/jobs/", data=b'{"entrypoint": "true"}', method="POST",
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        try:
            urllib.request.urlopen(req, timeout=30)
            break
        except urllib.error.HTTPError as e:
            if e.code != 500 or time.time() > deadline + 120:
                pytest.fail(f"the head accepts no job: {e.code} {e.read()[:300]!r}")
            time.sleep(2)


def descendants(pid: int) -> list[int]:
    """Every process below pid (a job's driver runs in a session of its own, outside the head's process group)."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_head(head: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if sig == signal.SIGKILL:  # the machine is lost: every process of this Ray goes at once, the job's too
        for pid in descendants(head.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    try:
        os.killpg(head.pid, sig)
        head.wait(60)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(head.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture(scope="module")
def ray_head():
    tmp = tempfile.mkdtemp(prefix="chorus-head-", dir="/tmp")
    token = secrets.token_hex(32)
    token_file = Path(tmp) / "auth_token"
    token_file.write_text(token)
    port, dash = free_port(), free_port()
    head = start_head(tmp, token_file, port, dash, free_port())
    address = f"http://127.0.0.1:{dash}"
    try:
        wait_for_jobs_api(head, address, token, tmp)
        yield {"address": address, "token": token, "token_file": str(token_file), "tmp": tmp}
    finally:
        kill_head(head)
        subprocess.run(["rm", "-rf", tmp], check=False)


def chorus(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "chorus", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_jobs_api_without_a_token_is_refused(ray_head, tmp_path):
    raw = urllib.request.Request(f"{ray_head['address']}/api/jobs/")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(raw, timeout=10)
    assert err.value.code == 401
    proc = chorus("jobs", "--address", ray_head["address"], env=clean_env(str(tmp_path)))
    assert proc.returncode == 2
    assert "401" in proc.stderr and "RAY_AUTH_TOKEN" in proc.stderr
    bad = clean_env(str(tmp_path)) | {"RAY_AUTH_TOKEN": "not-the-token"}
    proc = chorus("jobs", "--address", ray_head["address"], env=bad)
    assert proc.returncode == 2 and "403" in proc.stderr


def test_submit_streams_logs_and_returns_the_jobs_exit_status(ray_head, tmp_path):
    env = clean_env(str(tmp_path)) | {"RAY_AUTH_TOKEN": ray_head["token"]}
    ok = chorus("submit", "--address", ray_head["address"], "--job-id", "chorus-help", "--", "--help", env=env)
    assert ok.returncode == 0, ok.stderr[-3000:]
    assert "usage: chorus" in ok.stdout and "search" in ok.stdout
    assert "job chorus-help SUCCEEDED" in ok.stderr

    # a failing command: its exit status (2, bad input) comes back; the token may also come from a file
    env_file = clean_env(str(tmp_path)) | {"RAY_AUTH_TOKEN_PATH": ray_head["token_file"]}
    bad = chorus("submit", "--address", ray_head["address"], "--job-id", "chorus-bad", "--", "search",
                 "/nonexistent/search.yaml", env=env_file)
    assert bad.returncode == 2, bad.stderr[-3000:]
    assert "config file not found" in bad.stdout + bad.stderr

    listed = chorus("jobs", "--address", ray_head["address"], env=env)
    assert listed.returncode == 0, listed.stderr
    assert "chorus-help" in listed.stdout and "SUCCEEDED" in listed.stdout and "chorus-bad" in listed.stdout
    logs = chorus("logs", "chorus-help", "--address", ray_head["address"], env=env)
    assert logs.returncode == 0 and "usage: chorus" in logs.stdout

    nowait = chorus("submit", "--address", ray_head["address"], "--no-wait", "--", "--help", env=env)
    assert nowait.returncode == 0 and nowait.stdout.strip().startswith("raysubmit_")


def test_jobs_stop_ends_a_running_job(ray_head, tmp_path):
    from ray.job_submission import JobSubmissionClient

    env = clean_env(str(tmp_path)) | {"RAY_AUTH_TOKEN": ray_head["token"]}
    c = JobSubmissionClient(ray_head["address"], headers={"Authorization": f"Bearer {ray_head['token']}"})
    job = c.submit_job(entrypoint="sleep 600", submission_id="chorus-sleeper")
    deadline = time.time() + 120
    while c.get_job_status(job).value != "RUNNING":
        assert time.time() < deadline, c.get_job_status(job)
        time.sleep(1)
    stopped = chorus("jobs", "--address", ray_head["address"], "stop", job, env=env)
    assert stopped.returncode == 0, stopped.stderr[-3000:]
    assert c.get_job_status(job).value == "STOPPED"
    assert "job chorus-sleeper STOPPED" in stopped.stderr
    again = chorus("jobs", "stop", job, "--address", ray_head["address"], env=env)
    assert again.returncode == 0 and "already ended: STOPPED" in again.stderr


@pytest.mark.slow
def test_a_job_lost_with_the_head_is_submitted_again_and_resumes(tmp_path, data_cache):
    """The head dies (SIGKILL to all its processes, the job's driver with them) while `chorus submit` follows a
    training job. The submitter waits for the head, finds the job gone with it, submits it again, and the training
    continues from its last checkpoint: nothing before it is redone, and nobody typed a command."""
    tmp = tempfile.mkdtemp(prefix="chorus-headloss-", dir="/tmp")
    token = secrets.token_hex(32)
    token_file = Path(tmp) / "auth_token"
    token_file.write_text(token)
    ports = (free_port(), free_port(), free_port())
    address = f"http://127.0.0.1:{ports[1]}"
    head = start_head(tmp, token_file, *ports)
    run = tmp_path / "run"
    env = clean_env(str(tmp_path)) | {"RAY_AUTH_TOKEN": token, "PYTHONUNBUFFERED": "1"}
    submitter = None
    try:
        wait_for_jobs_api(head, address, token, tmp)
        submitter = subprocess.Popen(
            [sys.executable, "-m", "chorus", "submit", "--address", address, "--cluster-wait", "240",
             "--head-retries", "1", "--", "train", "--config", str(REPO / "configs/tiny.yaml"),
             "--set", f"run.dir={run}", "--set", f"data.cache_dir={data_cache}", "--set", "train.steps=300",
             "--set", "train.checkpoint_every=30", "--set", "train.eval_every=30", "--set", "train.sample_every=300"],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        state = run / "checkpoints" / "checkpoint"
        deadline = time.time() + 300
        while not state.is_file():
            assert submitter.poll() is None, submitter.stdout.read()[-4000:]
            assert time.time() < deadline, "no checkpoint within 5 minutes"
            time.sleep(0.5)
        kill_head(head, signal.SIGKILL)
        # the newest complete checkpoint at the kill (TF rewrites this state file last, atomically)
        last = int(re.search(r'^model_checkpoint_path: "ckpt-(\d+)"', state.read_text(), re.M).group(1))
        assert 0 < last < 300, last
        time.sleep(3)
        head = start_head(tmp, token_file, *ports)  # what a restart policy or the compose watchdog does
        out, _ = submitter.communicate(timeout=900)
    finally:
        if submitter is not None and submitter.poll() is None:
            submitter.kill()
        kill_head(head)
        subprocess.run(["rm", "-rf", tmp], check=False)
    assert submitter.returncode == 0, out[-6000:]
    assert "chorus: lost the Ray head at" in out, out[-6000:]
    assert "chorus: head lost at" in out and "resumed at" in out and "(retry 1 of 1)" in out, out[-6000:]
    # the second job continued the run from that checkpoint: nothing before it was trained again
    assert f"chorus: resuming at step {last} in {run}" in out, out[-6000:]
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    assert rows[-1]["step"] == 300, rows[-1]
