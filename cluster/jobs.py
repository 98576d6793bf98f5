"""`chorus submit`, `chorus jobs [stop JOB]`, `chorus logs`: the Ray Jobs API, with Ray's token authentication.

The token is found the way Ray finds it: RAY_AUTH_TOKEN, else the file named by RAY_AUTH_TOKEN_PATH, else
~/.ray/auth_token. It is sent as `Authorization: Bearer <token>` on every request, whatever the client's own
RAY_AUTH_MODE says (Ray's client only adds it when that variable is `token`).
"""
from __future__ import annotations

import asyncio
import os
import shlex
import sys
import time
from pathlib import Path

from chorus.errors import InputError

DEFAULT_ADDRESS = "http://127.0.0.1:8265"
EXIT_JOB_FAILED = 1
EXIT_INTERRUPTED = 130
DEFAULT_CLUSTER_WAIT_S = 300.0  # how long a command waits for a head that does not answer (a restart takes ~1 min)
DEFAULT_HEAD_RETRIES = 3  # times `chorus submit` submits a job again after it was lost with the head
WAIT_POLL_S = 2.0


def find_token() -> str | None:
    token = os.environ.get("RAY_AUTH_TOKEN", "").strip()
    if token:
        return token
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    if path:
        p = Path(path).expanduser()
        if not p.is_file() or not p.read_text().strip():
            raise InputError(f"RAY_AUTH_TOKEN_PATH={path}: no token in that file")
        return p.read_text().strip()
    default = Path.home() / ".ray" / "auth_token"
    if default.is_file() and default.read_text().strip():
        return default.read_text().strip()
    return None


def resolve_address(address: str | None) -> str:
    address = address or os.environ.get("RAY_API_SERVER_ADDRESS") or os.environ.get("RAY_ADDRESS") or DEFAULT_ADDRESS
    if "://" not in address and address != "auto":  # host:8265 means the dashboard's HTTP address
        address = f"http://{address}"
    return address


def client(address: str | None = None, *, wait_s: float = 0.0):
    """A JobSubmissionClient for the dashboard at address. While the cluster does not answer (a head starting or
    restarting), wait up to wait_s seconds, saying so; then, and on auth errors at once, InputError."""
    from ray.job_submission import JobSubmissionClient

    token = find_token()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    address = resolve_address(address)
    return _patiently(lambda: JobSubmissionClient(address, headers=headers), address=address, wait_s=wait_s,
                      what="cannot reach the Ray Jobs API")


def _patiently(fn, *, address: str, wait_s: float = 0.0, what: str = ""):
    """fn(), retried while the cluster is absent or starting (`unreachable`), up to wait_s seconds; any other
    error, or the wait's end, is an InputError naming the address."""
    deadline, said = time.monotonic() + wait_s, 0.0
    while True:
        try:
            return fn()
        except InputError:
            raise
        except Exception as exc:  # noqa: BLE001 - ConnectionError, RuntimeError (401/403/404) and friends
            if not unreachable(exc) or time.monotonic() >= deadline:
                waited = f" (waited {wait_s:.0f} s)" if wait_s and unreachable(exc) else ""
                prefix = f"{what}{waited}: " if what else ""
                raise InputError(f"{address or 'Ray Jobs API'}: {prefix}{_first_line(exc)}") from None
            said = _say_waiting(address, exc, deadline, said)
            time.sleep(WAIT_POLL_S)


def _say_waiting(address: str, exc: BaseException, deadline: float, said: float) -> float:
    """One line when the wait starts, then one a minute; returns when it last spoke."""
    now = time.monotonic()
    if not said or now - said >= 60:
        print(f"chorus: waiting for the Ray cluster at {address} ({_first_line(exc)}); up to "
              f"{max(0.0, deadline - now):.0f} s more", file=sys.stderr, flush=True)
        return now
    return said


def unreachable(exc: BaseException) -> bool:
    """Whether an error means the cluster is not there (yet): no connection, a timeout, or a dashboard that is
    still starting (5xx). An HTTP 4xx (a refused token, a wrong URL) is an answer, not an absence."""
    import requests

    if isinstance(exc, requests.HTTPError):
        return exc.response is not None and exc.response.status_code >= 500
    if isinstance(exc, (ConnectionError, requests.ConnectionError, requests.Timeout)):
        return True
    text = str(exc)
    return text.startswith("Request failed with status code 5") or "Failed to connect to Ray" in text


def _missing(exc: BaseException) -> bool:
    """A Jobs API answer that the job does not exist (a head restarted without the job's history)."""
    return "status code 404" in str(exc) or "does not exist" in str(exc)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    if "401" in text or "Authentication required" in text:
        return ("401 Unauthorized: the cluster requires a token; set RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH "
                "(the head's token, e.g. from `ray get-auth-token`)")
    if "403" in text or "Authentication failed" in text:
        return "403 Forbidden: the token was refused; check RAY_AUTH_TOKEN / RAY_AUTH_TOKEN_PATH"
    return text.splitlines()[0] if text else type(exc).__name__


