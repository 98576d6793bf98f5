"""The trainer on a tiny config: real training steps, run directory contents, exact resume, strategy choice."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tests_support import checkpoint_tensors, listing

from chorus.errors import InputError


def test_lab_preset_has_the_lab_parameter_counts():
    from chorus.trainer.config import CONFIG_DIR, load_config
    from chorus.trainer.model import build_critic, build_generator

    cfg = load_config(CONFIG_DIR / "lab.yaml")
    g, d = build_generator(cfg), build_critic(cfg)
    assert g.count_params() == 8_273_540
    assert d.count_params() == 2_766_785
    assert tuple(g.output.shape[1:]) == (32, 128, 4)
    assert tuple(g.inputs[1].shape[1:]) == (2, 8, 512)
    assert tuple(d.output.shape[1:]) == (1,)


def test_upsample_matches_keras_upsampling_in_value_and_gradient():
    """Upsample2x stands in for UpSampling2D so that XLA can compile the gradient: both must agree."""
    from chorus.data import tfenv
    from chorus.trainer.model import Upsample2x

    tf, keras = tfenv.tensorflow(), tfenv.keras()

    x = tf.constant(np.random.default_rng(0).random((2, 3, 4, 5)).astype("float32"))
    upstream = tf.constant(np.random.default_rng(1).random((2, 6, 8, 5)).astype("float32"))  # a non-uniform dL/dy
    values, grads = [], []
    for layer in (Upsample2x(), keras.layers.UpSampling2D(2)):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            loss = tf.reduce_sum(y * upstream)
        values.append(y.numpy())
        grads.append(tape.gradient(loss, x).numpy())
    np.testing.assert_array_equal(values[0], values[1])
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-6)
    # The gradient is the sum of upstream over each 2x2 block, not a copy of x: the check has teeth.
    np.testing.assert_allclose(grads[0], upstream.numpy().reshape(2, 3, 2, 4, 2, 5).sum(axis=(2, 4)), rtol=1e-6)


def test_upsample_gradient_compiles_under_xla():
    from chorus.data import tfenv
    from chorus.trainer.model import Upsample2x

    tf = tfenv.tensorflow()

    layer = Upsample2x()

    @tf.function(jit_compile=True)
    def grad(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(layer(x) ** 2)
        return tape.gradient(loss, x)

    x = tf.ones((1, 2, 2, 1))
    np.testing.assert_allclose(grad(x).numpy(), np.full((1, 2, 2, 1), 8.0))  # 4 copies, d(y^2)/dy = 2


@pytest.mark.parametrize("name, workers, gpus, expected", [
    ("auto", 1, 0, "default"), ("auto", 1, 1, "default"), ("auto", 1, 2, "mirrored"),
    ("auto", 2, 0, "multi_worker"), ("auto", 3, 4, "multi_worker"), ("mirrored", 1, 0, "mirrored"),
    ("default", 4, 8, "default"),
])
def test_auto_strategy_choice(name, workers, gpus, expected):
    from chorus.trainer.distribute import resolve_strategy_name

    assert resolve_strategy_name(name, workers, gpus) == expected


def test_tf_config_parsing(monkeypatch):
    from chorus.trainer.distribute import tf_config_workers

    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["a:1", "b:2"]},
                                                "task": {"type": "worker", "index": 1}}))
    assert tf_config_workers() == (2, "worker", 1)
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(InputError, match="TF_CONFIG"):
        tf_config_workers()


def _summary_tags(logdir: Path) -> set[str]:
    from chorus.data import tfenv

    summary_iterator = tfenv.tensorflow().compat.v1.train.summary_iterator
    return {v.tag for f in logdir.glob("events.out.tfevents.*") for e in summary_iterator(str(f))
            for v in e.summary.value}


def test_configure_devices_warns_when_it_cannot_apply(capsys):
    from chorus.data import tfenv
    from chorus.trainer.distribute import configure_devices

    tf = tfenv.tensorflow()

    have = len(tf.config.list_logical_devices("CPU"))  # starts the runtime: device settings are now fixed
    configure_devices(have, 0)
    assert "not applied" not in capsys.readouterr().err  # nothing asked that is not already so
    configure_devices(have + 1, 0)
    err = capsys.readouterr().err
    assert f"not applied: train.cpu_devices={have + 1} (running with {have} logical CPU(s))" in err


@pytest.mark.slow
def test_tiny_run_with_xla(make_tiny):
    """jit_compile: true (off by default: 2.1-2.7x slower on CPU here; the option for GPUs) trains too."""
    from chorus.trainer import train
    from chorus.trainer.config import load_config

    assert load_config().train.jit_compile is False
    result = train(make_tiny("train.jit_compile=true", "train.steps=3"))
    assert result.step == 3
    for key in ("d_loss", "g_loss", "gradient_penalty", "music_distance"):
        assert np.isfinite(result.metrics[key]), key


def test_tiny_run_writes_everything_and_reports(tiny_cfg):
    from chorus.trainer import train

    reports = []
    result = train(tiny_cfg, report=reports.append)
    run = Path(tiny_cfg.run.dir)
    assert result.step == tiny_cfg.train.steps
    assert (run / "config.yaml").is_file() and (run / "versions.json").is_file()
    assert (run / "checkpoints" / "checkpoint").is_file()
    assert (run / "checkpoints" / "config.yaml").is_file()
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == sorted({r["step"] for r in rows})
    assert any("music_distance" in r for r in rows)
    assert np.isfinite(result.metrics["music_distance"])
    mids = sorted((run / "samples").glob("step-*/sample-*.mid"))
    assert len(mids) == 2 * tiny_cfg.sample.num and all(m.with_suffix(".png").is_file() for m in mids)
    assert all(m.with_suffix(".wav").is_file() and m.with_name(m.name.replace("sample", "real")).is_file()
               for m in mids)  # audio, and the real harmonization of the same melody beside each sample
    assert "samples/generated" in _summary_tags(run / "tensorboard")  # TensorBoard audio
    # Reports come at eval and checkpoint steps with the metric; checkpoints arrive as self-contained dirs.
    assert [r.step for r in reports] == [3, 6]
    assert all(r.is_chief and "music_distance" in r.metrics for r in reports)
    assert all(r.checkpoint is not None for r in reports)


def test_resume_is_exact(make_tiny, tmp_path):
    """6 steps in one go == 3 steps, stop, resume to 6: same weights, optimizer slots, RNG and data position."""
    from chorus.trainer import train

    train(make_tiny(f"run.dir={tmp_path / 'straight'}"))
    train(make_tiny(f"run.dir={tmp_path / 'split'}", "train.steps=3"))
    resumed = train(make_tiny(f"run.dir={tmp_path / 'split'}"))
    assert resumed.step == 6
    a, b = checkpoint_tensors(tmp_path / "straight"), checkpoint_tensors(tmp_path / "split")
    assert a.keys() == b.keys() and any("rng" in k for k in a) and any("data_position" in k for k in a)
    assert any(k.startswith("ema_generator/") for k in a)  # the default's moving average resumes exactly too
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-5, atol=1e-6, err_msg=name)



def test_resume_refuses_a_different_model(make_tiny):
    from chorus.trainer import train

    cfg = make_tiny("train.steps=3")
    train(cfg)
    before = listing(cfg.run.dir)
    with pytest.raises(InputError, match="model.width"):
        train(make_tiny("model.width=8"))
    assert listing(cfg.run.dir) == before


def test_refuses_a_foreign_run_dir(make_tiny, tmp_path):
    from chorus.trainer import train

    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"x")
    with pytest.raises(InputError, match="holds no chorus run"):
        train(make_tiny(f"run.dir={foreign}"))
    assert [p.name for p in foreign.iterdir()] == ["holiday.jpg"]


def test_resume_from_a_checkpoint_dir_takes_the_configs_learning_rate(make_tiny, tmp_path):
    """PBT hands a trial another trial's checkpoint with mutated hyperparameters: they must take effect."""
    import shutil

    from chorus.data import tfenv
    from chorus.trainer import train

    tf = tfenv.tensorflow()

    exported = tmp_path / "exported"
    # The report's directory is replaced after the callback returns; keep a copy as Ray would.
    train(make_tiny(f"run.dir={tmp_path / 'b'}", "train.steps=3"),
          report=lambda r: r.checkpoint and shutil.copytree(r.checkpoint, exported, dirs_exist_ok=True))
    result = train(make_tiny(f"run.dir={tmp_path / 'c'}", "train.steps=4", "train.g_lr=0.0002"),
                   resume_from=str(exported))
    assert result.step == 4
    reader = tf.train.load_checkpoint(result.checkpoint)
    lr = [reader.get_tensor(n) for n in reader.get_variable_to_shape_map()
          if n.startswith("g_opt/") and "learning_rate" in n]
    assert lr and np.isclose(lr[0], 0.0002)


