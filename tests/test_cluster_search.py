"""Searches on a local Ray with the real trainer on tiny settings: results folder, a trial killed mid-run,
a multi-worker trial that loses a worker, and --resume after the driver was killed.

Each test starts its own Ray in a temp dir (auth off: nothing is written to ~/.ray) and shuts it down.
"""
from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def search_yaml(tmp_path: Path, data_cache: Path, *, experiment: str, extra: str = "",
                space: str = "{train.g_lr: {grid: [0.001, 0.0005]}}") -> Path:
    path = tmp_path / f"{experiment}.yaml"
    path.write_text(textwrap.dedent(f"""\
        experiment: {experiment}
        base: configs/tiny.yaml
        space: {space}
        resources: {{cpus: 1}}
        max_concurrent_trials: 2
        max_failures: 2
        num_to_keep: 2
        storage_path: {tmp_path / 'store'}
        results_dir: {tmp_path / 'results'}
        data: {{cache_dir: {data_cache}}}
        train: {{steps: 9, eval_every: 3, checkpoint_every: 3, sample_every: 3, log_every: 3}}
        """) + textwrap.dedent(extra))
    return path


def read_table(results: Path) -> list[dict[str, str]]:
    with open(results / "trials.csv") as f:
        return list(csv.DictReader(f))


def assert_best_dir_loads(best: Path) -> None:
    from chorus.trainer.generate import load_run

    run = load_run(best)
    assert run.step > 0
    assert (best / "config.yaml").is_file() and list((best / "samples").glob("*/*.mid"))


def processes() -> list[tuple[int, str]]:
    """(pid, command line) of this machine's processes; Ray names its workers in theirs (ray::RayTrainWorker)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                out.append((int(d.name), (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")))
            except OSError:
                pass
    return out


def killer(pick_pid=lambda trial: trial.last_result.get("pid")):
    """A Tune callback that SIGKILLs a process of trial 0 right after that trial's first checkpoint."""
    from ray.tune import Callback

    class Killer(Callback):
        killed = None  # (trial id, pid)

        def _kill(self, trial):
            if self.killed is None and trial.trial_id.endswith("00000"):
                pid = pick_pid(trial)
                if pid:
                    os.kill(int(pid), signal.SIGKILL)
                    self.killed = (trial.trial_id, int(pid))

        def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):  # single-worker trials
            self._kill(trial)

        def on_trial_result(self, iteration, trials, trial, result, **info):  # multi-worker: Train's checkpoint
            if result.get("checkpoint_path"):
                self._kill(trial)

    return Killer()


def test_search_results_and_a_killed_trial_resumes_from_its_checkpoint(tmp_path, data_cache, ray_env):
    from chorus.cluster.search import run_search
    from chorus.cluster.search_config import load_search

    search = load_search(search_yaml(tmp_path, data_cache, experiment="kill-one"))
    kill = killer()
    outcome = run_search(search, callbacks=[kill], num_cpus=2, include_dashboard=False)

    assert kill.killed is not None, "the trial was never killed"
    results = Path(outcome.results_path)
    rows = {r["trial_id"]: r for r in read_table(results)}
    assert len(rows) == 2 and all(r["status"] == "TERMINATED" for r in rows.values())
    assert all(r["step"] == "9" for r in rows.values())
    killed = rows.pop(kill.killed[0])
    (other,) = rows.values()
    # the killed trial was retried once and continued from its checkpoint's step, not from 0
    assert killed["failures"] == "1" and int(killed["resumed_from_step"]) >= 3
    # the other trial ran undisturbed from start to end
    assert other["failures"] == "0" and other["resumed_from_step"] == "0"
    for name in ("trials.csv", "trials.md", "report.html", "curves/all.png"):
        assert (results / name).is_file(), name
    html = (results / "report.html").read_text()
    assert "samples/" in html and "curves/" in html and "http" not in html
    assert list((results / "samples").glob("*.mid")) and list((results / "samples").glob("*.png"))
    assert "<audio controls" in html and "samples/real-0.wav" in html and (results / "samples" / "real-0.wav").is_file()
    assert_best_dir_loads(results / "best")
    # the killed trial's resumed metrics history continues after the checkpoint step without a restart at 0
    store = Path(outcome.experiment_path)
    (progress,) = [p for p in store.glob(f"*{kill.killed[0]}*/progress.csv")]
    with open(progress) as f:
        steps = [int(float(r["step"])) for r in csv.DictReader(f)]
    assert steps == sorted(steps) and steps[-1] == 9


