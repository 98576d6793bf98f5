"""cluster/aws.yaml and cluster/aws-setup.sh, checked without AWS: Ray's own schema and config preparation, the
image tag against the project version, the same `ray start` settings and token auth as the compose cluster, the
IAM profiles, and security-group rules that open SSH to one CIDR and no Ray port to anyone.

The set-up script runs against a fake `aws` command that records its calls.
"""
from __future__ import annotations

import copy
import json
import os
import re
import shlex
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
AWS_YAML = REPO / "cluster" / "aws.yaml"
SETUP = REPO / "cluster" / "aws-setup.sh"
RAY_PORTS = {6379, 8265, 10001, 8076, 52365}  # GCS, dashboard/Jobs, client, object manager, dashboard agent
WORLD = ("0.0.0.0/0", "::/0")


@pytest.fixture(scope="module")
def cfg() -> dict:
    return yaml.safe_load(AWS_YAML.read_text())


@pytest.fixture(scope="module")
def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def requirements() -> list[str]:
    lines = (REPO / "requirements.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def run_options_env(cfg: dict) -> dict[str, str]:
    env = {}
    for opt in cfg["docker"]["run_options"]:
        parts = shlex.split(opt)
        if parts[0] in ("-e", "--env"):
            key, value = parts[1].split("=", 1)
            env[key] = value
    return env


def ray_start(commands: list[str]) -> list[str]:
    (cmd,) = [c for c in commands if c.startswith("ray start")]
    return shlex.split(cmd)[2:]


def flag(args: list[str], name: str) -> str | None:
    for a in args:
        if a == name:
            return ""
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return None


def compose_default(value: str) -> str:
    """${VAR:-default} -> default (the value docker compose uses when VAR is unset)."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)


# ------------------------------------------------------------------------------------------------------- schema


def test_validates_against_the_schema_the_installed_ray_ships(cfg):
    import jsonschema
    import ray.autoscaler

    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    jsonschema.validate(cfg, schema)


def test_ray_prepares_it_without_adding_setup_commands(cfg):
    """`ray up` merges Ray's AWS defaults, whose setup commands pip-install a Ray wheel and boto3; ours are empty."""
    from chorus.cluster.ray_private import prepare_autoscaler_config, validate_autoscaler_config

    prepared = prepare_autoscaler_config(copy.deepcopy(cfg))
    validate_autoscaler_config(prepared)
    assert prepared["head_setup_commands"] == [] and prepared["worker_setup_commands"] == []
    assert not any("pip install" in c for c in prepared["initialization_commands"])
    assert prepared["idle_timeout_minutes"] > 0
    assert prepared["available_node_types"]["head"]["max_workers"] == 0


# -------------------------------------------------------------------------------------------------------- image


def test_images_are_pinned_to_the_project_version(cfg, pyproject):
    version = pyproject["project"]["version"]
    cpu = cfg["docker"]["image"]
    gpu = cfg["available_node_types"]["gpu_worker"]["docker"]["worker_image"]
    assert "head_image" not in cfg["docker"] and "worker_image" not in cfg["docker"]  # head, CPU workers: cpu image
    for image, flavour in ((cpu, "cpu"), (gpu, "gpu")):
        registry, _, name = image.rpartition("/")
        assert name == f"chorus:{version}-{flavour}", image
        assert "latest" not in image
    assert cpu.rpartition("/")[0] == gpu.rpartition("/")[0], "both images come from the same registry"
    # ...which is what aws-setup.sh push builds (docker/build.sh, --gpu for the CUDA wheels) and pushes
    script = SETUP.read_text()
    assert 'REPO_NAME=chorus' in script and '$REPO_NAME:$VERSION-$flavour' in script
    build = (REPO / "docker" / "build.sh").read_text()
    assert re.search(r'TF_EXTRA="\[and-cuda\]"', build) and '--build-arg TF_EXTRA="$TF_EXTRA"' in build


def test_region_and_registry_agree_everywhere(cfg):
    region = cfg["provider"]["region"]
    registry = cfg["docker"]["image"].rpartition("/")[0]
    assert registry.endswith(f".dkr.ecr.{region}.amazonaws.com")
    (login,) = cfg["initialization_commands"]
    assert f"--region {region}" in login and login.endswith(registry)
    assert f'REGION="${{REGION:-{region}}}"' in SETUP.read_text()


def test_the_image_has_what_the_ray_version_needs(cfg, pyproject):
    """Same Ray on the laptop (`ray up`), in the image (built from pyproject's pins) and in the compose cluster."""
    import ray

    (pin,) = [d for d in requirements() if d.startswith("ray[")]
    assert pin.endswith(f"=={ray.__version__}") and ray.__version__ == "2.60.0"
    dockerfile = (REPO / "docker" / "Dockerfile").read_text()
    assert "requirements.txt" in dockerfile and "constraints.txt" in dockerfile
    every_command = [*cfg["setup_commands"], *cfg["head_start_ray_commands"], *cfg["worker_start_ray_commands"]]
    assert not any("pip" in c for c in every_command), "nothing may install another Ray into the image"


def test_image_has_what_the_cluster_launcher_needs(pyproject):
    """Ray's autoscaler on the head SSHes and rsyncs into workers and calls EC2 through boto3."""
    dockerfile = (REPO / "docker" / "Dockerfile").read_text()
    assert "openssh-client" in dockerfile and "rsync" in dockerfile
    assert any(d.startswith("boto3==") for d in requirements())


def test_gpu_workers_get_the_gpus_and_everyone_an_explicit_shm_size(cfg):
    assert any(o.startswith("--shm-size=") for o in cfg["docker"]["run_options"])
    gpu = cfg["available_node_types"]["gpu_worker"]
    assert "--gpus all" in gpu["docker"]["worker_run_options"]
    assert gpu["node_config"]["InstanceType"].startswith(("g", "p"))
    assert "InstanceMarketOptions" in cfg["available_node_types"]["cpu_worker"]["node_config"]  # spot allowed
    # no port is published from any container (host networking; the security group is the only door)
    for opt in cfg["docker"]["run_options"] + gpu["docker"]["worker_run_options"]:
        assert shlex.split(opt)[0] not in ("-p", "--publish", "-P", "--publish-all", "--network", "--net")


# ---------------------------------------------------------------------------------------- ray start and token auth


def test_head_schedules_no_trials(cfg):
    head = cfg["available_node_types"][cfg["head_node_type"]]
    assert head["resources"] == {"CPU": 0}
    assert flag(ray_start(cfg["head_start_ray_commands"]), "--num-cpus") == "0"


def test_start_commands_match_the_compose_cluster(cfg, compose):
    services = compose["services"]
    # the same flags as the compose head, except sizes per machine (--memory) and --block (the launcher's job)
    compose_head = [compose_default(a) for a in services["ray-head"]["command"][2:]]
    aws_head = ray_start(cfg["head_start_ray_commands"])
    for arg in compose_head:
        name = arg.split("=", 1)[0]
        if name in ("--memory", "--block"):
            continue
        if name == "--object-store-memory":
            assert flag(aws_head, name), name
            continue
        assert arg in aws_head, f"{arg} (compose head) is missing from head_start_ray_commands"
    assert flag(aws_head, "--autoscaling-config") == "~/ray_bootstrap_config.yaml"
    # workers join the head's GCS port; sizes come from the instance type
    compose_worker = [compose_default(a) for a in services["ray-worker"]["command"][2:]]
    aws_worker = ray_start(cfg["worker_start_ray_commands"])
    port = flag(compose_worker, "--address").rsplit(":", 1)[1]
    assert flag(aws_worker, "--address") == f"$RAY_HEAD_IP:{port}"
    assert flag(aws_worker, "--object-store-memory")
    # the same Ray (auth) settings in every container; CHORUS_* paths differ on purpose (the compose cluster's
    # shared volume vs the storage_path an EC2 search sets, an s3:// bucket)
    env = run_options_env(cfg)
    for service in ("ray-head", "ray-worker"):
        ray_env = {k: v for k, v in services[service]["environment"].items() if k.startswith("RAY_")}
        assert ray_env, service
        for key, value in ray_env.items():
            assert env.get(key) == str(value), f"{key} differs from the compose {service}"
    assert env["RAY_AUTH_MODE"] == "token"
    # and Ray refuses to start without the token
    for commands in (cfg["head_start_ray_commands"], cfg["worker_start_ray_commands"]):
        guard = commands.index(next(c for c in commands if "RAY_AUTH_TOKEN_PATH" in c))
        assert guard < commands.index(next(c for c in commands if c.startswith("ray start")))


def test_object_store_fits_in_shm(cfg):
    shm = next(o for o in cfg["docker"]["run_options"] if o.startswith("--shm-size="))
    shm_bytes = int(shm.split("=")[1].rstrip("g")) * 2**30
    for commands in (cfg["head_start_ray_commands"], cfg["worker_start_ray_commands"]):
        assert int(flag(ray_start(commands), "--object-store-memory")) < shm_bytes


def test_token_is_shipped_by_file_mounts(cfg, compose):
    token_path = run_options_env(cfg)["RAY_AUTH_TOKEN_PATH"]
    remote_dir, name = token_path.rsplit("/", 1)
    local = cfg["file_mounts"][remote_dir]
    # the folder docker/token.sh fills and compose reads its secret from (git-ignored)
    assert compose_default(compose["secrets"]["ray_token"]["file"]) == f"./{local}/{name}"
    assert f'DIR="${{CHORUS_SECRETS_DIR:-{local}}}"' in (REPO / "docker" / "token.sh").read_text()
    assert f"/{local}/" in (REPO / ".gitignore").read_text().splitlines()


# ------------------------------------------------------------------------------------------------ IAM and network


def test_head_and_workers_have_their_instance_profiles(cfg):
    types = cfg["available_node_types"]
    assert types["head"]["node_config"]["IamInstanceProfile"] == {"Name": "chorus-ray-head"}
    for name, node in types.items():
        if name != cfg["head_node_type"]:
            assert node["node_config"]["IamInstanceProfile"] == {"Name": "chorus-ray-worker"}, name


def test_ray_keeps_the_configured_profile_and_security_groups(cfg):
    """Ray creates neither its default head profile nor a security group with SSH from 0.0.0.0/0."""
    from chorus.cluster.ray_private import (
        aws_configure_iam_role,
        aws_configure_security_group,
        prepare_autoscaler_config,
    )

    prepared = prepare_autoscaler_config(copy.deepcopy(cfg))
    prepared["head_node"] = {}
    assert "security_group" not in cfg["provider"]
    assert all("SecurityGroupIds" in n["node_config"] for n in cfg["available_node_types"].values())
    # both return before any AWS call when the config names its own profile and groups
    assert aws_configure_iam_role(copy.deepcopy(prepared)) == prepared
    assert aws_configure_security_group(copy.deepcopy(prepared)) == prepared


def test_policies_scope_storage_to_one_bucket_and_the_head_to_its_cluster(cfg):
    storage = json.loads((REPO / "cluster" / "aws-iam-policy.json").read_text())
    for st in storage["Statement"]:
        actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        if any(a.startswith("s3:") for a in actions):
            assert "*" not in "".join(actions)
            assert st["Resource"] in ("arn:aws:s3:::EDIT-BUCKET", "arn:aws:s3:::EDIT-BUCKET/*")
    head = json.loads((REPO / "cluster" / "aws-head-policy.json").read_text())
    by_sid = {st["Sid"]: st for st in head["Statement"]}
    assert by_sid["WorkersGetTheWorkerProfile"]["Resource"].endswith(":role/chorus-ray-worker")
    condition = by_sid["RayAutoscalerStopsOnlyThisClustersInstances"]["Condition"]["StringEquals"]
    assert condition["ec2:ResourceTag/ray-cluster-name"] == cfg["cluster_name"]
    assert not any("s3:" in json.dumps(st["Action"]) for st in head["Statement"])


def test_no_world_open_address_in_the_config():
    code = "\n".join(line.split(" #")[0] for line in AWS_YAML.read_text().splitlines())
    for world in WORLD:
        assert world not in code


def test_edit_markers_sit_next_to_every_placeholder():
    lines = AWS_YAML.read_text().splitlines()
    for i, line in enumerate(lines):
        if re.search(r"ACCOUNT_ID|sg-EDIT|EDIT-", line.split(" #")[0]):
            assert any("# EDIT:" in lines[j] for j in range(max(0, i - 4), i + 1)), f"line {i + 1}: {line}"


# ---------------------------------------------------------------------------------------- aws-setup.sh, fake aws

FAKE_AWS = r"""#!/usr/bin/env bash
# Records each call (one JSON array of arguments a line) and the files it names; answers as a fresh account would.
python3 -c 'import json, sys; print(json.dumps(sys.argv[1:]))' "$@" >> "$AWS_LOG"
for a in "$@"; do
    case "$a" in file://*) cp "${a#file://}" "$AWS_LOG.$(basename "${a#file://}")" ;; esac
done
case "$1 $2" in
    "s3api head-bucket"|"iam get-role"|"iam get-instance-profile"|"ecr describe-repositories") exit 254 ;;
    "ec2 describe-vpcs") echo vpc-0fake ;;
    "ec2 describe-security-groups") echo None ;;
    "ec2 create-security-group") echo sg-0fake ;;
    "sts get-caller-identity") echo 000000000000 ;;
esac
"""


def run_setup(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess, list[list[str]]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "aws").write_text(FAKE_AWS)
    (bin_dir / "aws").chmod(0o755)
    log = tmp_path / "aws.log"
    full_env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "AWS_LOG": str(log), **env}
    proc = subprocess.run(["bash", str(SETUP)], env=full_env, capture_output=True, text=True, timeout=60)
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return proc, calls


