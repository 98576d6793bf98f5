"""Bad input to every subcommand: one line on stderr (`chorus: error: ...` naming the file or key), nothing on
stdout, exit 2, and no work started.

"No work started" is checked, not assumed: each command runs with a `tensorflow` (and, where no cluster is
involved, a `ray`) package on PYTHONPATH that exits loudly when imported. A check that ran after TensorFlow's import
would print that instead of its line.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from tests_support import REPO, TINY

TRAP = "raise SystemExit('{name} was imported before the input was checked')\n"


@pytest.fixture(scope="module")
def trap(tmp_path_factory) -> dict[str, Path]:
    """Two PYTHONPATH folders: one where importing tensorflow fails, one where ray fails too."""
    root = tmp_path_factory.mktemp("trap")
    dirs = {}
    for label, names in (("tf", ["tensorflow", "tf_keras"]), ("tf+ray", ["tensorflow", "tf_keras", "ray"])):
        d = root / label.replace("+", "_")
        for name in names:
            (d / name).mkdir(parents=True)
            (d / name / "__init__.py").write_text(TRAP.format(name=name))
        dirs[label] = d
    return dirs


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory) -> Path:
    """A folder that passes the run-dir check (config.yaml, a checkpoint state file) and holds no weights."""
    run = tmp_path_factory.mktemp("fake-run")
    (run / "config.yaml").write_text(TINY.read_text())
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "checkpoint").write_text('model_checkpoint_path: "ckpt-1"\n')
    return run


@pytest.fixture(scope="module")
def silent_midi(tmp_path_factory) -> Path:
    import pretty_midi

    path = tmp_path_factory.mktemp("midi") / "silent.mid"
    pm = pretty_midi.PrettyMIDI()
    pm.instruments.append(pretty_midi.Instrument(0))
    pm.write(str(path))
    return path


def chorus(args: list[str], trap_dir: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "CHORUS_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(trap_dir), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return subprocess.run([sys.executable, "-m", "chorus", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)


def yaml_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "search.yaml"
    path.write_text(textwrap.dedent(text))
    return str(path)


UNREACHABLE = ["--address", "http://127.0.0.1:9", "--cluster-wait", "0"]  # port 9 (discard): nothing listens

# (id, trap, args (may use {tmp}, {run}, {silent}), what the one line must say)
CASES = [
    ("search-unknown-metric", "tf+ray", ["search", "{yaml:metric: accuracy}"], ["metric", "'accuracy'"]),
    ("search-near-metric", "tf+ray", ["search", "configs/search.yaml", "--set", "metric=music_distanc"],
     ["metric", "did you mean 'music_distance'"]),
    ("search-bad-mode", "tf+ray", ["search", "{yaml:mode: sideways}"], ["mode", "sideways"]),
    ("search-unknown-key", "tf+ray", ["search", "{yaml:num_sampels: 3}"], ["num_sampels", "num_samples"]),
    ("search-bad-space", "tf+ray", ["search", "{yaml:space: {train.g_lr: {uniform: [1]}}}"], ["space.train.g_lr"]),
    ("search-missing-file", "tf+ray", ["search", "{tmp}/nope.yaml"], ["nope.yaml"]),
    ("search-reserved-name", "tf+ray", ["search", "configs/search.yaml", "--set", "experiment=latest"],
     ["experiment", "latest"]),
    ("search-nothing", "tf+ray", ["search"], ["search YAML"]),
    ("resume-nothing", "tf+ray", ["search", "--resume", "{tmp}/no-such-experiment"], ["no-such-experiment"]),
    ("train-bad-yaml", "tf+ray", ["train", "--config", "{yaml:train: {steps: 3}"], ["search.yaml", "YAML"]),
    ("train-unknown-key", "tf+ray", ["train", "--set", "train.stepz=3"], ["train.stepz", "train.steps"]),
    ("train-multi-worker-without-tf-config", "tf+ray", ["train", "--set", "train.strategy=multi_worker"],
     ["train.strategy", "TF_CONFIG"]),
    ("generate-missing-run", "tf+ray", ["generate", "--run", "{tmp}/missing_dir"], ["missing_dir", "run directory"]),
    ("generate-run-without-checkpoint", "tf+ray", ["generate", "--run", "{tmp}"], ["config.yaml"]),
    ("generate-silent-melody", "tf+ray", ["generate", "--run", "{run}", "--melody", "{silent}"], ["silent.mid"]),
    ("generate-missing-melody", "tf+ray", ["generate", "--run", "{run}", "--melody", "{tmp}/tune.mid"],
     ["tune.mid"]),
    ("generate-no-samples", "tf+ray", ["generate", "--run", "{run}", "--num", "0"], ["--num"]),
    ("evaluate-missing-run", "tf+ray", ["evaluate", "--run", "{tmp}/missing_dir"], ["missing_dir"]),
    ("data-missing-npy", "tf+ray", ["data", "build", "--source", "npy", "--path", "{tmp}/x.npy"], ["x.npy"]),
    ("data-info-missing", "tf+ray", ["data", "info", "{tmp}/nothing"], ["nothing"]),
    ("submit-no-command", "tf", ["submit", *UNREACHABLE], ["give the chorus command"]),
    ("submit-bad-env", "tf", ["submit", *UNREACHABLE, "--env", "NOEQUALS", "--", "search", "x.yaml"], ["--env"]),
    ("submit-negative-retries", "tf", ["submit", *UNREACHABLE, "--head-retries", "-1", "--", "search", "x.yaml"],
     ["--head-retries"]),
    ("submit-unreachable", "tf", ["submit", *UNREACHABLE, "--", "search", "x.yaml"], ["127.0.0.1:9", "cannot reach"]),
    ("jobs-unreachable", "tf", ["jobs", *UNREACHABLE], ["127.0.0.1:9", "cannot reach"]),
    ("jobs-stop-unreachable", "tf", ["jobs", *UNREACHABLE, "stop", "raysubmit_x"], ["127.0.0.1:9"]),
    ("logs-unreachable", "tf", ["logs", "raysubmit_x", *UNREACHABLE], ["127.0.0.1:9"]),
    ("results-pull-missing", "tf+ray", ["results", "pull", "{tmp}/none", "{tmp}/home"], ["none", "not found"]),
]


@pytest.mark.parametrize("trap_label, args, needles", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_exit_2_before_any_work(trap_label, args, needles, trap, fake_run, silent_midi,
                                                          tmp_path):
    def fill(arg: str) -> str:
        if arg.startswith("{yaml:"):
            return yaml_file(tmp_path, "experiment: bad-input\n" + arg[len("{yaml:"):-1] + "\n")
        return arg.format(tmp=tmp_path, run=fake_run, silent=silent_midi)

    argv = [fill(a) for a in args]
    before = sorted(p.name for p in tmp_path.iterdir())
    proc = chorus(argv, trap[trap_label])
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("chorus: error: "), \
        f"exit {proc.returncode}\n--- stderr\n{proc.stderr[-3000:]}\n--- stdout\n{proc.stdout[-1000:]}"
    assert proc.stdout == "", proc.stdout[-1000:]
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written
