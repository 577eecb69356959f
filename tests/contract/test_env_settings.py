"""Every environment setting of every role, given one bad value, stops the process at start with
one line that names the variable, exit code 2, no traceback, and no secret in the line (issue
22, defect 2: `LOG_LEVEL=loud` crashed the worker with a 22-line ValueError and exit code 1).

Each case runs the real entry point (`python -m wabot_cli` with ROLE, and the roles' own modules)
in a process of its own, the way a pod or `docker compose` starts it. Nothing here reaches
anything outside this machine, nor needs a cluster or a database: every role is given a
*tripwire*, a setting that stops it with a known line (naming another variable) just after its
configuration is read, so a bad value that slipped through would show up as the tripwire's line
(the test fails) instead of a process that starts connecting:

- worker: WABOT_SPEC_SOURCE names a spec file that does not exist (read before anything
  connects; WhatsApp is never dialled);
- monolith, controller: no bots file ("no bots"), so no bot process is started;
- gateway, operator: KUBECONFIG names a file that does not exist (read before anything listens
  or connects);
- `wabot db setup`: a DSN on a closed port of 127.0.0.1.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SECRET = "Zq9-s3cr3t-Vx7"  # in every secret-bearing value below; must never be printed
MISSING = "/nonexistent/wabot-test"


@dataclass(frozen=True)
class Case:
    role: str
    variable: str  # the one the message must name
    value: str  # may use {tmp}; "" is "set but empty"
    extra: Mapping[str, str] = field(default_factory=dict)  # other settings the case needs
    argv: tuple[str, ...] = ("-m", "wabot_cli")

    @property
    def id(self) -> str:
        entry = "" if self.argv == ("-m", "wabot_cli") else f"[{' '.join(self.argv[1:])}]"
        shown = self.value.replace(SECRET, "SECRET")[:40]
        return f"{self.role}{entry}-{self.variable}={shown}"


# The settings each role starts with (valid, plus its tripwire); a case overrides one of them.
BASE: dict[str, dict[str, str]] = {
    "worker": {"ROLE": "worker", "BOT_ID": "b1", "SERVER_NAME": "t1",
               "AUTH_DIR": "{tmp}/auth", "WABOT_SPEC_SOURCE": f"file:{MISSING}/bot.yaml"},
    "monolith": {"ROLE": "monolith", "AUTH_DIR": "{tmp}/auth"},
    "controller": {"ROLE": "controller", "AUTH_DIR": "{tmp}/auth",
                   "WABOT_CONTROLLER_TOKEN": "a-controller-token-of-24"},
    "gateway": {"ROLE": "gateway", "WABOT_GATEWAY_KEYS_NAMESPACE": "keys",
                "KUBECONFIG": f"{MISSING}/kubeconfig"},
    "operator": {"ROLE": "operator", "WABOT_OPERATOR_STANDALONE": "true",
                 "WABOT_OPERATOR_HEALTH_PORT": "0", "WABOT_OPERATOR_METRICS_PORT": "0",
                 "KUBECONFIG": f"{MISSING}/kubeconfig"},
    "db": {"ROLE": "db", "WABOT_MIGRATE_URL": f"postgresql://owner:{SECRET}@127.0.0.1:1/x"},
    "any": {},
}

DSN_BAD_SCHEME = f"mysql://app:{SECRET}@127.0.0.1:1/wabot"
DSN_BAD_PORT = f"postgresql://app:{SECRET}@db:five432/wabot"
DSN_NOT_A_URL = f"host=db user=app password={SECRET}"


def _cases() -> list[Case]:
    w, m, c, g, o = "worker", "monolith", "controller", "gateway", "operator"
    op = "WABOT_OPERATOR_"
    gw = "WABOT_GATEWAY_"
    cases = [
        Case("any", "ROLE", "bogus"),
        # --- worker (botworker/config.py, botworker/main.py) ---
        Case(w, "LOG_LEVEL", "loud"),
        Case(w, "LOG_LEVEL", "loud", argv=("-m", "botworker")),
        Case(w, "BOT_ID", ""),
        Case(w, "BOT_ID", "Bad_ID"),
        Case(w, "SERVER_NAME", ""),
        Case(w, "SERVER_NAME", "../x"),
        Case(w, "WABOT_BOT_NAME", "Bad!"),
        Case(w, "WABOT_SPEC_SOURCE", "etcd"),
        Case(w, "WABOT_SPEC_SOURCE", "file:{tmp}"),  # a directory
        Case(w, "WABOT_SPEC_SOURCE", "file:{tmp}/binary"),  # not UTF-8
        Case(w, "WABOT_NAMESPACE", "Bad_NS"),
        Case(w, "WABOT_LEASE_NAME", "Bad_Lease"),
        Case(w, "AUTH_DIR", "{tmp}/empty"),  # a file
        Case(w, "DATABASE_URL", DSN_BAD_SCHEME),
        Case(w, "DATABASE_URL", DSN_BAD_PORT),
        Case(w, "DATABASE_URL", DSN_NOT_A_URL),
        Case(w, "HTTP_HOST", "not a host"),
        Case(w, "HTTP_HOST", "999.1.1.1"),
        Case(w, "HTTP_PORT", "70000"),
        Case(w, "WABOT_LEASE_DURATION_SECONDS", "1"),
        Case(w, "WABOT_SHUTDOWN_TIMEOUT_SECONDS", "soon"),
        Case(w, "WABOT_WEBHOOK_TIMEOUT_SECONDS", "0"),
        Case(w, "WABOT_WEBHOOK_QUEUE_MAX", "many"),
        Case(w, "WABOT_WEBHOOK_MAX_AGE_SECONDS", "inf"),
        Case(w, "WABOT_WEBHOOK_BACKOFF_CAP_SECONDS", "nan"),
        Case(w, "WABOT_WEBHOOK_SECRET_FILE", f"{MISSING}/secret"),
        Case(w, "WABOT_WEBHOOK_SECRET_FILE", "{tmp}/binary"),
        Case(w, "WABOT_WEBHOOK_SECRET_FILE", "{tmp}/empty"),
        Case(w, "WABOT_API_TOKEN", SECRET),  # shorter than 16
        Case(w, "WABOT_WEBHOOK_ALLOW_CIDRS", "10.0.0.0/33"),
        Case(w, "WABOT_WEBHOOK_ALLOW_HOSTS", "http://x"),
        Case(w, "WABOT_WEBHOOK_DENY_CIDRS", "nope"),
        Case(w, "KUBECONFIG", f"{MISSING}/kubeconfig",
             {"WABOT_SPEC_SOURCE": "kubernetes", "WABOT_NAMESPACE": "ns"}),
        # --- monolith (fleet/monolith.py) ---
        Case(m, "LOG_LEVEL", "loud"),
        Case(m, "LOG_LEVEL", "loud", argv=("-m", "fleet", "monolith")),
        Case(m, "WABOT_BOTS_FILE", f"{MISSING}/bots.yaml"),
        Case(m, "WABOT_BOTS_FILE", "{tmp}/bad.yaml"),
        Case(m, "WABOT_BOTS_FILE", "{tmp}/binary"),
        Case(m, "WABOT_BOTS_DSN", DSN_BAD_SCHEME),
        Case(m, "WABOT_BOTS_DSN", DSN_BAD_PORT),
        Case(m, "WABOT_HTTP_HOST", "not a host"),
        Case(m, "WABOT_HTTP_PORT", "http"),
        Case(m, "WABOT_CONTROLLER_TOKEN", SECRET),  # shorter than 16
        Case(m, "AUTH_DIR", "{tmp}/empty"),
        Case(m, "WABOT_RUN_DIR", "{tmp}/empty"),
        Case(m, "DATABASE_URL", DSN_NOT_A_URL),
        Case(m, "WABOT_SECRETS_DIR", f"{MISSING}/secrets"),
        Case(m, "WABOT_WORKER_COMMAND", 'python "-m'),
        Case(m, "WABOT_FEDERATE_METRICS", "maybe"),
        Case(m, "WABOT_STOP_GRACE_SECONDS", "0"),
        Case(m, "WABOT_MIGRATE_URL", DSN_BAD_PORT),
        # --- controller (fleet/controller.py; the monolith's settings too) ---
        Case(c, "LOG_LEVEL", "loud"),
        Case(c, "WABOT_CONTROLLER_TOKEN", ""),
        Case(c, "WABOT_CONTROLLER_TOKEN", SECRET),
        Case(c, "WABOT_WORKER_GROUPS", "many"),
        Case(c, "WABOT_ROLLOUT_TIMEOUT_SECONDS", "inf"),
        Case(c, "WABOT_BOT_URL_TEMPLATE", "http://{nope}:8080"),
        Case(c, "WABOT_BOT_URL_TEMPLATE", "ftp://bot-{name}"),
        Case(c, "WABOT_HTTP_PORT", "99999"),
        Case(c, "WABOT_WORKER_COMMAND", 'python "-m'),
        Case(c, "WABOT_MIGRATE_URL", DSN_BAD_SCHEME),
        # --- gateway (gateway/config.py, gateway/main.py) ---
        Case(g, gw + "LOG_LEVEL", "loud"),
        Case(g, gw + "LOG_LEVEL", "loud", argv=("-m", "gateway")),
        Case(g, gw + "HOST", "not a host"),
        Case(g, gw + "PORT", "x"),
        Case(g, gw + "KEYS_NAMESPACE", ""),  # required outside a pod
        Case(g, gw + "KEYS_NAMESPACE", "Bad_NS"),
        Case(g, gw + "NAMESPACES", "a,Bad_NS"),
        Case(g, gw + "WORKER_URL_TEMPLATE", "http://{nope}"),
        Case(g, gw + "WORKER_URL_TEMPLATE", "ftp://{podIP}"),
        Case(g, gw + "WORKER_PORT", "0"),
        Case(g, gw + "KEYS_TTL_SECONDS", "0"),
        Case(g, gw + "TIMEOUT_SECONDS", "x"),
        Case(g, "KUBECONFIG", "{tmp}/bad.yaml"),
        # --- operator (operator/wabot_operator/config.py, main.py) ---
        Case(o, op + "LOG_LEVEL", "loud"),
        Case(o, op + "LOG_LEVEL", "loud", argv=("-m", "wabot_operator")),
        Case(o, op + "LOG_FORMAT", "xml"),
        Case(o, op + "NAMESPACES", "Bad_NS"),
        Case(o, op + "WORKER_IMAGE", "bad image"),
        Case(o, op + "DATABASE_SECRET", "Bad:value"),
        Case(o, op + "DATABASE_SECRET", "dsn:bad key"),
        Case(o, op + "TEMPLATES_DIR", MISSING),
        Case(o, op + "METRICS_PORT", "x"),
        Case(o, op + "HEALTH_PORT", "70000"),
        Case(o, op + "PEERING_NAME", "Bad_Name"),
        Case(o, op + "STANDALONE", "maybe"),
        Case(o, op + "PRIORITY", "x"),
        Case(o, op + "RECONCILE_INTERVAL", "0"),
        Case(o, op + "RESYNC_INTERVAL", "x"),
        Case(o, op + "POD_RESTARTS_PER_SECOND", "-1"),
        Case(o, op + "GATEWAY_SERVICE_ACCOUNT", "nope"),
        Case(o, op + "DEFAULT_RESOURCES", '{"requests": {"cpu": "lots"}}'),
        Case(o, op + "DEFAULT_RESOURCES", "notjson"),
        Case(o, op + "DEFAULT_STORAGE_SIZE", "big"),
        Case(o, op + "DEFAULT_STORAGE_CLASS", "Bad_Class"),
        Case(o, op + "ALLOWED_IMAGES", "reg.example/app,bad image"),
        Case(o, op + "ALLOWED_PRIORITY_CLASSES", "Bad Class"),
        Case(o, op + "ALLOWED_TOLERATIONS", "bad key!"),
        Case(o, op + "ALLOWED_NODE_SELECTOR_KEYS", "bad key!"),
        Case(o, op + "WEBHOOK_ALLOW_CIDRS", "10.0.0.0/33"),
        Case(o, op + "WEBHOOK_ALLOW_HOSTS", "http://x"),
        Case(o, op + "WEBHOOK_DENY_CIDRS", "nope"),
        Case(o, "KUBECONFIG", "{tmp}/bad.yaml"),
        # --- wabot db (botworker/data/migrate.py) ---
        Case("db", "WABOT_MIGRATE_URL", DSN_NOT_A_URL),
        Case("db", "WABOT_MIGRATE_URL", DSN_BAD_PORT),
        Case("db", "DATABASE_URL", DSN_BAD_SCHEME, {"WABOT_MIGRATE_URL": ""}),
        # the tenant's password is checked before the schema is migrated (a closed port here)
        Case("db", "WABOT_DB_PASSWORD_ACME", "",
             argv=("-m", "wabot_cli", "db", "setup", "--tenant", "acme")),
        # the fleet's import tool reads the bots table's DSN from the environment too
        Case("any", "WABOT_BOTS_DSN", DSN_BAD_PORT,
             argv=("-m", "fleet", "db-import", "--bots", f"{MISSING}/bots.yaml")),
    ]
    return cases


CASES = _cases()


def _clean_environ() -> dict[str, str]:
    """The test runner's environment minus every setting a role reads."""
    drop = {"ROLE", "DEPLOYMENT_ROLE", "BOT_ID", "SERVER_NAME", "POD_NAME", "AUTH_DIR",
            "DATABASE_URL", "LOG_LEVEL", "HTTP_HOST", "HTTP_PORT", "KUBECONFIG"}
    env = {k: v for k, v in os.environ.items()
           if k not in drop and not k.startswith(("WABOT_", "KUBERNETES_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "operator")])
    return env


def _run(case: Case, tmp: Path) -> subprocess.CompletedProcess[str]:
    env = _clean_environ()
    settings = {**BASE[case.role], **case.extra, case.variable: case.value}
    env.update({k: v.replace("{tmp}", str(tmp)) for k, v in settings.items()})
    argv = [sys.executable, *case.argv]
    try:
        return subprocess.run(argv, env=env, cwd=tmp, capture_output=True, text=True,
                              timeout=30)
    except subprocess.TimeoutExpired as exc:  # it started instead (the operator retries kopf's
        # login for ever): reported by its case, not as an error of every case
        out = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else ""
        return subprocess.CompletedProcess(argv, -1, "", f"(still running after 30 s)\n{out}")


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory
             ) -> dict[str, subprocess.CompletedProcess[str]]:
    """Every case's process, run a few at a time (each is a Python start of 0.3-1.5 s)."""
    tmp = tmp_path_factory.mktemp("settings")
    (tmp / "empty").write_text("")
    (tmp / "binary").write_bytes(b"\xff\xfe\x00\xfa")
    (tmp / "bad.yaml").write_text("bots: [\n  - {name: x\n")
    with ThreadPoolExecutor(max_workers=4) as pool:
        done = pool.map(lambda case: _run(case, tmp), CASES)
        return {case.id: proc for case, proc in zip(CASES, done, strict=True)}


def test_the_cases_have_distinct_ids() -> None:
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_a_bad_setting_is_one_line_naming_it_and_exit_code_2(
        case: Case, outcomes: Mapping[str, subprocess.CompletedProcess[str]]) -> None:
    proc = outcomes[case.id]
    output = proc.stderr + proc.stdout
    lines = output.splitlines()
    assert proc.returncode == 2, output
    assert len(lines) == 1 and lines[0].strip(), output
    assert "Traceback" not in output
    assert case.variable in lines[0], output
    assert SECRET not in output and "five432" not in output


def test_the_tripwires_are_what_stops_a_good_configuration(tmp_path: Path) -> None:
    """The premise of the table: with nothing wrong, each role stops at its tripwire (whose line
    names another variable), so no case above passes by stopping for an unrelated reason, and
    none of them could have gone on to connect anywhere."""
    (tmp_path / "auth").mkdir()
    expected = {"worker": "WABOT_SPEC_SOURCE", "monolith": "no bots",
                "controller": "no bots", "gateway": "KUBECONFIG", "operator": "KUBECONFIG"}
    for role, needle in expected.items():
        env = _clean_environ()
        env.update({k: v.replace("{tmp}", str(tmp_path)) for k, v in BASE[role].items()})
        proc = subprocess.run([sys.executable, "-m", "wabot_cli"], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1, proc.stderr
        assert needle in proc.stderr, proc.stderr


@pytest.mark.parametrize("level", ["debug", "Warning", "warn", "ERROR"])
def test_log_levels_logging_knows_still_work(level: str) -> None:
    """The check is not stricter than `logging` was for the names people write."""
    from botworker.config import load_config
    from fleet.monolith import MonolithSettings
    from gateway.config import GatewayConfig

    cfg = load_config({"BOT_ID": "b1", "SERVER_NAME": "t1", "LOG_LEVEL": level})
    expected = {"warn": "WARNING"}.get(level.lower(), level.upper())
    assert cfg.log_level == expected
    assert MonolithSettings.from_env({"LOG_LEVEL": level}).log_level == expected
    assert GatewayConfig.from_env({"WABOT_GATEWAY_KEYS_NAMESPACE": "k",
                                   "WABOT_GATEWAY_LOG_LEVEL": level}).log_level == expected


@pytest.mark.parametrize("dsn", [
    "postgresql://app:pw@db:5432/wabot?sslmode=require", "postgres://app@db/wabot",
    "postgresql+psycopg://app:pw@[fd00::1]:5432/wabot", "postgresql:///wabot?host=/run/pg",
    "sqlite:////var/lib/wabot/x.db", "sqlite://",
])
def test_database_urls_in_use_are_accepted(dsn: str) -> None:
    from botworker.config import load_config

    cfg = load_config({"BOT_ID": "b1", "SERVER_NAME": "t1", "DATABASE_URL": dsn})
    assert cfg.effective_database_url == dsn


def test_the_dispatcher_reports_a_setting_that_escapes_a_role(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The roles report their own settings; `wabot_cli` is the backstop for one raised later
    (after a role's config was built), still one line and exit code 2."""
    from wabot.settings import ConfigError
    from wabot_cli import commands as cli

    def role(_argv: list[str]) -> int:
        raise ConfigError("SOME_SETTING: not what\nwas expected")

    monkeypatch.setitem(cli.COMMANDS, "worker", role)
    assert cli.main(["worker"]) == 2
    assert capsys.readouterr().err == "wabot worker: SOME_SETTING: not what was expected\n"
