"""Command line and configuration errors of the real binary (contract section 1)."""
import os
import subprocess

from conftest import BUTLER_BINARY, ROOT


def run(*args, env=None):
    return subprocess.run([BUTLER_BINARY, *args], capture_output=True, text=True, timeout=30,
                          env=dict(os.environ, **(env or {})))


def test_version_and_help():
    assert run("--version").returncode == 0
    assert run("--version").stdout.startswith("butler ")
    help_run = run("--help")
    assert help_run.returncode == 0 and "--check-config" in help_run.stdout


def test_help_lists_every_key_and_reference_formats():
    help_text = run("--help").stdout
    assert "mqtt.port" in help_text and "routes[].name" in help_text
    reference = run("--config-reference", "markdown")
    assert reference.returncode == 0 and reference.stdout.startswith("<!-- Generated")
    man = run("--config-reference", "man")
    assert man.returncode == 0 and man.stdout.startswith(".TH BUTLER.YAML 5")
    assert run("--config-reference", "html").returncode == 2
    assert run("--config-reference").returncode == 2


def test_usage_errors_exit_2():
    assert run("--bogus").returncode == 2
    assert run("--config").returncode == 2


def test_check_config_wrong_type_names_file_line_column(tmp_path):
    path = tmp_path / "butler.yaml"
    path.write_text("log:\n  level: info\nmqtt:\n  host: broker\n  port: abc\n")
    result = run("--check-config", str(path))
    assert result.returncode == 2
    assert f"{path}:5:9: mqtt.port: expected an integer 1..65535, got \"abc\"" in result.stderr


def test_check_config_unknown_key(tmp_path):
    path = tmp_path / "butler.yaml"
    path.write_text("mqtt:\n  hots: broker\n")
    result = run("--check-config", str(path))
    assert result.returncode == 2
    assert f"{path}:2:3: mqtt.hots:" in result.stderr
    assert "unknown" in result.stderr


def test_check_config_masks_secrets(tmp_path):
    path = tmp_path / "butler.yaml"
    path.write_text("mqtt:\n  password: hunter2-secret\nslack:\n  webhook_url: "
                    "https://hooks.slack.example/services/T000/B000/XYZSECRET\n")
    result = run("--check-config", str(path), env={"BUTLER_SMTP_PASSWORD": "envsecret99"})
    assert result.returncode == 0, result.stderr
    for secret in ("hunter2-secret", "XYZSECRET", "envsecret99"):
        assert secret not in result.stdout and secret not in result.stderr


def test_environment_override_is_validated(tmp_path):
    result = run("--check-config", os.path.join(ROOT, "config", "butler.example.yaml"),
                 env={"BUTLER_MQTT_PORT": "notaport"})
    assert result.returncode == 2
    assert "BUTLER_MQTT_PORT" in result.stderr


def test_example_config_is_valid():
    result = run("--check-config", os.path.join(ROOT, "config", "butler.example.yaml"))
    assert result.returncode == 0, result.stderr


def test_missing_file(tmp_path):
    result = run("--config", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2
    assert "nope.yaml" in result.stderr
