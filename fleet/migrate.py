"""`python -m fleet migrate`: from a monolith (or controller) to Kubernetes, keeping every
bot's WhatsApp session, so nobody has to scan a QR code again.

For each bot of the bots file it writes:
- the WhatsAppBot manifest, with `spec.suspend: true` when there is a session to restore: the
  operator then creates the bot's PVC (`wabot-N-auth`) but no pod, so no worker can start an
  empty session (a new pairing) before the old one is in place;
- `auth.tar.gz`: the bot's session directory `auth/{serverName}/bot_{botId}/` exactly as it
  is under the monolith's AUTH_DIR (paths relative to it, owned by uid/gid 10001), which is
  also where the worker looks for it on the PVC;
- a restore manifest: a ConfigMap holding the archive and a one-shot Job that mounts the PVC
  and unpacks it (when the archive fits in a ConfigMap), or else a Pod to `kubectl cp` the
  archive into, with the commands in `restore.sh`. Both run the worker image as uid 10001 under
  the Restricted Pod Security Standard and refuse to overwrite an existing session;
- `MIGRATION.md` with the steps in order, for these bots.

The monolith must be stopped first: a session used by two processes is logged out.
"""

from __future__ import annotations

import argparse
import os
import sys
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from wabot.naming import LABEL_BOT, LABEL_SERVER, auth_subdir, pvc_name

from .botsfile import BotDefinition, BotsFileError, load_bots_file
from .compose import AUTH_DIR, DEFAULT_IMAGE

# A ConfigMap's whole object must stay under 1 MiB and binaryData is stored base64-encoded.
CONFIGMAP_LIMIT = 700 * 1024
UID = 10001
ARCHIVE = "auth.tar.gz"

# Runs in the worker image: the archive, the auth root (PVC mount), the session's relative dir.
RESTORE_SCRIPT = r"""
import os, sys, tarfile
archive, root, session = sys.argv[1], sys.argv[2], sys.argv[3]
target = os.path.join(root, session)
if os.path.isdir(target) and os.listdir(target) and os.environ.get("WABOT_RESTORE_FORCE") != "1":
    sys.exit(f"{target} already holds a session; refusing to overwrite it "
             "(set WABOT_RESTORE_FORCE=1 to replace it)")
with tarfile.open(archive, "r:gz") as tar:
    names = tar.getnames()
    bad = [n for n in names if not (n == session or n.startswith(session + "/"))]
    if bad:
        sys.exit(f"archive holds files outside {session}: {bad[:3]}")
    tar.extractall(root, filter="data")
print(f"restored {len(names)} entries into {target}")
"""


@dataclass(frozen=True)
class MigratedBot:
    name: str
    session: str
    archive: Path | None
    files: int
    mode: str  # "configmap", "copy" or "none"


def _reset(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = UID
    info.uname = info.gname = ""
    return info


def archive_session(auth_root: Path, bot: BotDefinition, out: Path) -> int:
    """Tar the bot's session dir (paths relative to the auth root); returns the file count."""
    rel = auth_subdir(bot.server_name, bot.bot_id)
    source = auth_root / rel
    count = 0
    with tarfile.open(out, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        tar.add(source, arcname=str(rel), recursive=False, filter=_reset)
        for dirpath, dirnames, filenames in os.walk(source):
            dirnames.sort()
            for entry in [*sorted(dirnames), *sorted(filenames)]:
                path = Path(dirpath) / entry
                arc = str(rel / path.relative_to(source))
                if path.is_symlink():
                    raise ValueError(f"{path}: symlinks are not migrated")
                tar.add(path, arcname=arc, recursive=False, filter=_reset)
                count += path.is_file()
    return count


def _security(pod_level: bool) -> dict[str, Any]:
    if pod_level:
        return {"runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID, "fsGroup": UID,
                "seccompProfile": {"type": "RuntimeDefault"}}
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
            "runAsNonRoot": True, "runAsUser": UID, "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"}}


def _meta(bot: BotDefinition, name: str, namespace: str) -> dict[str, Any]:
    return {"name": name, "namespace": namespace,
            "labels": {LABEL_BOT: bot.name, LABEL_SERVER: bot.server_name,
                       "app.kubernetes.io/name": "wabot",
                       "app.kubernetes.io/component": "restore"}}