def entrypoint_for(args: list[str]) -> str:
    """`chorus submit -- search configs/search.yaml` runs `chorus search configs/search.yaml` on the cluster."""
    if not args:
        raise InputError("chorus submit: give the chorus command to run after --, e.g. -- search configs/search.yaml")
    if args[0] == "chorus":
        args = args[1:]
    return shlex.join(["chorus", *args])


class JobLost(Exception):
    """The job went away with the head: the connection dropped, and the head that answered again does not know
    the job (a restarted head keeps no job history)."""

    def __init__(self, job_id: str, lost_at: float, experiment: str | None):
        super().__init__(f"job {job_id} was lost with the Ray head at {_clock(lost_at)}")
        self.job_id, self.lost_at, self.experiment = job_id, lost_at, experiment


def _clock(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t))


def resume_args(args: list[str], experiment: str | None) -> list[str]:
    """What to run again after a lost job: a search continues its experiment (finished trials are not rerun);
    any other command, or a search lost before it named its experiment, runs as it was given."""
    args = args[1:] if args[:1] == ["chorus"] else list(args)
    if args[:1] == ["search"] and experiment and "--resume" not in args:
        return ["search", "--resume", experiment]
    return args


def _submit_job(c, entrypoint: str, runtime_env: dict, submission_id: str | None, wait_s: float) -> str:
    """Submit, waiting (up to wait_s) through a head that is still starting: its Jobs API answers 5xx until the
    job agent has registered."""
    return _patiently(lambda: c.submit_job(entrypoint=entrypoint, runtime_env=runtime_env or None,
                                           submission_id=submission_id), address=c.get_address(), wait_s=wait_s)


def submit(args: list[str], *, address: str | None = None, wait: bool = True, working_dir: str | None = None,
           submission_id: str | None = None, env: list[str] | None = None, head_retries: int = DEFAULT_HEAD_RETRIES,
           cluster_wait_s: float = DEFAULT_CLUSTER_WAIT_S) -> int:
    """Submit a chorus command as a Ray job; with wait, stream its logs and return its exit status.

    A job lost with the head (see JobLost) is submitted again, up to head_retries times, as `resume_args` says: a
    search resumes its experiment. A job that fails on its own is reported, never retried."""
    runtime_env: dict = {}
    if working_dir:
        runtime_env["working_dir"] = working_dir
    if env:
        pairs = [item.split("=", 1) for item in env]
        if any(len(p) != 2 for p in pairs):
            raise InputError("--env: expected KEY=VALUE")
        runtime_env["env_vars"] = dict(pairs)
    entrypoint = entrypoint_for(args)
    if head_retries < 0:
        raise InputError(f"--head-retries: expected 0 or more, got {head_retries}")
    c = client(address, wait_s=cluster_wait_s)
    job_id = _submit_job(c, entrypoint, runtime_env, submission_id, cluster_wait_s)
    print(f"chorus: submitted job {job_id}: {entrypoint}", file=sys.stderr, flush=True)
    if not wait:
        print(job_id)
        return 0
    for attempt in range(1, head_retries + 2):
        try:
            return follow(job_id, c, cluster_wait_s=cluster_wait_s)
        except JobLost as lost:
            if attempt > head_retries:
                print(f"chorus: {lost}; no retries left (--head-retries {head_retries})", file=sys.stderr)
                return EXIT_JOB_FAILED
            entrypoint = entrypoint_for(resume_args(args, lost.experiment))
            job_id = _submit_job(c, entrypoint, runtime_env, submission_id and f"{submission_id}-retry{attempt}",
                                 cluster_wait_s)
            print(f"chorus: head lost at {_clock(lost.lost_at)}; resumed at {_clock(time.time())} as job {job_id} "
                  f"(retry {attempt} of {head_retries}): {entrypoint}", file=sys.stderr, flush=True)
    raise AssertionError("unreachable")


class _Echo:
    """Writes a job's log to stdout, counting what it wrote and noting the experiment a search names."""

    def __init__(self) -> None:
        self.written, self.experiment, self._line = 0, None, ""

    def write(self, text: str) -> None:
        from chorus.cluster.search import EXPERIMENT_LINE

        sys.stdout.write(text)
        sys.stdout.flush()
        self.written += len(text)
        *lines, self._line = (self._line + text).split("\n")
        for line in lines:
            if line.startswith(EXPERIMENT_LINE):
                self.experiment = line[len(EXPERIMENT_LINE):].strip()

    def catch_up(self, c, job_id: str) -> None:
        """After the stream broke: print the part of the log not printed yet."""
        try:
            logs = c.get_job_logs(job_id)
        except Exception:  # noqa: BLE001 - best effort; the status is what counts
            return
        if len(logs) > self.written:
            self.write(logs[self.written:])


