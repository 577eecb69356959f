"""A bot process for the fleet console's tests: the real `wabot worker` (botworker.main, its
env contract, spec file and HTTP API as the monolith starts it) with neonize's real client,
whose calls that would reach WhatsApp are answered locally (tests/worker/account_client.py).

Once started it receives a QR code through neonize's own QR callback, as whatsmeow delivers
one (the payload: $TEST_QR_PREFIX plus the bot's id, so each bot's differs); SIGUSR1 makes it
connected (neonize's ConnectedEv through neonize's dispatcher); SIGUSR2 makes it receive three
"!ping" messages the same way (each answered once connected)."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from botworker import main as worker_main
from botworker import worker as worker_module
from tests.worker.account_client import AccountWorld, account_client
from tests.worker.conftest import dispatch, message_ev


def qr_payload(bot_id: str) -> str:
    return os.environ["TEST_QR_PREFIX"] + bot_id


class ConsoleTestWorker(worker_module.Worker):
    def __init__(self, cfg: Any, spec: Any, **kw: Any) -> None:
        super().__init__(cfg, spec, client=account_client(str(cfg.session_path), AccountWorld()),
                         sessions_enabled=False, terminal=False, **kw)

    def start(self) -> None:
        super().start()
        from neonize.events import ConnectedEv

        signal.signal(signal.SIGUSR1,
                      lambda *_: dispatch(self.client, ConnectedEv(status=True)))
        signal.signal(signal.SIGUSR2, lambda *_: [
            dispatch(self.client, message_ev("!ping", chat=f"1555000{i:04d}"))
            for i in range(3)])
        buf = ctypes.create_string_buffer(qr_payload(self.cfg.bot_id).encode())
        self.client._NewClient__onQr(0, ctypes.addressof(buf))


if __name__ == "__main__":
    worker_module.Worker = ConsoleTestWorker  # type: ignore[misc]
    sys.exit(worker_main.main())
