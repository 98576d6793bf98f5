"""S3 as Ray's storage_path, against a local S3 server (moto's server mode on 127.0.0.1).

Nothing in chorus names an endpoint: pyarrow, which Ray Tune and cluster.results both use for s3:// URIs, reads
AWS_ENDPOINT_URL_S3 (or AWS_ENDPOINT_URL) like the AWS SDKs do, so the tests only set the standard variables.
On EC2 those stay unset and the instance profile supplies the credentials.
"""
from __future__ import annotations

import csv
import textwrap

import boto3  # a hard dependency (requirements.txt); moto[server] is a dev one (pip install -e '.[dev]')
import pytest
from tests_support import free_port, run_chorus

BUCKET = "chorus-test"


@pytest.fixture(scope="module")
def s3():
    """A moto S3 server on a free loopback port, the AWS variables that point at it, and one empty bucket."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    with pytest.MonkeyPatch.context() as mp:
        for key, value in {"AWS_ENDPOINT_URL_S3": endpoint, "AWS_ACCESS_KEY_ID": "testing",
                           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1",
                           "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}.items():
            mp.setenv(key, value)
        for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
            mp.delenv(key, raising=False)
        client = boto3.client("s3", endpoint_url=endpoint)
        client.create_bucket(Bucket=BUCKET)
        yield client
    server.stop()


def keys(client, prefix: str) -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def test_results_helpers_read_and_write_s3(s3, tmp_path):
    from chorus.cluster import results

    base = f"s3://{BUCKET}/helpers"
    results.write_text(results.join(base, "a", "note.txt"), "hello")
    assert results.exists(results.join(base, "a", "note.txt"))
    assert results.read_text(results.join(base, "a", "note.txt")) == "hello"
    assert keys(s3, "helpers/a/") and not results.exists(results.join(base, "missing"))
    (tmp_path / "up" / "sub").mkdir(parents=True)
    (tmp_path / "up" / "sub" / "x.bin").write_bytes(b"\0" * 100)
    results.copy_tree(str(tmp_path / "up"), results.join(base, "up"))
    results.copy_tree(results.join(base, "up"), str(tmp_path / "down"))
    assert (tmp_path / "down" / "sub" / "x.bin").read_bytes() == b"\0" * 100


@pytest.mark.ray
@pytest.mark.slow
def test_search_checkpoints_to_s3_and_results_pull_fetches_them(s3, tmp_path, data_cache, ray_env):
    from chorus.cluster.search import run_search
    from chorus.cluster.search_config import load_search

    experiment = "s3-search"
    path = tmp_path / "search.yaml"
    path.write_text(textwrap.dedent(f"""\
        experiment: {experiment}
        base: configs/tiny.yaml
        space: {{}}
        num_samples: 1
        resources: {{cpus: 1}}
        max_concurrent_trials: 1
        max_failures: 0
        num_to_keep: 2
        storage_path: s3://{BUCKET}/searches
        results_dir: {tmp_path / 'results'}
        data: {{cache_dir: {data_cache}}}
        train: {{steps: 6, eval_every: 3, checkpoint_every: 3, sample_every: 3, log_every: 3}}
        """))
    outcome = run_search(load_search(path), num_cpus=1, include_dashboard=False)
    assert outcome.num_trials == 1 and outcome.num_errors == 0
    assert outcome.experiment_path == f"s3://{BUCKET}/searches/{experiment}"

    # the trial's checkpoints (run dirs with the model bundle) and Tune's experiment state are in the bucket
    stored = keys(s3, f"searches/{experiment}/")
    checkpoints = {k.split("/checkpoint_")[1].split("/")[0] for k in stored if "/checkpoint_" in k}
    assert checkpoints, stored[:20]
    assert any(k.endswith("config.yaml") and "/checkpoint_" in k for k in stored)
    assert any(k.rsplit("/", 1)[-1].startswith("experiment_state") for k in stored)

    # `chorus results pull` in a fresh process brings them home, collecting the experiment on the way
    home = tmp_path / "home"
    proc = run_chorus("results", "pull", outcome.experiment_path, str(home), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    pulled = home / experiment
    with open(pulled / "trials.csv") as f:
        (row,) = list(csv.DictReader(f))
    assert row["status"] == "TERMINATED" and row["step"] == "6"
    from chorus.trainer.generate import load_run

    assert load_run(pulled / "best").step > 0
    assert (pulled / "report.html").is_file() and list((pulled / "samples").glob("*.mid"))

