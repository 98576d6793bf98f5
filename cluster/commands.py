"""CLI subcommands of the cluster package: search, submit, jobs, logs, results, elastic.

chorus/cli.py calls `register(subparsers)`. Nothing here imports Ray at import time, so `chorus train` stays fast;
each handler parses, then calls one library function.
"""
from __future__ import annotations

import argparse
import contextlib

from chorus.cluster.jobs import DEFAULT_HEAD_RETRIES
from chorus.errors import InputError


def _reach(args: argparse.Namespace):
    """The Jobs API address: --address as given, or a `ray dashboard` tunnel for --cluster."""
    if getattr(args, "cluster", None):
        from chorus.cluster.launcher import dashboard_tunnel

        return dashboard_tunnel(args.cluster)
    return contextlib.nullcontext(args.address)


def cmd_search(args: argparse.Namespace) -> int:
    from chorus.cluster.search import search_command

    return search_command(args.config, args.overrides, args.resume)


def cmd_submit(args: argparse.Namespace) -> int:
    from chorus.cluster.jobs import submit

    command = args.command_args[1:] if args.command_args[:1] == ["--"] else args.command_args
    with _reach(args) as address:
        return submit(command, address=address, wait=args.wait, working_dir=args.working_dir,
                      submission_id=args.job_id, env=args.env, head_retries=args.head_retries,
                      cluster_wait_s=cluster_wait(args))


def cmd_jobs(args: argparse.Namespace) -> int:
    from chorus.cluster.jobs import list_jobs, stop_job

    with _reach(args) as address:
        if args.action == "stop":
            return stop_job(args.job, address=address, cluster_wait_s=cluster_wait(args))
        print(list_jobs(address, cluster_wait_s=cluster_wait(args)))
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    from chorus.cluster.jobs import job_logs

    with _reach(args) as address:
        return job_logs(args.job, address=address, follow_logs=args.follow, cluster_wait_s=cluster_wait(args))


def cmd_results_pull(args: argparse.Namespace) -> int:
    from chorus.cluster.results import pull

    print(pull(args.src, args.dest))
    return 0


def cmd_results_collect(args: argparse.Namespace) -> int:
    from chorus.cluster.results import collect

    print(collect(args.experiment, args.dest))
    return 0


def _address(p: argparse.ArgumentParser, *, nested: bool = False) -> None:
    # nested: a sub-action's copy of the options must not reset what was given before the action (jobs --address
    # URL stop JOB), so it has no default of its own
    extra = {"default": argparse.SUPPRESS} if nested else {}
    where = p.add_mutually_exclusive_group()
    where.add_argument("--cluster", metavar="CLUSTER_YAML", **extra,
                       help="a cluster started with `ray up CLUSTER_YAML` (e.g. cluster/aws.yaml): reach its Jobs API "
                            "through a `ray dashboard` SSH tunnel, with the token file the YAML mounts")
    where.add_argument("--address", metavar="URL", **extra,
                   help="the Ray dashboard / Jobs API, e.g. http://127.0.0.1:8265 (default: RAY_API_SERVER_ADDRESS, "
                        "RAY_ADDRESS, then http://127.0.0.1:8265). Token auth: RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH")
    p.add_argument("--cluster-wait", metavar="SECONDS", type=_seconds, **extra,
                   help="while the cluster does not answer (a head starting or restarting), wait this long, saying "
                        "so, before giving up (default: $CHORUS_CLUSTER_WAIT_S or 300; 0 = fail at once)")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, got {text!r}")
    return value


def cluster_wait(args: argparse.Namespace) -> float:
    """--cluster-wait, else $CHORUS_CLUSTER_WAIT_S, else the default."""
    import os

    from chorus.cluster.jobs import DEFAULT_CLUSTER_WAIT_S

    if getattr(args, "cluster_wait", None) is not None:
        return args.cluster_wait
    text = os.environ.get("CHORUS_CLUSTER_WAIT_S")
    if text is None:
        return DEFAULT_CLUSTER_WAIT_S
    try:
        return _seconds(text)
    except argparse.ArgumentTypeError:
        raise InputError(f"CHORUS_CLUSTER_WAIT_S: expected a number of seconds >= 0, got {text!r}") from None