def arg(call: list[str], name: str) -> str:
    return call[call.index(name) + 1]


def test_setup_script_opens_ssh_to_the_cidr_and_nothing_else(tmp_path):
    proc, calls = run_setup(tmp_path, BUCKET="chorus-test-bucket", SSH_CIDR="203.0.113.7/32")
    assert proc.returncode == 0, proc.stderr
    assert "sg-0fake" in proc.stdout and "s3://chorus-test-bucket/" in proc.stdout
    (ingress,) = [c for c in calls if c[:2] == ["ec2", "authorize-security-group-ingress"]]
    rules = json.loads(arg(ingress, "--ip-permissions"))
    for rule in rules:
        ranges = [r["CidrIp"] for r in rule.get("IpRanges", [])] + [r["CidrIpv6"] for r in rule.get("Ipv6Ranges", [])]
        if ranges:  # the only rule with addresses: SSH from the one CIDR
            assert ranges == ["203.0.113.7/32"]
            assert (rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) == ("tcp", 22, 22)
            assert not RAY_PORTS & set(range(rule["FromPort"], rule["ToPort"] + 1))
        else:  # everything else: only from members of the group itself
            assert [p["GroupId"] for p in rule["UserIdGroupPairs"]] == ["sg-0fake"]
    assert not any(w in json.dumps(calls) for w in WORLD)
    # the bucket is private, and both roles get the storage policy with the bucket filled in
    assert any(c[:2] == ["s3api", "put-public-access-block"] for c in calls)
    policy = json.loads((tmp_path / "aws.log.storage-policy.json").read_text())
    assert "chorus-test-bucket" in json.dumps(policy) and "EDIT" not in json.dumps(policy)
    roles = {arg(c, "--role-name") for c in calls if c[:2] == ["iam", "put-role-policy"]}
    assert roles == {"chorus-ray-head", "chorus-ray-worker"}
    profiles = {arg(c, "--instance-profile-name") for c in calls if c[:2] == ["iam", "create-instance-profile"]}
    assert profiles == {"chorus-ray-head", "chorus-ray-worker"}


@pytest.mark.parametrize("cidr", ["0.0.0.0/0", "10.0.0.0/8", "EDIT", "203.0.113.7"])
def test_setup_script_refuses_a_wide_or_missing_ssh_cidr(tmp_path, cidr):
    proc, calls = run_setup(tmp_path, BUCKET="chorus-test-bucket", SSH_CIDR=cidr)
    assert proc.returncode == 2 and "SSH_CIDR" in proc.stderr
    assert calls == []


def test_setup_script_refuses_the_placeholder_bucket(tmp_path):
    proc, calls = run_setup(tmp_path, SSH_CIDR="203.0.113.7/32")
    assert proc.returncode == 2 and "BUCKET" in proc.stderr and calls == []


def test_submit_finds_dashboard_port_and_token_from_the_cluster_yaml():
    from chorus.cluster.launcher import cluster_settings

    settings = cluster_settings(REPO / "cluster" / "aws.yaml")
    assert settings["dashboard_port"] == 8265
    assert settings["token_path"] is not None and settings["token_path"].endswith("ray_token")
