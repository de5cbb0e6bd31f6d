"""How `dt-exporter preflight` reads Collector and Fluent Bit files (pure: no network)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dt_exporter.cli._shipper_config import ConfigFileError, read_config

TOKEN = "dt0c01." + "A" * 24 + "." + "B" * 64
GOOD = {"DT_ENDPOINT": "https://abc12345.live.dynatrace.com", "DT_API_TOKEN": TOKEN}


def collector(tmp_path: Path, exporter: str, name: str = "otlp_http/dt") -> Path:
    path = tmp_path / "collector.yaml"
    path.write_text(
        f"receivers:\n  otlp:\n    protocols:\n      http: {{}}\nexporters:\n  {name}:\n"
        f"{exporter}service:\n  pipelines:\n    logs:\n      receivers: [otlp]\n"
        f"      exporters: [{name}]\n",
        encoding="utf-8",
    )
    return path


AUTH = "    headers:\n      Authorization: \"Api-Token ${env:DT_API_TOKEN}\"\n"


def test_collector_target_is_endpoint_plus_v1_logs(tmp_path: Path) -> None:
    """The logs URL is `endpoint` + /v1/logs, with the token from the header and no problem."""
    path = collector(tmp_path, "    endpoint: ${env:DT_ENDPOINT}/api/v2/otlp\n" + AUTH)
    reading = read_config(path, GOOD)
    assert reading.problems == ()
    [target] = reading.targets
    assert target.url == "https://abc12345.live.dynatrace.com/api/v2/otlp/v1/logs"
    assert target.protocol == "otlp"
    assert target.authorization is not None
    assert target.authorization.reveal() == f"Api-Token {TOKEN}"
    assert reading.variables == {"DT_ENDPOINT": "set", "DT_API_TOKEN": "set"}


def test_collector_logs_endpoint_is_used_verbatim(tmp_path: Path) -> None:
    """logs_endpoint wins over endpoint and is not extended."""
    path = collector(tmp_path, "    endpoint: https://ignored.example\n"
                     "    logs_endpoint: ${env:DT_ENDPOINT}/api/v2/otlp/v1/logs\n" + AUTH)
    [target] = read_config(path, GOOD).targets
    assert target.url == "https://abc12345.live.dynatrace.com/api/v2/otlp/v1/logs"


def test_collector_legacy_syntax_and_dollar_escape(tmp_path: Path) -> None:
    """`${NAME}` is an environment variable too; `$$` is a literal dollar, not a reference."""
    path = collector(tmp_path, "    endpoint: ${DT_ENDPOINT}/api/v2/otlp\n" + AUTH
                     + "    timeout: $${NOT_A_VARIABLE}\n")
    reading = read_config(path, GOOD)
    assert reading.problems == ()
    assert "NOT_A_VARIABLE" not in reading.variables


def test_collector_default_applies_only_when_unset(tmp_path: Path) -> None:
    """`${env:X:-d}` uses d when X is unset (no problem) and refuses X set but empty."""
    path = collector(tmp_path, "    endpoint: ${env:DT_ENDPOINT:-https://x.live.dynatrace.com}"
                     "/api/v2/otlp\n" + AUTH)
    unset = read_config(path, {"DT_API_TOKEN": TOKEN})
    assert unset.problems == ()
    assert unset.variables["DT_ENDPOINT"] == "default"
    assert unset.targets[0].url == "https://x.live.dynatrace.com/api/v2/otlp/v1/logs"
    empty = read_config(path, {"DT_API_TOKEN": TOKEN, "DT_ENDPOINT": ""})
    assert empty.variables["DT_ENDPOINT"] == "empty"
    assert any("set but empty" in p for p in empty.problems)


def test_collector_missing_header_plain_http_and_apps_host_are_problems(tmp_path: Path) -> None:
    """No Authorization header, a token over plain http to a remote host, and the .apps. host
    are each refused; the problems never hold the token."""
    no_header = read_config(collector(tmp_path, "    endpoint: ${env:DT_ENDPOINT}/api/v2/otlp\n"),
                            GOOD)
    assert any("no Authorization header" in p for p in no_header.problems)
    plain = read_config(collector(tmp_path, "    endpoint: http://gateway.internal/api/v2/otlp\n"
                                  + AUTH), GOOD)
    assert any("plain text to gateway.internal" in p for p in plain.problems)
    apps = read_config(collector(tmp_path, "    endpoint: https://abc.apps.dynatrace.com"
                                 "/api/v2/otlp\n" + AUTH), GOOD)
    assert any(".apps. answers 404" in p for p in apps.problems)
    for reading in (no_header, plain, apps):
        assert not any(TOKEN.split(".")[-1] in p for p in reading.problems)


def test_collector_old_exporter_name_and_missing_byte_cap_are_warnings(tmp_path: Path) -> None:
    """`otlphttp` still works (a warning names otlp_http); no byte cap and a 300 s retry budget
    are warnings, not refusals."""
    path = collector(tmp_path, "    endpoint: ${env:DT_ENDPOINT}/api/v2/otlp\n" + AUTH
                     + "    retry_on_failure:\n      max_elapsed_time: 300s\n",
                     name="otlphttp/dt")
    reading = read_config(path, GOOD)
    assert reading.problems == ()
    assert len(reading.targets) == 1
    text = " ".join(reading.warnings)
    assert "deprecated alias" in text and "otlp_http" in text
    assert "not capped in bytes" in text
    assert "max_elapsed_time 300s" in text


def test_collector_without_a_dynatrace_exporter_is_a_problem(tmp_path: Path) -> None:
    """A pipeline that only has a debug exporter sends nothing to Dynatrace."""
    path = collector(tmp_path, "    verbosity: basic\n", name="debug")
    reading = read_config(path, GOOD)
    assert reading.targets == ()
    assert any("No otlp_http exporter" in p for p in reading.problems)


def test_fluent_bit_include_and_set_are_followed(tmp_path: Path) -> None:
    """@INCLUDE reads the included file relative to the main one; @SET defines variables that
    win over the environment."""
    (tmp_path / "outputs.conf").write_text(
        "[OUTPUT]\n    Name opentelemetry\n    Host ${DT_HOST}\n    Port 443\n    tls On\n"
        "    Logs_uri /api/v2/otlp/v1/logs\n    Header Authorization Api-Token ${DT_API_TOKEN}\n",
        encoding="utf-8",
    )
    main = tmp_path / "main.conf"
    main.write_text("@SET DT_HOST=abc12345.live.dynatrace.com\n@INCLUDE outputs.conf\n",
                    encoding="utf-8")
    reading = read_config(main, {"DT_API_TOKEN": TOKEN, "DT_HOST": "ignored.example"})
    assert reading.problems == ()
    [target] = reading.targets
    assert target.url == "https://abc12345.live.dynatrace.com:443/api/v2/otlp/v1/logs"


def test_fluent_bit_yaml_env_section_and_wrong_uri(tmp_path: Path) -> None:
    """The YAML `env:` section defines variables; a URI that is not the ingest path is refused."""
    path = tmp_path / "fb.yaml"
    path.write_text(
        "env:\n  DT_HOST: abc12345.live.dynatrace.com\npipeline:\n  outputs:\n"
        "    - name: http\n      host: ${DT_HOST}\n      port: 443\n      tls: on\n"
        "      uri: /api/v2/logs\n      format: json\n"
        "      header:\n        - Authorization Api-Token ${DT_API_TOKEN}\n",
        encoding="utf-8",
    )
    reading = read_config(path, {"DT_API_TOKEN": TOKEN})
    assert reading.variables["DT_HOST"] == "set"
    assert any("Dynatrace's path is /api/v2/logs/ingest" in p for p in reading.problems)


def test_fluent_bit_tls_verify_off_and_grpc_are_problems(tmp_path: Path) -> None:
    """tls.verify Off sends the token to whoever answers; grpc On is not spoken by Dynatrace."""
    path = tmp_path / "fb.conf"
    path.write_text(
        "[OUTPUT]\n    Name opentelemetry\n    Host abc12345.live.dynatrace.com\n    Port 443\n"
        "    tls On\n    tls.verify Off\n    grpc On\n    Logs_uri /api/v2/otlp/v1/logs\n"
        "    Header Authorization Api-Token ${DT_API_TOKEN}\n",
        encoding="utf-8",
    )
    problems = " ".join(read_config(path, {"DT_API_TOKEN": TOKEN}).problems)
    assert "tls.verify is off" in problems
    assert "grpc is on" in problems


def test_unreadable_files_raise_config_file_error(tmp_path: Path) -> None:
    """Invalid YAML, a setting outside any section, a missing file: ConfigFileError."""
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("exporters: [\n", encoding="utf-8")
    outside = tmp_path / "outside.conf"
    outside.write_text("    Name http\n", encoding="utf-8")
    for path in (bad_yaml, outside, tmp_path / "missing.conf"):
        with pytest.raises(ConfigFileError):
            read_config(path, {})
