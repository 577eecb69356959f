"""Issue 21, findings 1 (its logging half) and 7: a secret-bearing string is logged without its
secret in every form it comes in, and one that cannot be read is not logged at all.

Finding 1 as the attack: a tenant names any Secret of its namespace as its database, the
worker gets its value as DATABASE_URL and, not able to parse it, logged it verbatim (`kubectl
logs` then showed the Secret). Finding 7: `?password=` and libpq's `key=value` form kept their
password. Each case is checked through the function the worker's log lines call
(`botworker.config.redact_dsn`) and, end to end, in what a real worker process prints.
"""

from __future__ import annotations

import io
import json
import logging
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from botworker.config import redact_dsn
from botworker.core.proxy import parse_proxy_url
from botworker.data.subprocess_step import one_line, redact
from tests.security import record
from tests.worker.conftest import wait_for, worker_process_env
from wabot.logs import JsonFormatter
from wabot.redact import REDACTED, KnownSecrets, redact_url, url_origin

SECRET = "Zq7-S3cr3t-value"

# (DSN as a Secret might hold it, what the log shows). The secret is in every input and in no
# output.
DSN_FORMS = [
    pytest.param(f"postgresql://app:{SECRET}@db:5432/wabot?sslmode=require",
                 "postgresql://app:***@db:5432/wabot?sslmode=require", id="url-userinfo"),
    pytest.param(f"postgresql+psycopg://app:{SECRET}@db/wabot",
                 "postgresql+psycopg://app:***@db/wabot", id="sqlalchemy-url"),
    pytest.param(f"postgresql://app@db/wabot?password={SECRET}&sslmode=require",
                 "postgresql://app@db/wabot?password=***&sslmode=require", id="query-password"),
    pytest.param(f"postgresql://app@db/wabot?sslmode=verify-full&sslpassword={SECRET}",
                 "postgresql://app@db/wabot?sslmode=verify-full&sslpassword=***",
                 id="query-sslpassword"),
    pytest.param(f"postgresql://app:{SECRET}@h1:5432,h2:5433/wabot",
                 "postgresql://app:***@h1:5432,h2:5433/wabot", id="multi-host"),
    pytest.param(f"host=db port=5432 user=app password={SECRET} dbname=wabot",
                 "host=db port=5432 user=app password=*** dbname=wabot", id="key-value"),
    pytest.param(f"host=db password = '{SECRET} with \\' quote' dbname=wabot",
                 "host=db password=*** dbname=wabot", id="key-value-quoted"),
    pytest.param(SECRET, REDACTED, id="garbage"),
    pytest.param(f"-----BEGIN PRIVATE KEY-----\n{SECRET}\n-----END PRIVATE KEY-----", REDACTED,
                 id="another-secret"),
    pytest.param(f"token={SECRET}", REDACTED, id="unknown-keyword"),
    pytest.param(f"https://{SECRET}@api.example/v1", REDACTED, id="not-a-database-url"),
    pytest.param(f"postgresql://app:{SECRET[:4]}/{SECRET[4:]}@db/wabot", REDACTED,
                 id="unencoded-slash-in-password"),
    pytest.param(f"postgresql://app:{SECRET}@db:{SECRET}/wabot", REDACTED, id="bad-port"),
    pytest.param(f"host=db password='{SECRET}", REDACTED, id="unterminated-quote"),
]


SECTION = record.SECTION
CHECKED: set[str] = set()


@pytest.mark.parametrize(("dsn", "shown"), DSN_FORMS)
def test_every_dsn_form_is_logged_without_its_secret(dsn: str, shown: str) -> None:
    out = redact_dsn(dsn)
    assert out == shown
    for piece in (SECRET, SECRET[:4], SECRET[4:]):
        assert piece not in out
    CHECKED.add(dsn)
    record.finding("7", "DSN forms in logs (URL, ?password=, key=value, quoted, unparseable)",
                   f"{len(CHECKED)}/{len(DSN_FORMS)} forms logged without the secret; "
                   "unparseable input redacted whole")


def test_what_is_not_secret_stays_readable() -> None:
    assert redact_dsn("sqlite:////var/lib/wabot/x.db") == "sqlite:////var/lib/wabot/x.db"
    assert redact_dsn("postgresql://app@db/wabot") == "postgresql://app@db/wabot"
    assert redact_dsn("postgresql://app:s3cr%40t@db/wabot") == "postgresql://app:***@db/wabot"
    # Quoted in an error, a DSN with nothing to hide is left as it is.
    for dsn in ("sqlite:////var/lib/wabot/x.db", "postgresql://app@db/wabot?sslmode=require"):
        assert redact(f"cannot open {dsn}: locked", dsn) == f"cannot open {dsn}: locked"


@pytest.mark.parametrize(("dsn", "_shown"), DSN_FORMS)
def test_a_database_error_is_scrubbed_of_the_secret(dsn: str, _shown: str) -> None:
    """What a migration or role-check child prints is passed on scrubbed (data/child.py):
    a driver quotes the DSN, or a piece of it, or the password decoded."""
    out = redact(f'connection to "{dsn}" failed', dsn)
    assert SECRET not in out
    line = one_line(ValueError(f"invalid dsn: missing \"=\" after \"{dsn}\""), dsn)
    assert SECRET not in line and line.startswith("ValueError: ")


def test_a_password_is_scrubbed_as_the_driver_sees_it() -> None:
    """Percent-decoded from a URL, unquoted and unescaped from key=value."""
    dsn = "postgresql://app:p%40ss-w0rd%2Fx@db/wabot"
    out = redact('FATAL: password "p@ss-w0rd/x" for user "app"', dsn)
    assert "p@ss-w0rd/x" not in out and 'user "app"' in out
    dsn = f"host=db password='{SECRET} it\\'s' dbname=wabot"
    out = redact(f"FATAL: password \"{SECRET} it's\" for user \"app\"", dsn)
    assert SECRET not in out and 'user "app"' in out


