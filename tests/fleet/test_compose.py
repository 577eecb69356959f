"""The generated docker-compose.yml: one hardened service per bot with its own auth volume and
the spec's limits, checked structurally and by an independent Compose-spec parser."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from fleet.botsfile import load_bots_file, parse_documents
from fleet.compose import (
    QuantityError,
    check_compose,
    cpus,
    escape,
    memory,
    render_compose,
    run,
)

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "samples" / "bots.yaml"


@pytest.fixture
def generated(tmp_path: Path) -> tuple[dict[str, Any], Path]:
    out = tmp_path / "deploy" / "docker-compose.yml"
    out.parent.mkdir()
    assert run(["--bots", str(SAMPLE), "-o", str(out), "--image", "reg.example/wabot:1.2"]) == 0
    return yaml.safe_load(out.read_text()), out


@pytest.mark.parametrize(("k8s", "compose"), [("500m", "0.5"), ("50m", "0.05"), ("2", "2"),
                                              ("1.5", "1.5"), ("250m", "0.25")])
def test_cpu_quantities(k8s: str, compose: str) -> None:
    assert cpus(k8s) == compose


@pytest.mark.parametrize(("k8s", "compose"), [
    ("256Mi", "256m"), ("1Gi", "1g"), ("1.5Gi", "1536m"), ("96Mi", "96m"), ("512Ki", "512k"),
    ("1G", "1000000000b"), ("128M", "125000k"), ("2Ti", "2048g"), ("1000", "1000b")])
def test_memory_quantities_keep_the_exact_byte_count(k8s: str, compose: str) -> None:
    assert memory(k8s) == compose


def test_bad_quantities_are_refused() -> None:
    with pytest.raises(QuantityError):
        memory("0.5")  # half a byte


def test_dollar_signs_in_values_are_not_interpolated() -> None:
    assert escape("price: $5 ${HOME}") == "price: $$5 $${HOME}"


def test_one_service_per_bot_with_its_own_volume_and_limits(
        generated: tuple[dict[str, Any], Path]) -> None:
    doc, _ = generated
    services = doc["services"]
    assert set(services) == {"postgres", "db-setup", "controller", "bot-acme-sales",
                             "bot-acme-support", "bot-globex-news"}
    # The migrate step and the tenant roles, as the owner, once; bots as their tenant's role.
    setup = services["db-setup"]
    assert setup["command"] == ["db", "setup", "--tenant", "acme", "--tenant", "globex"]
    assert setup["environment"]["WABOT_MIGRATE_URL"].startswith("postgresql://wabot:")
    assert setup["restart"] == "no"
    mounts = {}
    for name in ("bot-acme-sales", "bot-acme-support", "bot-globex-news"):
        svc = services[name]
        env = svc["environment"]
        assert env["ROLE"] == "worker" and env["AUTH_DIR"] == "/var/lib/wabot"
        assert env["WABOT_SPEC_SOURCE"] == "file:/etc/wabot/spec.yaml"
        assert svc["image"] == "reg.example/wabot:1.2"
        (mount,) = svc["volumes"]
        assert mount["target"] == "/var/lib/wabot" and mount["source"] in doc["volumes"]
        mounts[name] = mount["source"]
        # the pod's hardening
        assert svc["read_only"] is True and svc["user"] == "10001:10001"
        assert svc["cap_drop"] == ["ALL"] and svc["tmpfs"][0].startswith("/tmp")
        assert "/livez" in " ".join(svc["healthcheck"]["test"])
        assert svc["depends_on"] == {"postgres": {"condition": "service_healthy"},
                                     "db-setup": {"condition": "service_completed_successfully"}}
        tenant = env["SERVER_NAME"]
        assert env["DATABASE_URL"].startswith(f"postgresql://wabot_{tenant}:${{WABOT_DB_PASSWORD_")
        assert "WABOT_MIGRATE_URL" not in env
        lim = svc["deploy"]["resources"]["limits"]
        assert svc["mem_limit"] == lim["memory"] and svc["cpus"] == lim["cpus"]
    assert len(set(mounts.values())) == 3  # a session volume of its own per bot
    sales = services["bot-acme-sales"]
    assert (sales["environment"]["BOT_ID"], sales["environment"]["SERVER_NAME"]) == ("sales",
                                                                                       "acme")
    assert sales["deploy"]["resources"] == {"limits": {"cpus": "0.5", "memory": "256m"},
                                            "reservations": {"cpus": "0.05", "memory": "96m"}}
    news = services["bot-globex-news"]
    assert news["deploy"]["resources"]["limits"] == {"cpus": "0.25", "memory": "192m"}
    assert news["environment"]["LOG_LEVEL"] == "INFO"  # spec.env
    ctl = services["controller"]["environment"]
    assert ctl["ROLE"] == "controller" and ctl["WABOT_WORKER_GROUPS"] == "0"


def test_spec_files_are_written_and_read_back_as_the_bots_specs(
        generated: tuple[dict[str, Any], Path]) -> None:
    doc, out = generated
    bots = {b.name: b for b in load_bots_file(SAMPLE)}
    cfg = doc["configs"]["bot-acme-sales-spec"]["file"]
    spec = yaml.safe_load((out.parent / cfg).read_text())
    assert spec["serverName"] == "acme" and spec["commands"]["custom"][0]["name"] == "hours"
    assert load_bots_file(out.parent / doc["configs"]["wabot-bots"]["file"]) == list(
        bots.values())


def test_valid_per_the_compose_spec(generated: tuple[dict[str, Any], Path]) -> None:
    # An independent parser: the compose_spec Rust crate (PyPI `compose-spec`, a test
    # dependency), which refuses unknown keys and malformed values such as bad byte units.
    from compose_spec import PyCompose

    doc, out = generated
    assert check_compose(doc, out.parent) == []
    parsed = PyCompose.from_yaml(out.read_text())
    parsed.validate()
    assert set(parsed.service_names()) == set(doc["services"])


def test_structural_check_catches_broken_references() -> None:
    bots = parse_documents(SAMPLE.read_text())
    compose, _ = render_compose(bots)
    doc = compose.model_dump(mode="json", exclude_none=True)
    doc["services"]["bot-acme-support"]["volumes"][0]["source"] = "bot-acme-sales-auth"
    doc["services"]["controller"]["depends_on"] = {"db": {"condition": "service_started"}}
    del doc["volumes"]["bot-globex-news-auth"]
    problems = check_compose(doc)
    assert any("also mounted by bot-acme-sales" in p for p in problems)
    assert any("unknown service 'db'" in p for p in problems)
    assert any("'bot-globex-news-auth' is not declared" in p for p in problems)


def test_suspended_bots_and_secret_databases(tmp_path: Path) -> None:
    text = SAMPLE.read_text().replace("  serverName: globex\n", "  serverName: globex\n"
                                      "  suspend: true\n  database: {secretRef: {name: "
                                      "globex-db, key: dsn}}\n  nodeSelector: {disk: ssd}\n")
    bots = parse_documents(text)
    compose, warnings = render_compose(bots)
    news = compose.services["bot-globex-news"]
    assert news.profiles == ["suspended"]  # not started by a plain `docker compose up`
    assert news.environment["DATABASE_URL"].startswith("${WABOT_DB_GLOBEX_DB_DSN:?")
    assert any("spec.nodeSelector" in w for w in warnings)
