"""`python -m devcluster.provisioner CLUSTER_ROOT NODE_NAME VOLUMES_DIR`: local volumes for the
real node's StorageClass (`wabot-real-node`).

Why not the controller-manager's hostPath provisioner (the default class): a hostPath volume
ignores the pod's fsGroup, so its root-owned directory is not writable by the worker (uid
10001). A `local` volume is the kind the kubelet applies fsGroup to, as on a real cluster's
disks, and its node affinity keeps a bot's session on the node that has it. This process
lists the class's claims every half second: a claim the scheduler placed on the node
(WaitForFirstConsumer) gets a directory and a PV bound to it; a released PV goes, and its
directory with it.
"""

from __future__ import annotations

import json
import shutil
import ssl
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

PROVISIONER = "wabot.io/real-node"
SELECTED_NODE = "volume.kubernetes.io/selected-node"


class Api:
    def __init__(self, cluster_root: Path) -> None:
        state = json.loads((cluster_root / "state.json").read_text())
        self.server = f"https://127.0.0.1:{state['ports']['apiserver']}"
        pki = cluster_root / "pki"
        self.ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        self.ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))

    def call(self, method: str, path: str, body: object = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.server + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, context=self.ctx, timeout=10) as r:
            return json.load(r)


def storage_class(name: str) -> dict[str, Any]:
    return {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": name}, "provisioner": PROVISIONER,
            "reclaimPolicy": "Delete", "volumeBindingMode": "WaitForFirstConsumer"}


def _volume(claim: dict[str, Any], node: str, path: Path) -> dict[str, Any]:
    meta = claim["metadata"]
    return {
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": f"wabot-local-{meta['uid']}",
                     "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER}},
        "spec": {
            "capacity": {"storage": claim["spec"]["resources"]["requests"]["storage"]},
            "accessModes": claim["spec"]["accessModes"],
            "persistentVolumeReclaimPolicy": "Delete",
            "storageClassName": claim["spec"]["storageClassName"],
            "local": {"path": str(path)},
            "claimRef": {"namespace": meta["namespace"], "name": meta["name"],
                         "uid": meta["uid"]},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}}}


def sync(api: Api, node: str, volumes: Path, storage_class_name: str) -> None:
    """One pass: provision what waits, delete what was released."""
    claims = api.call("GET", "/api/v1/persistentvolumeclaims")["items"]
    pvs = {pv["metadata"]["name"]: pv
           for pv in api.call("GET", "/api/v1/persistentvolumes")["items"]}
    for claim in claims:
        meta, spec = claim["metadata"], claim["spec"]
        if (spec.get("storageClassName") != storage_class_name or spec.get("volumeName")
                or (meta.get("annotations") or {}).get(SELECTED_NODE) != node):
            continue
        name = f"wabot-local-{meta['uid']}"
        if name in pvs:
            continue
        path = volumes / name
        path.mkdir(parents=True, exist_ok=True)
        api.call("POST", "/api/v1/persistentvolumes", _volume(claim, node, path))
    for name, pv in pvs.items():
        annotations = pv["metadata"].get("annotations") or {}
        if (annotations.get("pv.kubernetes.io/provisioned-by") == PROVISIONER
                and pv.get("status", {}).get("phase") == "Released"
                and pv["spec"].get("storageClassName") == storage_class_name):
            shutil.rmtree(volumes / name, ignore_errors=True)
            try:
                api.call("DELETE", f"/api/v1/persistentvolumes/{name}")
            except urllib.error.HTTPError as e:
                if e.code != 404:
                    raise


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    api = Api(Path(argv[0]))
    node, volumes, class_name = argv[1], Path(argv[2]), argv[3]
    while True:
        try:
            sync(api, node, volumes, class_name)
        except (OSError, ValueError, KeyError) as e:  # the API server restarting, say
            print(f"provisioner: {e}", file=sys.stderr, flush=True)
        time.sleep(0.5)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
