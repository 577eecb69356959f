"""What the worker writes to status.worker (and its session action record) without pydantic,
wabot/status_view.py dumped by wabot/specread.dump, is what the operator's pydantic model reads,
and the same JSON the model would have written for the same values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from wabot import status, status_view
from wabot.specread import SpecError, dump, read
from wabot.states import WorkerState

AT = datetime(2026, 12, 7, 13, 9, 41, 123456, tzinfo=UTC)


def _reports() -> list[Any]:
    v = status_view
    return [
        v.WorkerReport(state=WorkerState.STARTING, updated_at=AT),
        v.WorkerReport(
            state=WorkerState.CONNECTED, updated_at=AT.replace(microsecond=0), pod_name="p-1",
            pairing=v.PairingStatus(method="code", code="ABCD-EFGH", expires_at=AT),
            account=v.AccountStatus(jid="4915@s.whatsapp.net", push_name="Shop"),
            last_connected_at=AT - timedelta(hours=1), last_error="stream error",
            error_reason="InvalidProxy", reconnects=3,
            session_action=v.SessionActionStatus(request_id="r1", action="logout",
                                                 source="api", result="Succeeded",
                                                 message="done", at=AT),
            media=v.MediaStorageStatus(used_bytes=10, files=1, quota_bytes=100, full=False),
            activity=v.ActivityStatus(
                messages_in_last_hour=5, messages_out_last_hour=4, since=AT,
                webhook=v.WebhookDeliveryStatus(queue_depth=2, failing=True,
                                                failing_since=AT, last_failure="HTTP 503"))),
        v.WorkerReport(state=WorkerState.PAIRING,
                       updated_at=datetime(2026, 1, 1, 2, tzinfo=timezone(timedelta(hours=2))),
                       pairing=v.PairingStatus(method="qr", qr="2@abc")),
    ]


@pytest.mark.parametrize("report", _reports())
@pytest.mark.parametrize("exclude_none", [False, True])
def test_the_model_reads_what_the_worker_writes(report: Any, exclude_none: bool) -> None:
    written = dump(report, exclude_none=exclude_none)
    model = status.WorkerReport.model_validate(written)
    assert model.model_dump(mode="json", by_alias=True, exclude_none=exclude_none) == written
    assert read(status_view.WorkerReport, written) == report  # and back


def test_a_session_record_reads_back_and_a_bad_one_names_the_field() -> None:
    record = status_view.SessionActionStatus(request_id="k", action="restart",
                                             source="kubernetes", result="Started", at=AT)
    assert read(status_view.SessionActionStatus, dump(record)) == record
    with pytest.raises(SpecError, match=r"^spec.result: expected one of "):
        read(status_view.SessionActionStatus, {**dump(record), "result": "Maybe"})
    with pytest.raises(SpecError, match=r"^spec.at: expected a date-time"):
        read(status_view.SessionActionStatus, {**dump(record), "at": "yesterday"})
    with pytest.raises(SpecError, match=r"^spec.state: expected one of Starting, "):
        read(status_view.WorkerReport, {"state": "Sleeping", "updatedAt": "2026-01-01T00:00Z"})
