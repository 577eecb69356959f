"""New bot or restart: the worker reads its volume before the first dial, and the connection
rulebook acts on it (a new bot dials at once; a restarted one spreads its first dial).

Real code throughout: neonize's real connect() creates the session store (it fails to dial
here, which is all it needs to do), the row a pairing would leave is written into whatsmeow's
own table, and the restarted worker builds its client the production way.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from botworker.adapters.session_store import has_linked_session
from botworker.core import lifecycle as lc
from botworker.core.backoff import BackoffPolicy
from botworker.worker import Worker
from wabot.spec import WhatsAppBotSpec

from .conftest import recording_client, wait_for, worker_config

SPEC = WhatsAppBotSpec(server_name="tenant-a", bot_id="bot-a")
# No redial during the test: a failed dial of a new bot waits 30 s.
SLOW_RETRY = BackoffPolicy(base_s=30.0, cap_s=30.0, min_s=30.0, jitter="equal")


def _has_device_table(path: Path) -> bool:
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            return db.execute("SELECT 1 FROM sqlite_master WHERE name = 'whatsmeow_device'"
                              ).fetchone() is not None
        finally:
            db.close()
    except sqlite3.Error:
        return False


def _link_device(path: Path) -> None:
    """What a successful pairing leaves behind: whatsmeow's row for the linked device."""
    db = sqlite3.connect(path)
    try:
        db.execute(
            "INSERT INTO whatsmeow_device (jid, registration_id, noise_key, identity_key,"
            " signed_pre_key, signed_pre_key_id, signed_pre_key_sig, adv_key, adv_details,"
            " adv_account_sig, adv_account_sig_key, adv_device_sig)"
            " VALUES (?, 1, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?)",
            ("4915550001111.0:1@s.whatsapp.net", b"n" * 32, b"i" * 32, b"s" * 32, b"g" * 64,
             b"a", b"d", b"c" * 64, b"k" * 32, b"v" * 64),
        )
        db.commit()
    finally:
        db.close()


def test_a_new_bot_dials_at_once_and_its_restart_spreads_the_first_dial(tmp_path: Path) -> None:
    cfg = worker_config(tmp_path)
    assert not cfg.session_path.exists()

    # A new bot: no store on the volume; it dials the moment it holds the Lease.
    new = Worker(cfg, SPEC, client=recording_client(str(cfg.session_path)), terminal=False,
                 http=False, policy=lc.Policy(backoff=SLOW_RETRY))
    assert new.resuming is False
    new.start()
    try:
        assert new.connection.sync()
        assert new.connection.state.sessions_started == 1
        wait_for(lambda: _has_device_table(cfg.session_path), timeout=60,
                 what="neonize's session store created by connect()")
    finally:
        assert new.stop(40.0)
    # Started once but never paired: still not a restart (its QR is what someone waits for).
    assert has_linked_session(cfg.session_path) is False

    _link_device(cfg.session_path)
    assert has_linked_session(cfg.session_path) is True

    # Its restart: the client is built the production way; the first dial is spread.
    policy = lc.Policy(backoff=SLOW_RETRY, resume_jitter_s=1000.0)
    t0 = time.time()
    restarted = Worker(cfg, SPEC, sessions_enabled=False, terminal=False, http=False,
                       policy=policy)
    assert restarted.resuming is True
    restarted.start()
    try:
        assert restarted.connection.sync()
        st = restarted.connection.state
        assert st.resuming and st.lease_held and st.sessions_started == 0
        assert st.retry_at is not None and t0 <= st.retry_at <= time.time() + 1000.0
        assert restarted.ready() == (False, "state Starting")
    finally:
        assert restarted.stop(10.0)

    # With a short window the restarted worker does dial, within it.
    quick = Worker(cfg, SPEC, sessions_enabled=False, terminal=False, http=False,
                   policy=lc.Policy(backoff=SLOW_RETRY, resume_jitter_s=0.5))
    t0 = time.monotonic()
    quick.start()
    try:
        wait_for(lambda: quick.connection.state.sessions_started == 1, timeout=5,
                 what="the spread first dial")
        assert time.monotonic() - t0 < 0.5 + 1.5  # the window, plus the loop's 1 s tick at most
    finally:
        assert quick.stop(10.0)


def test_an_unreadable_store_counts_as_a_restart_and_none_as_a_new_bot(tmp_path: Path) -> None:
    store = tmp_path / "session.sqlite3"
    assert has_linked_session(store) is False
    store.write_bytes(b"")
    assert has_linked_session(store) is False
    store.write_bytes(b"not a database, but something was here" * 100)
    assert has_linked_session(store) is True