@pytest.mark.parametrize(("url", "shown", "origin"), [
    (f"socks5://user:{SECRET}@proxy.example:1080", "socks5://***@proxy.example:1080",
     "socks5://proxy.example:1080"),
    (f"http://{SECRET}@proxy.example", "http://***@proxy.example", "http://proxy.example"),
    (f"https://hooks.example/in?token={SECRET}&team=a", "https://hooks.example/in?token=***&team=a",
     "https://hooks.example"),
    (f"https://hooks.example/in?X-Amz-Signature={SECRET}#{SECRET}",
     "https://hooks.example/in?X-Amz-Signature=***", "https://hooks.example"),
    (f"https://hooks.example/in?code={SECRET}", "https://hooks.example/in?code=***",
     "https://hooks.example"),
    (f"https://u:{SECRET}@hooks.example:8443/x", "https://***@hooks.example:8443/x",
     "https://hooks.example:8443"),
    (f"https://hooks.example/{SECRET} x", REDACTED, REDACTED),
])
def test_urls_with_credentials(url: str, shown: str, origin: str) -> None:
    assert redact_url(url) == shown
    assert url_origin(url) == origin


def test_the_proxy_scrubs_every_shape_of_its_credentials() -> None:
    proxy = parse_proxy_url(f"socks5://us%65r:{SECRET}%21@127.0.0.1:1080")
    error = (f"dial socks5://us%65r:{SECRET}%21@127.0.0.1:1080: auth failed for user 'user' "
             f"with password '{SECRET}!'")
    out = proxy.scrub(error)
    assert SECRET not in out and "user" not in out.replace("***", "")
    assert proxy.display == "socks5://***@127.0.0.1:1080"


def test_the_log_formatter_scrubs_registered_secrets_from_any_field() -> None:
    """The last line of defence: a traceback or a library's message carrying the DSN."""
    secrets = KnownSecrets()
    secrets.add(f"host=db password={SECRET}", "dsn")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter(secrets))
    logger = logging.getLogger("tests.security.redaction")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        try:
            raise RuntimeError(f"cannot connect: password {SECRET} refused")
        except RuntimeError as exc:
            logger.exception("failed %s", SECRET, extra={"nested": {"v": [SECRET]},
                                                          "error": exc})
    finally:
        logger.removeHandler(handler)
    line = json.loads(stream.getvalue())
    assert SECRET not in stream.getvalue()
    assert line["msg"] == "failed ***" and line["nested"] == {"v": ["***"]}
    assert "RuntimeError: cannot connect: password *** refused" in line["exc"]


# --- the attack, end to end ----------------------------------------------------------------


@pytest.mark.parametrize(("dsn", "starts"), [
    pytest.param("Zq7-sk_live_8f3e9a1c44b2d0e7-tenant-secret", False, id="unparseable"),
    pytest.param("host=127.0.0.1 port=9 user=app password=Zq7-kv-S3cr3t dbname=x", False,
                 id="key-value"),
    pytest.param("postgresql://app@127.0.0.1:9/x?password=Zq7-qp-S3cr3t", True,
                 id="query-password"),
])
def test_a_worker_never_prints_a_secret_given_as_its_database(tmp_path: Path, dsn: str,
                                                              starts: bool) -> None:
    """The real worker process, started the way a pod is, with another Secret's value (or a DSN
    in a form the old redaction missed) as DATABASE_URL. A value that is no database URL stops
    it at once with one line that does not show it (exit 2); a URL it can use starts it, it
    tries its database and logs about it. Nothing it prints contains the secret. The
    PostgreSQL address is a closed port on loopback; an invalid proxy keeps the bot from
    dialling WhatsApp."""
    secret = dsn.split("password=")[-1] if "password=" in dsn else dsn
    spec = tmp_path / "bot.yaml"
    spec.write_text("serverName: tenant-a\nbotId: bot-a\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "botworker"],
        env=worker_process_env(
            tmp_path, BOT_ID="bot-a", SERVER_NAME="tenant-a", HTTP_PORT="0",
            HTTP_HOST="127.0.0.1", WABOT_SPEC_SOURCE=f"file:{spec}", LOG_LEVEL="DEBUG",
            DATABASE_URL=dsn, WABOT_PROXY_URL="socks4://no-dial.invalid",
            WABOT_SHUTDOWN_TIMEOUT_SECONDS="10"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    lines: list[str] = []
    assert proc.stderr is not None and proc.stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")),
                              daemon=True)
    reader.start()
    try:
        # Up to the database's first verdict (a failed migration or role check, logged with
        # the DSN and the child's error), or the refusal, then stop.
        wait_for(lambda: proc.poll() is not None or any(
            "database not ready" in ln or "not using the database" in ln
            for ln in list(lines)), timeout=60, what="the database's first log line or exit")
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        reader.join(10)
        out = proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    printed = "".join(lines) + out
    if starts:
        assert '"msg": "starting worker"' in printed and '"db": ' in printed
    else:
        assert proc.returncode == 2
        assert [ln for ln in printed.splitlines() if ln.strip()] == [
            "wabot worker: DATABASE_URL: not a postgresql://USER:PASSWORD@HOST[:PORT]/DB or "
            "sqlite:///PATH URL (the value is not shown: it may hold a password)"]
    assert secret not in printed, "the DATABASE_URL's secret is in the worker's output"
    assert "Zq7" not in printed
    record.finding("1b", "a Secret's value given to a worker as an unparseable DATABASE_URL",
                   "not in the worker's output (kubectl logs); nor key=value or ?password= "
                   "forms")
