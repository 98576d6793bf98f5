"""The pieces of head-loss recovery that need no cluster: what is resubmitted, which errors mean "the cluster is
not there", the experiment a search's log names, experiment names on a rerun, and results that are written whole
or not at all. The whole path runs in test_cluster_jobs.py (a local head) and test_docker.py (compose)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import requests

from chorus.cluster import jobs, results, search
from chorus.cluster.search_config import build_search


def test_a_lost_search_resumes_its_experiment_and_other_commands_run_again():
    assert jobs.resume_args(["search", "configs/search.yaml", "--set", "num_samples=2"], "/shared/ray_results/x") \
        == ["search", "--resume", "/shared/ray_results/x"]
    assert jobs.resume_args(["chorus", "search", "s.yaml"], "/s/x") == ["search", "--resume", "/s/x"]
    # lost before it named its experiment: the same command, which resumes an interrupted experiment by itself
    assert jobs.resume_args(["search", "s.yaml"], None) == ["search", "s.yaml"]
    assert jobs.resume_args(["search", "--resume", "x"], "/s/x") == ["search", "--resume", "x"]
    assert jobs.resume_args(["train", "--run-dir", "/shared/r"], None) == ["train", "--run-dir", "/shared/r"]


def _http_error(code: int) -> requests.HTTPError:
    response = requests.Response()
    response.status_code = code
    return requests.HTTPError(f"{code} error", response=response)


def test_only_an_absent_or_starting_cluster_is_waited_for():
    assert jobs.unreachable(ConnectionError("Failed to connect to Ray at address: http://ray-head:8265."))
    assert jobs.unreachable(requests.ConnectionError("refused"))
    assert jobs.unreachable(requests.Timeout("slow"))
    assert jobs.unreachable(_http_error(503))
    assert jobs.unreachable(RuntimeError("Request failed with status code 500: No available agent."))
    # answers: a refused token, a wrong URL, a job the head does not know
    assert not jobs.unreachable(_http_error(401))
    assert not jobs.unreachable(_http_error(404))
    assert not jobs.unreachable(RuntimeError("Request failed with status code 404: Job raysubmit_x does not exist."))
    assert jobs._missing(RuntimeError("Request failed with status code 404: Job raysubmit_x does not exist."))


def test_the_log_echo_notes_the_experiment_across_chunks(capsys):
    echo = jobs._Echo()
    echo.write("(driver) starting\nchorus: search experi")
    echo.write("ment: /shared/ray_results/chorales-small-2\nmore\n")
    assert echo.experiment == "/shared/ray_results/chorales-small-2"
    assert echo.written == len(capsys.readouterr().out)


def _fake_experiment(storage: Path, name: str, snapshot: dict, *, done: bool) -> None:
    exp = storage / name
    exp.mkdir(parents=True)
    (exp / "tuner.pkl").write_bytes(b"state")  # what Tuner.can_restore looks for
    (exp / results.SEARCH_FILE).write_text(json.dumps(snapshot))
    if done:
        (exp / search.DONE_FILE).write_text("{}")


def test_a_rerun_keeps_finished_experiments_and_resumes_an_interrupted_one(tmp_path):
    def make(**extra):
        return build_search({"experiment": "bach", "storage_path": str(tmp_path / "store"),
                             "results_dir": str(tmp_path / "results"), "train": {"steps": 30}, **extra})

    wanted = make()
    snapshot = json.loads(json.dumps(search.search_to_dict(wanted), default=str))
    assert search.choose_experiment(wanted) == ("bach", "new")
    _fake_experiment(tmp_path / "store", "bach", snapshot, done=True)
    assert search.choose_experiment(wanted) == ("bach-2", "new")
    _fake_experiment(tmp_path / "store", "bach-2", snapshot, done=False)
    assert search.choose_experiment(wanted) == ("bach-2", "interrupted")
    # the concurrency cap that preflight sets is not a different search
    capped = make(max_concurrent_trials=1)
    assert search.choose_experiment(capped) == ("bach-2", "interrupted")
    # other settings: the interrupted one is kept for --resume, this one gets the next name
    assert search.choose_experiment(make(num_samples=3)) == ("bach-3", "new")


def test_results_are_swapped_in_whole_and_latest_points_at_the_newest(tmp_path, monkeypatch):
    dest = tmp_path / "results" / "bach"
    dest.mkdir(parents=True)
    (dest / "trials.csv").write_text("old\n")
    staged = results._staging_dir(dest)
    assert staged.parent == dest.parent and staged.name.endswith("-partial")
    assert staged.stat().st_mode & 0o777 == 0o777 & ~_umask()
    (staged / "trials.csv").write_text("new\n")
    results._swap_in(staged, dest)
    assert (dest / "trials.csv").read_text() == "new\n"
    assert sorted(p.name for p in dest.parent.iterdir()) == ["bach"]  # nothing left beside it
    # a staging folder left by a kill is cleared by the next export
    leftover = results._staging_dir(dest)
    results._staging_dir(dest)
    assert not leftover.exists()

    results.point_latest(str(tmp_path / "results"), "bach")
    assert os.readlink(tmp_path / "results" / "latest") == "bach"
    results.point_latest(str(tmp_path / "results"), "bach-2")
    assert os.readlink(tmp_path / "results" / "latest") == "bach-2"


def test_a_failing_export_leaves_the_previous_results_whole(tmp_path, monkeypatch):
    dest = tmp_path / "results" / "bach"
    dest.mkdir(parents=True)
    (dest / "trials.csv").write_text("old\n")

    def half_then_fail(out, header, body):  # dies mid-export, as a kill would
        (out / "trials.csv").write_text("half")
        raise OSError("disk full")

    monkeypatch.setattr(results, "read_trials", lambda *a, **k: [])
    monkeypatch.setattr(results, "write_tables", half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        results.collect(str(tmp_path / "experiment"), str(dest), metric="music_distance", mode="min")
    assert (dest / "trials.csv").read_text() == "old\n"
    assert sorted(p.name for p in dest.parent.iterdir()) == ["bach"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