def restore_manifests(bot: BotDefinition, namespace: str, image: str, archive: bytes
                      ) -> tuple[list[dict[str, Any]], str]:
    """The restore objects and how to use them ("configmap": apply and wait; "copy": the Pod
    waits for `kubectl cp`)."""
    name = f"wabot-{bot.name}-restore"
    session = str(auth_subdir(bot.server_name, bot.bot_id))
    volumes: list[dict[str, Any]] = [
        {"name": "auth", "persistentVolumeClaim": {"claimName": pvc_name(bot.name)}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
    ]
    mounts: list[dict[str, Any]] = [{"name": "auth", "mountPath": AUTH_DIR},
                                    {"name": "tmp", "mountPath": "/tmp"}]
    fits = len(archive) <= CONFIGMAP_LIMIT
    if fits:
        import base64

        cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(bot, name, namespace),
              "binaryData": {ARCHIVE: base64.b64encode(archive).decode()}}
        volumes.append({"name": "archive", "configMap": {"name": name}})
        mounts.append({"name": "archive", "mountPath": "/restore", "readOnly": True})
        command = ["python3", "-c", RESTORE_SCRIPT, f"/restore/{ARCHIVE}", AUTH_DIR, session]
    else:
        # Waits (up to an hour) for the archive to be copied in, then restores and exits.
        wait = ("import os, time, subprocess, sys\n"
                "deadline = time.time() + 3600\n"
                "while not os.path.exists('/tmp/ready') and time.time() < deadline:\n"
                "    time.sleep(1)\n"
                "sys.exit(subprocess.call([sys.executable, '-c', os.environ['RESTORE'], "
                f"'/tmp/{ARCHIVE}', {AUTH_DIR!r}, {session!r}]))\n")
        command = ["python3", "-c", wait]
    container: dict[str, Any] = {
        "name": "restore", "image": image, "imagePullPolicy": "IfNotPresent",
        "command": command, "volumeMounts": mounts, "securityContext": _security(False),
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"},
                      "limits": {"cpu": "500m", "memory": "256Mi"}},
    }
    if not fits:
        container["env"] = [{"name": "RESTORE", "value": RESTORE_SCRIPT}]
    pod_spec = {"restartPolicy": "Never", "automountServiceAccountToken": False,
                "securityContext": _security(True), "containers": [container],
                "volumes": volumes}
    if fits:
        job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": _meta(bot, name, namespace),
               "spec": {"backoffLimit": 3, "ttlSecondsAfterFinished": 86400,
                        "template": {"metadata": {"labels": _meta(bot, name, namespace)
                                                  ["labels"]},
                                     "spec": pod_spec}}}
        return [cm, job], "configmap"
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": _meta(bot, name, namespace),
           "spec": pod_spec}
    return [pod], "copy"


def restore_script(bot: BotDefinition, namespace: str, mode: str) -> str:
    name = f"wabot-{bot.name}-restore"
    ns = f"-n {namespace}"
    lines = ["#!/usr/bin/env bash",
             f"# Restores bot {bot.name}'s session into PVC {pvc_name(bot.name)}.",
             "set -euo pipefail", 'cd "$(dirname "${BASH_SOURCE[0]}")"',
             "# The operator creates the PVC when the (suspended) WhatsAppBot is applied.",
             f"until kubectl {ns} get pvc/{pvc_name(bot.name)} >/dev/null 2>&1; do sleep 2; done",
             f"kubectl {ns} apply -f restore.yaml"]
    if mode == "configmap":
        lines += [f"kubectl {ns} wait --for=condition=Complete job/{name} --timeout=10m",
                  f"kubectl {ns} logs job/{name}",
                  f"kubectl {ns} delete -f restore.yaml"]
    else:
        lines += [f"kubectl {ns} wait --for=condition=Ready pod/{name} --timeout=10m",
                  f"kubectl {ns} cp {ARCHIVE} {name}:/tmp/{ARCHIVE}",
                  f"kubectl {ns} exec {name} -- python3 -c "
                  "\"open('/tmp/ready', 'w').close()\"",
                  f"kubectl {ns} wait --for=jsonpath='{{.status.phase}}'=Succeeded pod/{name} "
                  "--timeout=10m",
                  f"kubectl {ns} logs {name}",
                  f"kubectl {ns} delete -f restore.yaml"]
    return "\n".join(lines) + "\n"