def test_multi_worker_trial_restarts_from_checkpoint_after_losing_a_worker(tmp_path, data_cache, ray_env):
    from chorus.cluster.search import run_search
    from chorus.cluster.search_config import load_search

    path = search_yaml(tmp_path, data_cache, experiment="two-workers", space="{}")
    search = load_search(path, ["resources.workers=2", "max_concurrent_trials=1", "num_to_keep=3", "train.steps=6"])

    def a_non_chief_worker(trial):
        chief = trial.last_result.get("rank0_pid")
        workers = [pid for pid, cmd in processes() if "RayTrainWorker" in cmd and pid != chief]
        return workers[0] if workers else chief

    kill = killer(a_non_chief_worker)
    # the dashboard serves the state API that Ray Train's controller polls
    outcome = run_search(search, callbacks=[kill], num_cpus=3, include_dashboard=True)
    assert kill.killed is not None, "no worker was killed"
    (row,) = read_table(Path(outcome.results_path))
    assert row["status"] == "TERMINATED" and row["step"] == "6"
    assert int(row["resumed_from_step"]) >= 3  # the restarted worker group continued from the checkpoint
    assert_best_dir_loads(Path(outcome.results_path) / "best")


# The driver of a one-trial-at-a-time search, killed (with its local Ray) at a chosen point of trial 00001:
#   callback  when its 3rd checkpoint is reported, before Tune registers it: the saved state lacks it;
#   prune     in the middle of deleting a checkpoint that num_to_keep prunes: a half-deleted folder;
#   stale     Tune saves its state once more after the 1st checkpoint, then never again; killed at the 3rd
#             (the test then deletes the checkpoint that state names, as a prune would have).
KILLING_DRIVER = """
import os, shutil, signal, sys
import ray.tune.execution.tune_controller as controller
from ray.tune import Callback
from chorus.cluster import ray_private
from chorus.cluster.search import run_search
from chorus.cluster.search_config import load_search

path, mode = sys.argv[1:]
die = lambda: os.killpg(0, signal.SIGKILL)
save, state = controller.TuneController.checkpoint, {"frozen": False}

def checkpoint(self, *args, **kwargs):
    state["controller"] = self
    if not state["frozen"]:
        save(self, *args, **kwargs)

def delete_then_die(fs, fs_path):
    if "_00001_" not in fs_path:
        return delete(fs, fs_path)
    shutil.rmtree(os.path.join(fs_path, "checkpoints"))
    die()

class KillAt(Callback):
    seen = 0

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
        if trial.trial_id.endswith("00001"):
            self.seen += 1
            if mode == "stale" and self.seen == 2:
                save(state["controller"], force=True, wait=True)
                state["frozen"] = True
            if mode in ("callback", "stale") and self.seen == 3:
                die()

controller.TuneController.checkpoint = checkpoint
delete = ray_private.replace_checkpoint_deleter(delete_then_die) if mode == "prune" else None
run_search(load_search(path), callbacks=[KillAt()])
"""
# CI runs the mid-prune kill; CHORUS_TEST_KILL_AT=callback,prune,stale runs each (loop it to soak).
KILL_AT = os.environ.get("CHORUS_TEST_KILL_AT", "prune").split(",")


