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

from chorus.data.errors import InputError

DEFAULT_ADDRESS = "http://127.0.0.1:8265"
EXIT_JOB_FAILED = 1
EXIT_INTERRUPTED = 130


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


def client(address: str | None = None):
    """A JobSubmissionClient for the dashboard at address; connection and auth errors become InputError."""
    from ray.job_submission import JobSubmissionClient

    token = find_token()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    address = resolve_address(address)
    try:
        return JobSubmissionClient(address, headers=headers)
    except Exception as exc:  # noqa: BLE001 - ConnectionError, RuntimeError (401/403) and friends
        raise InputError(f"{address}: cannot reach the Ray Jobs API: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    if "401" in text or "Authentication required" in text:
        return ("401 Unauthorized: the cluster requires a token; set RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH "
                "(the head's token, e.g. from `ray get-auth-token`)")
    if "403" in text or "Authentication failed" in text:
        return "403 Forbidden: the token was refused; check RAY_AUTH_TOKEN / RAY_AUTH_TOKEN_PATH"
    return text.splitlines()[0] if text else type(exc).__name__


def _call(fn, *args, address: str = ""):
    try:
        return fn(*args)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"{address or 'Ray Jobs API'}: {_first_line(exc)}") from None


def entrypoint_for(args: list[str]) -> str:
    """`chorus submit -- search configs/search.yaml` runs `chorus search configs/search.yaml` on the cluster."""
    if not args:
        raise InputError("chorus submit: give the chorus command to run after --, e.g. -- search configs/search.yaml")
    if args[0] == "chorus":
        args = args[1:]
    return shlex.join(["chorus", *args])


def submit(args: list[str], *, address: str | None = None, wait: bool = True, working_dir: str | None = None,
           submission_id: str | None = None, env: list[str] | None = None) -> int:
    """Submit a chorus command as a Ray job; with wait, stream its logs and return its exit status."""
    c = client(address)
    runtime_env: dict = {}
    if working_dir:
        runtime_env["working_dir"] = working_dir
    if env:
        pairs = [item.split("=", 1) for item in env]
        if any(len(p) != 2 for p in pairs):
            raise InputError("--env: expected KEY=VALUE")
        runtime_env["env_vars"] = dict(pairs)
    entrypoint = entrypoint_for(args)
    job_id = _call(lambda: c.submit_job(entrypoint=entrypoint, runtime_env=runtime_env or None,
                                        submission_id=submission_id), address=c.get_address())
    print(f"chorus: submitted job {job_id}: {entrypoint}", file=sys.stderr, flush=True)
    if not wait:
        print(job_id)
        return 0
    return follow(job_id, c)


def follow(job_id: str, c=None, *, address: str | None = None) -> int:
    """Stream a job's logs until it ends; return 0 when it succeeded, else its exit code (or 1)."""
    from ray.job_submission import JobStatus

    c = c or client(address)

    async def tail() -> None:
        async for chunk in c.tail_job_logs(job_id):
            sys.stdout.write(chunk)
            sys.stdout.flush()

    try:
        try:
            asyncio.run(tail())
        except InputError:
            raise
        except Exception as exc:  # noqa: BLE001 - the log stream can drop; the status below is what counts
            print(f"chorus: log stream ended early ({_first_line(exc)})", file=sys.stderr)
        while True:
            info = _call(c.get_job_info, job_id, address=c.get_address())
            if info.status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
                break
            time.sleep(1)
    except KeyboardInterrupt:
        print(f"\nchorus: stopped following; job {job_id} keeps running (chorus logs {job_id}; "
              f"chorus jobs stop {job_id})", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(f"chorus: job {job_id} {info.status.value}" + (f": {info.message}" if info.message else ""),
          file=sys.stderr)
    if info.status == JobStatus.SUCCEEDED:
        return 0
    code = getattr(info, "driver_exit_code", None)
    return code if isinstance(code, int) and code > 0 else EXIT_JOB_FAILED


def list_jobs(address: str | None = None) -> str:
    c = client(address)
    jobs = _call(c.list_jobs, address=c.get_address())
    rows = [("JOB", "STATUS", "STARTED", "ENTRYPOINT")]
    for j in sorted(jobs, key=lambda j: j.start_time or 0):
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(j.start_time / 1000)) if j.start_time else ""
        rows.append((j.submission_id or j.job_id or "", j.status.value, started, j.entrypoint or ""))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}" for r in rows)


def job_logs(job_id: str, *, address: str | None = None, follow_logs: bool = False) -> int:
    c = client(address)
    if follow_logs:
        return follow(job_id, c)
    sys.stdout.write(_call(c.get_job_logs, job_id, address=c.get_address()))
    return 0


def stop_job(job_id: str, *, address: str | None = None, timeout: float = 60) -> int:
    """Stop a job (SIGTERM to its driver, then SIGKILL) and wait until Ray says it ended; 0 when it is stopped."""
    from ray.job_submission import JobStatus

    c = client(address)
    info = _call(c.get_job_info, job_id, address=c.get_address())
    if info.status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
        print(f"chorus: job {job_id} already ended: {info.status.value}", file=sys.stderr)
        return 0
    _call(c.stop_job, job_id, address=c.get_address())
    deadline = time.monotonic() + timeout
    while info.status not in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
        if time.monotonic() > deadline:
            print(f"chorus: job {job_id} still {info.status.value} {timeout:.0f} s after the stop request",
                  file=sys.stderr)
            return EXIT_JOB_FAILED
        time.sleep(1)
        info = _call(c.get_job_info, job_id, address=c.get_address())
    print(f"chorus: job {job_id} {info.status.value}", file=sys.stderr)
    return 0