def migrate(bots: Sequence[BotDefinition], auth_root: Path, out: Path, namespace: str | None,
            image: str) -> list[MigratedBot]:
    out.mkdir(parents=True, exist_ok=True)
    manifests = []
    results = []
    for bot in bots:
        ns = namespace or bot.namespace or "default"
        session = auth_subdir(bot.server_name, bot.bot_id)
        source = auth_root / session
        has_session = source.is_dir() and any(source.iterdir())
        manifest = bot.manifest(ns)
        if has_session and not bot.spec.suspend:
            manifest["spec"]["suspend"] = True  # unsuspended after the restore (MIGRATION.md)
        manifests.append(manifest)
        if not has_session:
            results.append(MigratedBot(bot.name, str(session), None, 0, "none"))
            continue
        bot_dir = out / "bots" / bot.name
        bot_dir.mkdir(parents=True, exist_ok=True)
        archive = bot_dir / ARCHIVE
        files = archive_session(auth_root, bot, archive)
        objects, mode = restore_manifests(bot, ns, image, archive.read_bytes())
        (bot_dir / "restore.yaml").write_text(yaml.safe_dump_all(objects, sort_keys=False))
        script = bot_dir / "restore.sh"
        script.write_text(restore_script(bot, ns, mode))
        script.chmod(0o755)
        results.append(MigratedBot(bot.name, str(session), archive, files, mode))
    (out / "whatsappbots.yaml").write_text(yaml.safe_dump_all(manifests, sort_keys=False))
    (out / "MIGRATION.md").write_text(guide(bots, results, namespace))
    return results


def guide(bots: Sequence[BotDefinition], results: Sequence[MigratedBot],
          namespace: str | None) -> str:
    by_name = {b.name: b for b in bots}
    restore = [r for r in results if r.archive is not None]
    resume = [r.name for r in restore if not by_name[r.name].spec.suspend]
    lines = [
        "# Migration to Kubernetes (generated by `python -m fleet migrate`)", "",
        "1. **Stop the monolith/controller** and make sure no worker runs: a session used by two",
        "   processes at once is logged out by WhatsApp.",
        "2. Install the CRD and the operator (see the README), then create the bots, suspended",
        "   where a session is restored (the operator creates each PVC, but no pod yet):", "",
        "       kubectl apply -f whatsappbots.yaml", "",
        "3. Restore each session into its PVC (each script waits for its Job or Pod):", "",
    ]
    lines += [f"       bots/{r.name}/restore.sh    # {r.files} files of {r.session}"
              for r in restore] or ["       (no bot has a session to restore)"]
    lines += ["", "4. Resume the restored bots:", ""]
    lines += [f"       kubectl{' -n ' + (namespace or by_name[n].namespace or 'default')} "
              f"patch whatsappbot {n} --type merge -p '{{\"spec\":{{\"suspend\":false}}}}'"
              for n in resume] or ["       (none)"]
    fresh = [r.name for r in results if r.archive is None]
    if fresh:
        lines += ["", "Bots without a session (they pair anew: scan the QR code or type the "
                  "pairing code shown in their status): " + ", ".join(fresh)]
    lines += ["", "Keep the monolith's auth dir until every bot shows Connected in "
              "`kubectl get whatsappbots`.", ""]
    return "\n".join(lines)


def run(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m fleet migrate", description=(
        "Turn a bots file and its auth dirs into WhatsAppBot manifests and PVC restore kits."))
    p.add_argument("--bots", type=Path, required=True)
    p.add_argument("--auth-dir", type=Path, required=True,
                   help="the monolith's AUTH_DIR (holding auth/{serverName}/bot_{botId}/)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--namespace", help="namespace of every bot (default: each bot's "
                   "metadata.namespace, else default)")
    p.add_argument("--image", default=DEFAULT_IMAGE, help="worker image for the restore jobs")
    args = p.parse_args(list(argv or []))
    try:
        bots = load_bots_file(args.bots)
        results = migrate(bots, args.auth_dir, args.out, args.namespace, args.image)
    except (BotsFileError, ValueError, OSError) as exc:
        print(f"migrate: {exc}", file=sys.stderr)
        return 2
    for r in results:
        what = f"{r.files} files ({r.mode})" if r.archive else "no session: will pair anew"
        print(f"migrate: {r.name}: {r.session}: {what}")
    print(f"migrate: wrote {args.out}; follow {args.out / 'MIGRATION.md'}")
    return 0


def read_archive(path: Path) -> dict[str, bytes]:
    """Regular files of an archive by name (for tests and for checking a kit by hand)."""
    out = {}
    with tarfile.open(path, "r:gz") as tar:
        for m in tar.getmembers():
            if m.isfile():
                f = tar.extractfile(m)
                assert f is not None
                out[m.name] = f.read()
    return out

