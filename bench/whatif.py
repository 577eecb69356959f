"""What-if copies of the operator, for `python -m bench --operator-path DIR`.

    python -m bench.whatif /tmp/whatif        # writes /tmp/whatif/<variant>/wabot_operator
    python -m bench --only operator --sizes 500 --modes burst --operator-path /tmp/whatif/all

Each variant is the repo's current `operator/wabot_operator` with small textual edits; none of
them is applied to the repo. If the operator's code has moved and an edit no longer applies,
the variant is not written and the reason is printed.

- `pool32`: reconcile passes run in a pool of 32 threads instead of asyncio's default executor
  (min(32, CPUs + 4) = 6 threads on this machine); a pass is a sequence of blocking API calls.
- `one-event`: one "Created" Event per pass listing every supporting object created, instead of
  one Event per object (an Event is an API request).
- `coalesce`: after a watch event wakes a bot's loop, wait 0.5 s before the pass so the next
  few pod/status changes are handled by the same pass (fewer status patches).
- `slim-index`: the pod index keeps what `observe_pod` reads (metadata without managedFields,
  spec.nodeName, status) instead of a deep copy of the whole pod.
- `all`: the four together.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from bench.common import REPO

SOURCE = REPO / "operator" / "wabot_operator"

Edit = tuple[str, str, str]  # (file, old, new)

POOL: list[Edit] = [
    ("handlers.py", "import asyncio\n",
     "import asyncio\nimport concurrent.futures\n"),
    ("handlers.py", "log = logging.getLogger(\"wabot_operator\")\n",
     "log = logging.getLogger(\"wabot_operator\")\n"
     "_POOL = concurrent.futures.ThreadPoolExecutor(32, thread_name_prefix=\"reconcile\")\n"),
    ("handlers.py",
     "await asyncio.to_thread(runtime.reconciler.reconcile, bot, pod, memory)",
     "await asyncio.get_running_loop().run_in_executor(\n"
     "                _POOL, runtime.reconciler.reconcile, bot, pod, memory)"),
]
ONE_EVENT: list[Edit] = [
    ("reconcile.py",
     "        for desired in children.supporting():\n"
     "            self._ensure_one(ref, desired, outcome, log)",
     "        scratch = Outcome()\n"
     "        for desired in children.supporting():\n"
     "            self._ensure_one(ref, desired, scratch, log)\n"
     "        made = [e.message.removeprefix('created ') for e in scratch.events\n"
     "                if e.reason == 'Created']\n"
     "        outcome.events.extend(e for e in scratch.events if e.reason != 'Created')\n"
     "        if made:\n"
     "            outcome.events.append(Event('Normal', 'Created', 'created ' + ', '.join(made)))"),
]
COALESCE: list[Edit] = [
    ("handlers.py",
     "            await _sleep_until(wake, stopped, delay)\n    finally:",
     "            await _sleep_until(wake, stopped, delay)\n"
     "            if wake.is_set() and not stopped:\n"
     "                await asyncio.sleep(0.5)\n"
     "    finally:"),
]
SLIM_INDEX: list[Edit] = [
    ("handlers.py",
     "(name, copy.deepcopy(dict(body)))}",
     "(name, _slim_pod(body))}\n\n\n"
     "def _slim_pod(body: Any) -> dict[str, Any]:\n"
     "    meta = body.get('metadata') or {}\n"
     "    keep = ('name', 'namespace', 'uid', 'labels', 'annotations', 'ownerReferences',\n"
     "            'deletionTimestamp', 'creationTimestamp', 'resourceVersion')\n"
     "    return copy.deepcopy({'metadata': {k: meta[k] for k in keep if k in meta},\n"
     "                          'spec': {'nodeName': (body.get('spec') or {}).get('nodeName')},\n"
     "                          'status': dict(body.get('status') or {})})"),
]
VARIANTS: dict[str, list[Edit]] = {
    "pool32": POOL,
    "one-event": ONE_EVENT,
    "coalesce": COALESCE,
    "slim-index": SLIM_INDEX,
    "all": POOL + ONE_EVENT + COALESCE + SLIM_INDEX,
}


def build(out: Path, name: str, edits: list[Edit], say: Callable[[str], None] = print) -> bool:
    target = out / name / "wabot_operator"
    shutil.rmtree(out / name, ignore_errors=True)
    shutil.copytree(SOURCE, target, ignore=shutil.ignore_patterns("__pycache__"))
    for file, old, new in edits:
        path = target / file
        text = path.read_text()
        if text.count(old) != 1:
            say(f"{name}: the edit to {file} no longer applies ({old.splitlines()[0]!r}); "
                "variant not written")
            shutil.rmtree(out / name, ignore_errors=True)
            return False
        path.write_text(text.replace(old, new))
    say(f"{name}: {out / name}")
    return True


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__)
        return 2
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    ok = [build(out, name, edits) for name, edits in VARIANTS.items()]
    return 0 if all(ok) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
