"""Migration kits: archives that hold exactly each bot's session, a restore that puts it where
the worker looks on the PVC, and manifests the real API server accepts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from fleet.botsfile import parse_documents
from fleet.migrate import (
    CONFIGMAP_LIMIT,
    RESTORE_SCRIPT,
    migrate,
    read_archive,
    restore_manifests,
    run,
)

BOTS = """
apiVersion: wabot.io/v1alpha1
kind: WhatsAppBot
metadata: {name: sales, namespace: acme}
spec: {serverName: acme}
---
apiVersion: wabot.io/v1alpha1
kind: WhatsAppBot
metadata: {name: big}
spec: {serverName: globex, botId: news}
---
apiVersion: wabot.io/v1alpha1
kind: WhatsAppBot
metadata: {name: fresh}
spec: {serverName: acme}
"""


def session_files(auth: Path) -> dict[str, bytes]:
    files = {
        "auth/acme/bot_sales/session.sqlite3": b"SQLite format 3\x00" + os.urandom(4000),
        "auth/acme/bot_sales/audit-spool.jsonl": b'{"row": 1}\n',
        "auth/acme/bot_sales/media/cache/x.bin": b"\x00\x01",
        # large enough that it cannot travel in a ConfigMap
        "auth/globex/bot_news/session.sqlite3": os.urandom(CONFIGMAP_LIMIT + 1024),
        # another bot's session next door must not leak into these archives
        "auth/acme/bot_other/session.sqlite3": b"not yours",
    }
    for rel, data in files.items():
        (auth / rel).parent.mkdir(parents=True, exist_ok=True)
        (auth / rel).write_bytes(data)
    # the monolith's lock file sits beside the session, not in it
    (auth / "auth/acme/.bot_sales.lock").write_text("123\n")
    return files


def test_archives_hold_exactly_each_bots_session(tmp_path: Path) -> None:
    auth = tmp_path / "data"
    files = session_files(auth)
    bots_file = tmp_path / "bots.yaml"
    bots_file.write_text(BOTS)
    out = tmp_path / "kit"
    assert run(["--bots", str(bots_file), "--auth-dir", str(auth), "--out", str(out),
                "--namespace", "prod"]) == 0
    sales = read_archive(out / "bots/sales/auth.tar.gz")
    assert sales == {k: v for k, v in files.items() if k.startswith("auth/acme/bot_sales/")}
    news = read_archive(out / "bots/big/auth.tar.gz")
    assert news == {k: v for k, v in files.items() if k.startswith("auth/globex/bot_news/")}
    assert not (out / "bots/fresh").exists()  # nothing to restore: it pairs anew

    manifests = {m["metadata"]["name"]: m for m in yaml.safe_load_all(
        (out / "whatsappbots.yaml").read_text())}
    assert {m["metadata"]["namespace"] for m in manifests.values()} == {"prod"}
    assert manifests["sales"]["spec"]["suspend"] is True  # no pod before the restore
    assert manifests["big"]["spec"]["botId"] == "news"
    assert "suspend" not in manifests["fresh"]["spec"]
    guide = (out / "MIGRATION.md").read_text()
    assert "Stop the monolith" in guide and "bots/sales/restore.sh" in guide
    assert "patch whatsappbot sales" in guide and "fresh" in guide

    small = list(yaml.safe_load_all((out / "bots/sales/restore.yaml").read_text()))
    assert [o["kind"] for o in small] == ["ConfigMap", "Job"]
    big = list(yaml.safe_load_all((out / "bots/big/restore.yaml").read_text()))
    assert [o["kind"] for o in big] == ["Pod"]
    assert "kubectl -n prod cp auth.tar.gz wabot-big-restore:/tmp/auth.tar.gz" in (
        out / "bots/big/restore.sh").read_text()
    for objs in (small, big):
        pod = objs[-1]["spec"].get("template", {}).get("spec") or objs[-1]["spec"]
        assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] in (
            "wabot-sales-auth", "wabot-big-auth")


def test_the_restore_script_unpacks_where_the_worker_looks(tmp_path: Path) -> None:
    auth = tmp_path / "data"
    files = session_files(auth)
    migrate(parse_documents(BOTS), auth, tmp_path / "kit", None, "img")
    pvc = tmp_path / "pvc"
    pvc.mkdir()
    archive = tmp_path / "kit/bots/sales/auth.tar.gz"
    cmd = [sys.executable, "-c", RESTORE_SCRIPT, str(archive), str(pvc), "auth/acme/bot_sales"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    for rel, data in files.items():
        if rel.startswith("auth/acme/bot_sales/"):
            assert (pvc / rel).read_bytes() == data
    assert not (pvc / "auth/acme/bot_other").exists()
    # A second run must not overwrite a session that is already there.
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert again.returncode != 0 and "refusing to overwrite" in again.stderr


def _pod_from(objects: list[dict[str, Any]], namespace: str) -> dict[str, Any]:
    last = objects[-1]
    if last["kind"] == "Pod":
        return last
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": last["metadata"]["name"] + "-check", "namespace": namespace},
            "spec": last["spec"]["template"]["spec"]}


@pytest.mark.cluster
def test_manifests_pass_a_server_side_dry_run(tmp_path: Path, kube: Any, namespace: str) -> None:
    auth = tmp_path / "data"
    session_files(auth)
    out = tmp_path / "kit"
    migrate(parse_documents(BOTS), auth, out, namespace, "wabot-worker:test")
    done = kube.kubectl("apply", "--dry-run=server", "-f", str(out / "whatsappbots.yaml"),
                        check=False)
    assert done.returncode == 0, done.stderr
    for bot in ("sales", "big"):
        restore = out / "bots" / bot / "restore.yaml"
        done = kube.kubectl("apply", "--dry-run=server", "-f", str(restore), check=False)
        assert done.returncode == 0, done.stderr
        # The namespace enforces the Restricted Pod Security Standard on pods: the restore
        # pod (a Job's template, checked as a bare pod) must pass it, not just warn.
        pod = _pod_from(list(yaml.safe_load_all(restore.read_text())), namespace)
        done = kube.kubectl("apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump(pod),
                            check=False)
        assert done.returncode == 0, done.stderr
        assert "violate" not in done.stderr


def test_restore_objects_switch_to_kubectl_cp_for_large_sessions() -> None:
    (bot,) = parse_documents(BOTS)[:1]
    small, mode = restore_manifests(bot, "ns", "img", b"x" * 10)
    assert mode == "configmap" and small[0]["binaryData"]["auth.tar.gz"]
    big, mode = restore_manifests(bot, "ns", "img", b"x" * (CONFIGMAP_LIMIT + 1))
    assert mode == "copy" and big[0]["kind"] == "Pod"