def _add_search(sub) -> None:
    """`chorus search`: a hyperparameter search on Ray Tune."""
    p = sub.add_parser("search", help="hyperparameter search on Ray Tune (local Ray, or RAY_ADDRESS)",
                       description="Run the search a search YAML describes (see configs/search.yaml): trials in "
                                   "parallel on a local Ray or on the cluster named by RAY_ADDRESS, each retried "
                                   "from its last checkpoint when it fails. Results go to "
                                   "<results_dir>/<experiment>/: trials.csv/.md, best/ (a run dir), samples/, "
                                   "report.html.")
    p.add_argument("config", nargs="?", metavar="SEARCH_YAML", help="the search file, e.g. configs/search.yaml")
    p.add_argument("--set", metavar="KEY=VALUE", action="append", default=[], dest="overrides",
                   help="override a training setting (train.steps=20) or a search setting (num_samples=2); "
                        "repeatable")
    p.add_argument("--resume", metavar="EXPERIMENT",
                   help="continue an interrupted search (its name under storage_path, or its path/URI); "
                        "finished trials are not rerun")
    p.set_defaults(func=cmd_search)


def _add_submit(sub) -> None:
    """`chorus submit`: run a chorus command as a Ray job."""
    p = sub.add_parser("submit", help="run a chorus command as a Ray job on a cluster",
                       description="Submit `chorus <command>` through the Ray Jobs API, stream its logs and exit "
                                   "with its status. Example: chorus submit --address http://127.0.0.1:8265 -- "
                                   "search configs/search.yaml")
    _address(p)
    p.add_argument("--wait", action=argparse.BooleanOptionalAction, default=True,
                   help="stream the logs and return the job's exit status (default); --no-wait prints the job id")
    p.add_argument("--working-dir", metavar="DIR",
                   help="upload this directory as the job's working dir (default: use the cluster's installed copy)")
    p.add_argument("--job-id", metavar="ID", help="submission id to use (default: generated)")
    p.add_argument("--env", metavar="KEY=VALUE", action="append", default=[], help="environment for the job")
    p.add_argument("--head-retries", metavar="N", type=int, default=DEFAULT_HEAD_RETRIES,
                   help="when the job is lost with the Ray head (the head died and came back without it), submit "
                        f"it again up to N times; a search resumes its experiment (default {DEFAULT_HEAD_RETRIES})")
    p.add_argument("command_args", nargs=argparse.REMAINDER, metavar="-- COMMAND ...",
                   help="the chorus subcommand and its arguments")
    p.set_defaults(func=cmd_submit)


def _add_jobs(sub) -> None:
    """`chorus jobs` and `chorus logs`: the jobs of a Ray cluster."""
    p = sub.add_parser("jobs", help="list or stop the jobs of a Ray cluster",
                       description="chorus jobs: list Ray jobs (id, status, start time, entrypoint). "
                                   "chorus jobs stop JOB: stop one and wait until it has ended.")
    _address(p)
    jsub = p.add_subparsers(dest="action", metavar="ACTION")
    s = jsub.add_parser("stop", help="stop a running job", description="Stop a job (its driver gets SIGTERM, then "
                                                                       "SIGKILL) and wait until Ray reports it ended.")
    _address(s, nested=True)
    s.add_argument("job", metavar="JOB", help="job or submission id (see chorus jobs)")
    p.set_defaults(func=cmd_jobs, action=None)

    p = sub.add_parser("logs", help="show a Ray job's logs", description="Print a job's logs (--follow: until it "
                                                                        "ends, then exit with its status).")
    _address(p)
    p.add_argument("job", metavar="JOB", help="job or submission id (see chorus jobs)")
    p.add_argument("--follow", "-f", action="store_true", help="stream until the job ends")
    p.set_defaults(func=cmd_logs)


def _add_results(sub) -> None:
    """`chorus results pull|collect`."""
    p = sub.add_parser("results", help="collect or fetch search results",
                       description="Fetch or (re)build the results folder of a search.")
    rsub = p.add_subparsers(dest="results_command", metavar="ACTION", required=True)
    r = rsub.add_parser("pull", help="copy a search's results home (local path or s3://...)",
                        description="Copy SRC into DEST/<name of SRC>. SRC is a results folder (trials.csv) or a "
                                    "Ray Tune experiment (storage_path/experiment, local or s3://), which is "
                                    "collected on the way.")
    r.add_argument("src", metavar="SRC")
    r.add_argument("dest", metavar="DEST")
    r.set_defaults(func=cmd_results_pull)
    r = rsub.add_parser("collect", help="(re)build results from a Tune experiment dir",
                        description="Write trials.csv/.md, best/, samples/, curves/ and report.html for EXPERIMENT "
                                    "(storage_path/experiment) into DEST.")
    r.add_argument("experiment", metavar="EXPERIMENT_DIR")
    r.add_argument("dest", metavar="DEST")
    r.set_defaults(func=cmd_results_collect)


def register(sub) -> None:
    """Add the cluster subcommands to the `chorus` subparsers (in this order in `chorus --help`)."""
    _add_search(sub)
    _add_submit(sub)
    _add_jobs(sub)
    _add_results(sub)

    from chorus.cluster import elastic

    elastic.register(sub)
