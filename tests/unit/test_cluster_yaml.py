"""cluster.yaml is valid for the installed Ray's launcher and keeps the cluster closed.

Closed means: the dashboard/job API binds to the head's loopback (reached by `ray dashboard`'s
SSH tunnel), the launcher never creates its default security group (SSH open to 0.0.0.0/0),
nothing opens Ray's ports, and token auth is on with the token mounted from outside the repo.
"""

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CLUSTER_YAML = ROOT / "cluster.yaml"
RAY_PORTS = {6379, 8265, 10001}


@pytest.fixture(scope="module")
def cluster() -> dict:
    return yaml.safe_load(CLUSTER_YAML.read_text())


def strings(node):
    """Every string value in a parsed YAML tree."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings(value)


def ray_starts(cluster: dict) -> list[str]:
    commands = cluster["head_start_ray_commands"] + cluster["worker_start_ray_commands"]
    return [c for c in commands if "ray start" in c]


def test_valid_for_installed_ray_launcher(cluster):
    from ray.autoscaler._private.util import prepare_config, validate_config

    # prepare_config fills the launcher's defaults, as `ray up` does before validating.
    validate_config(prepare_config(cluster))


def test_cpu_head_and_single_and_multi_gpu_workers(cluster):
    nodes = cluster["available_node_types"]
    head = nodes[cluster["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0
    gpus = sorted(n["resources"]["GPU"] for name, n in nodes.items() if "GPU" in n["resources"])
    assert gpus[0] == 1 and gpus[-1] > 1
    for name, node in nodes.items():
        if node is not head:
            assert 0 <= node["min_workers"] <= node["max_workers"] <= cluster["max_workers"], name


def test_dashboard_and_job_api_on_loopback_only(cluster):
    head_start = next(c for c in ray_starts(cluster) if "--head" in c)
    assert "--dashboard-host=127.0.0.1" in head_start
    assert not any("0.0.0.0" in s for s in strings(cluster))


def test_no_default_security_group_and_no_ray_ports_open(cluster):
    for name, node in cluster["available_node_types"].items():
        assert node["node_config"].get("SecurityGroupIds"), f"{name}: launcher would open SSH"
    rules = cluster["provider"].get("security_group", {}).get("IpPermissions", [])
    for rule in rules:
        ports = set(range(rule.get("FromPort", 0), rule.get("ToPort", 65535) + 1))
        assert not ports & RAY_PORTS, rule


def test_token_auth_from_a_mounted_file_outside_git(cluster):
    for command in ray_starts(cluster):
        assert "RAY_AUTH_MODE=token" in command, command
        assert "RAY_AUTH_TOKEN_PATH=$HOME/.ray/auth_token" in command, command
    source = cluster["file_mounts"]["~/.ray/auth_token"]
    local = Path(source).expanduser()
    assert source.startswith("~") and not local.is_relative_to(ROOT), source
    assert not any(len(s) >= 32 and s.isalnum() for s in strings(cluster)), "a secret in git?"


def test_installs_genart_and_names_s3_storage(cluster):
    setup = "\n".join(cluster["setup_commands"])
    assert "pip install" in setup and "~/genart" in setup
    assert cluster["file_mounts"]["~/genart"] == "."
    assert "GENART_STORAGE=s3://" in setup


def test_head_starts_ray_with_the_serving_system_config(cluster):
    import json
    import re

    from genart.serve.ray_settings import RAY_SYSTEM_CONFIG

    head_start = next(c for c in ray_starts(cluster) if "--head" in c)
    match = re.search(r"--system-config='([^']*)'", head_start)
    assert match, head_start
    assert json.loads(match.group(1)) == RAY_SYSTEM_CONFIG


def test_ray_up_returns_once_the_head_takes_jobs(cluster):
    head = cluster["head_start_ray_commands"]
    start = next(i for i, c in enumerate(head) if "ray start --head" in c)
    wait = next(i for i, c in enumerate(head) if "genart cluster-ready" in c)
    assert wait > start
    assert "RAY_AUTH_MODE=token" in head[wait] and "127.0.0.1:8265" in head[wait]