def test_ema_generator_is_the_moving_average_of_the_weights(make_tiny):
    """train.ema_decay: after an iteration the averaged generator is d * before + (1 - d) * after, for every weight
    (BatchNorm statistics too), with d = min(ema_decay, (1 + t) / (10 + t)) after t updates, and
    it is what samples; off, the generator samples itself."""
    from chorus.data.pipeline import make_dataset
    from chorus.trainer.distribute import choose_strategy
    from chorus.trainer.gan import WGANGP
    from chorus.trainer.model import pipeline_options
    from chorus.trainer.run import load_training_data

    cfg = make_tiny("train.ema_decay=0.2")
    dist = choose_strategy("default")
    gan = WGANGP(cfg, dist)
    assert gan.sampler is gan.ema_generator
    start = [w.numpy() for w in gan.generator.weights]
    assert all(np.array_equal(a, e.numpy()) for a, e in zip(start, gan.ema_generator.weights, strict=True))
    rolls = load_training_data(cfg, verbose=False).train
    batches = iter(dist.strategy.distribute_datasets_from_function(
        lambda ctx: make_dataset(rolls, global_batch=cfg.train.batch_size, seed=0, input_context=ctx,
                                 **pipeline_options(cfg))))
    ema = [w.numpy() for w in gan.ema_generator.weights]
    for t in range(3):  # d = 0.1, 2/11, then the configured 0.2
        decay = min(0.2, (1 + t) / (10 + t))
        before = [w.numpy() for w in gan.generator.weights]
        gan.train_iteration(batches)
        after = [w.numpy() for w in gan.generator.weights]
        assert sum(not np.array_equal(a, b) for a, b in zip(before, after, strict=True)) > len(before) // 2
        ema = [decay * e + (1 - decay) * a for e, a in zip(ema, after, strict=True)]
        for want, got in zip(ema, gan.ema_generator.weights, strict=True):
            np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-6, err_msg=f"update {t}")

    plain = WGANGP(make_tiny("train.ema_decay=0"), dist)
    assert plain.ema_generator is None and plain.sampler is plain.generator


def test_a_run_with_a_moving_average_generates_from_it(make_tiny):
    """`chorus generate`/`evaluate` load the averaged generator of a run trained with train.ema_decay, the one its
    samples and evaluations came from; the raw generator's objective is reported beside it."""
    from chorus.data import tfenv
    from chorus.trainer import train
    from chorus.trainer.generate import load_run
    from chorus.trainer.model import build_generator

    tf = tfenv.tensorflow()

    cfg = make_tiny("train.ema_decay=0.5", "train.steps=3")
    result = train(cfg)
    assert np.isfinite(result.metrics["music_distance_raw"])
    assert result.metrics["music_distance_raw"] != result.metrics["music_distance"]
    run = load_run(cfg.run.dir)
    restored = {}
    for name in ("generator", "ema_generator"):
        restored[name] = build_generator(cfg)
        tf.train.Checkpoint(**{name: restored[name]}).restore(run.checkpoint).expect_partial()
    loaded = run.generator.get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(loaded, restored["ema_generator"].get_weights(), strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(loaded, restored["generator"].get_weights(), strict=True))