def half_written_copy(trial_dir: Path) -> Path:
    """A checkpoint after the newest, cut short as by a kill mid-upload: its biggest file truncated."""
    ckpts = sorted(trial_dir.glob("checkpoint_*"))
    dest = trial_dir / f"checkpoint_{int(ckpts[-1].name.split('_')[-1]) + 1:06d}"
    shutil.copytree(ckpts[-1], dest)
    biggest = max((p for p in dest.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    biggest.write_bytes(biggest.read_bytes()[: biggest.stat().st_size // 2])
    return dest


@pytest.mark.parametrize("kill_at", KILL_AT)
def test_resume_after_the_driver_is_killed(tmp_path, data_cache, ray_env, kill_at):
    path = search_yaml(tmp_path, data_cache, experiment="resume-me",
                       extra="max_concurrent_trials: 1\ntrain: {steps: 15, eval_every: 3, checkpoint_every: 3}\n")
    store = tmp_path / "store" / "resume-me"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TUNE_GLOBAL_CHECKPOINT_S": "1"}
    log = tmp_path / "driver.log"
    with open(log, "w") as out:
        driver = subprocess.run([sys.executable, "-c", KILLING_DRIVER, str(path), kill_at], cwd=REPO, env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True, timeout=600)
    assert driver.returncode == -signal.SIGKILL, log.read_text()[-3000:]
    (first,) = store.glob("*_00000_*")
    (second,) = store.glob("*_00001_*")
    first_rows = len((first / "progress.csv").read_text().splitlines())
    if kill_at == "stale":
        shutil.rmtree(second / "checkpoint_000000")  # the one the saved state names, pruned since
    cut_short = half_written_copy(second)

    # the same command as before, not --resume: an interrupted search of the same settings is continued
    resumed = subprocess.run([sys.executable, "-m", "chorus", "search", str(path)], cwd=REPO,
                             env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert "experiment 'resume-me' was interrupted: resuming it" in resumed.stderr
    assert "chorus: resume: trial" in resumed.stderr
    # the trial processes import TensorFlow; Ray forwards their stderr (each line prefixed with the process), which
    # must not hold its native start-up
    from chorus.data.tfenv import NATIVE_LOG

    assert not [line for line in resumed.stderr.splitlines() if NATIVE_LOG.search(line.encode())], \
        resumed.stderr[-3000:]
    rows = {r["trial_id"][-5:]: r for r in read_table(tmp_path / "results" / "resume-me")}
    assert all(r["status"] == "TERMINATED" and r["step"] == "15" for r in rows.values()), rows
    # the finished trial was not rerun; the interrupted one continued from its newest complete checkpoint,
    # the 3rd (step 9), never from the half-written one after it
    assert len((first / "progress.csv").read_text().splitlines()) == first_rows
    assert rows["00000"]["resumed_from_step"] == "0"
    assert rows["00001"]["resumed_from_step"] == "9", rows
    assert not cut_short.exists()  # removed, and its number never reused
    assert_best_dir_loads(tmp_path / "results" / "resume-me" / "best")
    assert os.readlink(tmp_path / "results" / "latest") == "resume-me"
    # finished now: the same YAML again would keep it and run as resume-me-2; --resume only reports it
    from chorus.cluster.search import choose_experiment
    from chorus.cluster.search_config import load_search

    assert choose_experiment(load_search(path)) == ("resume-me-2", "new")
    again = subprocess.run([sys.executable, "-m", "chorus", "search", "--resume", str(store)], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "experiment 'resume-me' had finished" in again.stderr, again.stderr[-3000:]
    assert len((first / "progress.csv").read_text().splitlines()) == first_rows


def test_trials_run_warm_in_a_reused_process_and_a_time_budget_ends_the_search(tmp_path, data_cache, ray_env):
    """One lane, three trials: the second and third run in the first's process on its reset model (warm_start);
    then a search whose trials would run for hours ends at its time budget with results."""
    from ray.tune import ExperimentAnalysis

    from chorus.cluster.search import run_search
    from chorus.cluster.search_config import load_search

    search = load_search(search_yaml(tmp_path, data_cache, experiment="warm", extra="max_concurrent_trials: 1\n",
                                     space="{train.g_lr: {grid: [0.001, 0.0005, 0.002]}}"))
    outcome = run_search(search, num_cpus=2, include_dashboard=False)
    trials = sorted(ExperimentAnalysis(outcome.experiment_path).trials, key=lambda t: t.run_metadata.start_time)
    results = [t.last_result for t in trials]
    assert outcome.num_errors == 0 and all(r["step"] == 9 for r in results)
    assert len({r["pid"] for r in results}) == 1  # one process ran all three
    assert [r["warm_start"] for r in results] == [0.0, 1.0, 1.0]
    assert all(r["start_up_s"] > 0 for r in results)

    budget = load_search(search_yaml(tmp_path, data_cache, experiment="budget", extra="time_budget_s: 60\n"),
                         overrides=["train.steps=100000"])
    outcome = run_search(budget, num_cpus=2, include_dashboard=False)
    rows = read_table(Path(outcome.results_path))
    assert outcome.num_errors == 0 and len(rows) == 2
    steps = [int(r["step"] or 0) for r in rows]  # a trial still starting when the budget ran out has none
    assert max(steps) >= 3 and all(s < 100000 for s in steps)
    assert_best_dir_loads(Path(outcome.results_path) / "best")