def follow(job_id: str, c=None, *, address: str | None = None,
           cluster_wait_s: float = DEFAULT_CLUSTER_WAIT_S) -> int:
    """Stream a job's logs until it ends; return 0 when it succeeded, else its exit code (or 1). A head that goes
    away is waited for (up to cluster_wait_s); JobLost when it comes back without the job."""
    c = c or client(address, wait_s=cluster_wait_s)
    echo = _Echo()

    async def tail() -> None:
        async for chunk in c.tail_job_logs(job_id):
            echo.write(chunk)

    try:
        broke = False
        try:
            asyncio.run(tail())
        except InputError:
            raise
        except Exception as exc:  # noqa: BLE001 - the log stream can drop; the status below is what counts
            broke = True
            if not unreachable(exc):
                print(f"chorus: log stream ended early ({_first_line(exc)})", file=sys.stderr)
        while True:
            info = _job_info(c, job_id, echo, cluster_wait_s)
            if info.status.is_terminal():
                break
            broke = True  # the stream ended before the job did
            echo.catch_up(c, job_id)
            time.sleep(1)
        if broke:
            echo.catch_up(c, job_id)
    except KeyboardInterrupt:
        print(f"\nchorus: stopped following; job {job_id} keeps running (chorus logs {job_id}; "
              f"chorus jobs stop {job_id})", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(f"chorus: job {job_id} {info.status.value}" + (f": {info.message}" if info.message else ""),
          file=sys.stderr)
    if info.status.value == "SUCCEEDED":
        return 0
    code = getattr(info, "driver_exit_code", None)
    return code if isinstance(code, int) and code > 0 else EXIT_JOB_FAILED


def _job_info(c, job_id: str, echo: _Echo, cluster_wait_s: float):
    """The job's info; through a head that went away, after waiting for it (JobLost if it forgot the job)."""
    try:
        return c.get_job_info(job_id)
    except Exception as exc:  # noqa: BLE001
        if _missing(exc):
            raise JobLost(job_id, time.time(), echo.experiment) from None
        if not unreachable(exc):
            raise InputError(f"{c.get_address()}: {_first_line(exc)}") from None
        lost_at = time.time()
        print(f"chorus: lost the Ray head at {_clock(lost_at)} ({_first_line(exc)}); waiting for it",
              file=sys.stderr, flush=True)
    client(c.get_address(), wait_s=cluster_wait_s)  # InputError if it does not come back in time
    try:
        return c.get_job_info(job_id)
    except Exception as exc:  # noqa: BLE001
        if _missing(exc):
            raise JobLost(job_id, lost_at, echo.experiment) from None
        raise InputError(f"{c.get_address()}: {_first_line(exc)}") from None


def list_jobs(address: str | None = None, *, cluster_wait_s: float = DEFAULT_CLUSTER_WAIT_S) -> str:
    c = client(address, wait_s=cluster_wait_s)
    jobs = _patiently(c.list_jobs, address=c.get_address())
    rows = [("JOB", "STATUS", "STARTED", "ENTRYPOINT")]
    for j in sorted(jobs, key=lambda j: j.start_time or 0):
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(j.start_time / 1000)) if j.start_time else ""
        rows.append((j.submission_id or j.job_id or "", j.status.value, started, j.entrypoint or ""))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}" for r in rows)


def job_logs(job_id: str, *, address: str | None = None, follow_logs: bool = False,
             cluster_wait_s: float = DEFAULT_CLUSTER_WAIT_S) -> int:
    c = client(address, wait_s=cluster_wait_s)
    if follow_logs:
        try:
            return follow(job_id, c, cluster_wait_s=cluster_wait_s)
        except JobLost as lost:
            raise InputError(f"{lost}; a restarted head keeps no job history (chorus jobs lists its jobs)") from None
    sys.stdout.write(_patiently(lambda: c.get_job_logs(job_id), address=c.get_address()))
    return 0


def stop_job(job_id: str, *, address: str | None = None, timeout: float = 60,
             cluster_wait_s: float = DEFAULT_CLUSTER_WAIT_S) -> int:
    """Stop a job (SIGTERM to its driver, then SIGKILL) and wait until Ray says it ended; 0 when it is stopped."""
    c = client(address, wait_s=cluster_wait_s)
    info = _patiently(lambda: c.get_job_info(job_id), address=c.get_address())
    if info.status.is_terminal():
        print(f"chorus: job {job_id} already ended: {info.status.value}", file=sys.stderr)
        return 0
    _patiently(lambda: c.stop_job(job_id), address=c.get_address())
    deadline = time.monotonic() + timeout
    while not info.status.is_terminal():
        if time.monotonic() > deadline:
            print(f"chorus: job {job_id} still {info.status.value} {timeout:.0f} s after the stop request",
                  file=sys.stderr)
            return EXIT_JOB_FAILED
        time.sleep(1)
        info = _patiently(lambda: c.get_job_info(job_id), address=c.get_address())
    print(f"chorus: job {job_id} {info.status.value}", file=sys.stderr)
    return 0
