"""2. Generated invalid WhatsAppBots (hypothesis): every one refused by the API server itself
(schema + CEL) with 422 and the field path in the message, while an operator watches the
namespace the whole time and neither crashes nor restarts.

Each case is a valid generated spec with exactly one fault, so the field the API server must
name is known: bad phone numbers for code pairing, out-of-range numbers, too-long strings, bad
enum values, wrong types, too many items, missing required fields, duplicate list keys, bad
names (metadata.name, serverName, botId, patterns), reserved env names, and changes of
immutable fields through PATCH and PUT on existing bots. The pydantic model (wabot.spec) is
asked too: where a rule is the model's as well, it must refuse the same spec.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from tests.operator.helpers import Cluster, OperatorProcess, eventually
from tests.reliability import figures, sizes
from wabot.bot_commands import ALL_BUILTINS
from wabot.spec import (
    API_GROUP,
    API_VERSION,
    KIND,
    PLURAL,
    RESERVED_ENV_NAMES,
    WhatsAppBotSpec,
)

SECTION = "invalid_specs"
pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(900)]

# --- valid building blocks ----------------------------------------------------------------

LOWER = "abcdefghijklmnopqrstuvwxyz"
DNS = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?\Z")
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)  # no lone surrogates
QUANTITY = st.sampled_from(["50m", "100m", "0.5", "1", "64Mi", "128Mi", "1Gi"])
ENV_NAME = st.from_regex(r"\A[A-Z_][A-Z0-9_]{0,15}\Z").filter(
    lambda n: n not in RESERVED_ENV_NAMES)
CMD_NAME = st.from_regex(r"\A[a-z][a-z0-9_-]{0,15}\Z")


@st.composite
def valid_spec(draw: st.DrawFn) -> dict[str, Any]:
    spec: dict[str, Any] = {"serverName": draw(DNS)}
    if draw(st.booleans()):
        spec["botId"] = draw(DNS)
    if draw(st.booleans()):
        spec["suspend"] = draw(st.booleans())
    if draw(st.booleans()):
        spec["rateLimit"] = {"perChatPerMinute": draw(st.integers(1, 600)),
                             "perBotPerMinute": draw(st.integers(1, 6000))}
    if draw(st.booleans()):
        names = draw(st.lists(CMD_NAME, min_size=1, max_size=3, unique=True))
        spec["commands"] = {"prefix": draw(st.sampled_from(["!", "/", "?", "#!"])),
                            "custom": [{"name": n, "response": draw(TEXT.filter(bool))}
                                       for n in names]}
    if draw(st.booleans()):
        spec["env"] = [{"name": n, "value": draw(TEXT)}
                       for n in draw(st.lists(ENV_NAME, max_size=3, unique=True))]
    if draw(st.booleans()):
        spec["resources"] = {"limits": {"cpu": draw(QUANTITY), "memory": draw(QUANTITY)}}
    if draw(st.booleans()):
        spec["pairing"] = {"method": "code",
                           "phoneNumber": draw(st.from_regex(r"\A[1-9][0-9]{6,14}\Z"))}
    if draw(st.booleans()):
        spec["webhook"] = {"url": "https://hooks.example/" + draw(DNS),
                           "secretRef": {"name": draw(DNS)}}
    return spec


# --- one fault each ---------------------------------------------------------------------------


@dataclass
class Case:
    category: str
    path: str  # must appear in the API server's message
    name: str = ""
    spec: dict[str, Any] = field(default_factory=dict)
    update: dict[str, Any] | None = None  # a change to an existing bot (immutability)
    put: bool = False
    model_refuses: bool = True  # wabot.spec's model has the same rule

    def key(self) -> str:
        return json.dumps([self.category, self.name, self.spec, self.update, self.put],
                          sort_keys=True)


def _set(spec: dict[str, Any], path: list[str], value: Any) -> dict[str, Any]:
    out = json.loads(json.dumps(spec))
    node = out
    for p in path[:-1]:
        if not isinstance(node.get(p), dict):
            node[p] = {}
        node = node[p]
    node[path[-1]] = value
    return out


def not_matching(regex: str, base: st.SearchStrategy[str] = TEXT) -> st.SearchStrategy[str]:
    import re

    compiled = re.compile(regex)
    return base.filter(lambda s: compiled.search(s) is None)


PHONE_RE = r"^[1-9][0-9]{6,14}$"
NAME_RE = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
QUANTITY_RE = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|Mi|Gi|Ti|M|G|T)?$"
NUMBERS = {  # field path -> (minimum, maximum)
    "rateLimit.perChatPerMinute": (1, 600),
    "rateLimit.perBotPerMinute": (1, 6000),
    "settings.maxMessageLength": (1, 65536),
}
LONG_STRINGS = {  # field path -> max length; the value must stay valid otherwise
    "serverName": 63, "botId": 63, "image": 512, "settings.welcomeText": 4096,
    "commands.custom[0].response": 4096, "commands.custom[0].description": 200,
    "env[0].value": 8192, "nodeSelector.zone": 63, "database.secretRef.key": 253,
    "webhook.url": 2048,
}
ENUMS = {
    "pairing.method": ("qr", "code"), "storage.retainPolicy": ("Retain", "Delete"),
    "commands.builtins[0]": ALL_BUILTINS, "webhook.events[0]": (
        "message", "command", "connection", "pairing"),
    "tolerations[0].operator": ("Exists", "Equal"),
    "tolerations[0].effect": ("NoSchedule", "PreferNoSchedule", "NoExecute"),
}
TYPED = {  # field path -> a JSON type the schema refuses there, and sample bad values
    "suspend": st.one_of(TEXT, st.integers(), st.lists(st.booleans(), max_size=2)),
    "rateLimit.perChatPerMinute": st.one_of(TEXT, st.booleans(),
                                            st.floats(1.1, 9.9).map(lambda f: round(f, 1))
                                            .filter(lambda f: f != int(f))),
    "settings.ignoreGroups": st.one_of(TEXT, st.integers()),
    "commands.builtins": st.one_of(TEXT, st.integers(), st.dictionaries(DNS, TEXT,
                                                                         max_size=2)),
    "env": st.one_of(TEXT, st.dictionaries(ENV_NAME, TEXT, max_size=2)),
    "features.beta": st.one_of(TEXT, st.integers()),
    "commands.prefix": st.one_of(st.integers(), st.booleans()),
    "serverName": st.one_of(st.integers(), st.booleans(), st.lists(DNS, max_size=2)),
    "affinity": st.one_of(TEXT, st.integers(), st.lists(st.integers(), max_size=2)),
    "tolerations[0].tolerationSeconds": st.one_of(TEXT, st.booleans()),
}
TOO_MANY = {  # field path -> (limit, item strategy builder)
    "env": 64, "commands.custom": 100, "commands.plugins": 20, "features": 64,
    "nodeSelector": 32, "tolerations": 32, "webhook.events": 15,
}


def _place(spec: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """Put `value` at `path` (dots, and [0] for the first item of a list), filling in the
    minimal valid surroundings the path needs."""
    scaffold: dict[str, Any] = {
        "commands.custom[0]": {"name": "c0", "response": "ok"},
        "env[0]": {"name": "SOME_VAR", "value": ""},
        "tolerations[0]": {"key": "k", "operator": "Exists"},
        "webhook": {"url": "https://hooks.example/x", "secretRef": {"name": "hook"}},
        "database": {"secretRef": {"name": "db"}},
    }
    out = json.loads(json.dumps(spec))
    top = path.split(".")[0].split("[")[0]
    if top in ("webhook", "database"):
        out[top] = json.loads(json.dumps(scaffold[top]))
    if "[0]" in path:
        list_path, _, rest = path.partition("[0]")
        item = json.loads(json.dumps(scaffold.get(list_path + "[0]", {})))
        if rest:
            item[rest.lstrip(".")] = value
        else:
            item = value
        return _set(out, list_path.split("."), [item])
    return _set(out, path.split("."), value)


KINDS = ("phone", "no_phone", "number", "too_long", "enum", "type", "too_many", "required",
         "duplicate", "pattern", "metadata_name", "name_too_long", "reserved_env", "immutable")


@st.composite
def invalid_case(draw: st.DrawFn, kind: str) -> Case:
    spec = draw(valid_spec())
    if kind == "phone":
        phone = draw(not_matching(PHONE_RE, st.one_of(
            TEXT, st.from_regex(r"\A\+?[0-9 ()-]{0,20}\Z"))))
        return Case("bad phone for code pairing", "spec.pairing.phoneNumber",
                    spec=_set(spec, ["pairing"], {"method": "code", "phoneNumber": phone}))
    if kind == "no_phone":
        return Case("code pairing without phone", "spec.pairing.phoneNumber",
                    spec=_set(spec, ["pairing"], {"method": "code"}))
    if kind == "number":
        path = draw(st.sampled_from(sorted(NUMBERS)))
        lo, hi = NUMBERS[path]
        value = draw(st.one_of(st.integers(-(2**31), lo - 1), st.integers(hi + 1, 2**31)))
        return Case("out-of-range number", f"spec.{path}", spec=_place(spec, path, value))
    if kind == "too_long":
        path = draw(st.sampled_from(sorted(LONG_STRINGS)))
        limit = LONG_STRINGS[path]
        n = draw(st.integers(limit + 1, limit + 300))
        value = ("a" * n if path in ("serverName", "botId", "database.secretRef.key")
                 else "https://x.example/" + "p" * n if path == "webhook.url"
                 else draw(st.sampled_from(["x", "é", "\u05d0", "\U0001f600"])) * n)
        return Case("too-long string", f"spec.{path}", spec=_place(spec, path, value))
    if kind == "enum":
        path = draw(st.sampled_from(sorted(ENUMS)))
        value = draw(TEXT.filter(lambda s, ok=ENUMS[path]: s not in ok))
        return Case("bad enum value", f"spec.{path}", spec=_place(spec, path, value))
    if kind == "type":
        path = draw(st.sampled_from(sorted(TYPED)))
        value = draw(TYPED[path])
        # The spec models are strict (no "yes" -> True, "20" -> 20): the model refuses these.
        return Case("wrong type", f"spec.{path}", spec=_place(spec, path, value))
    if kind == "too_many":
        path = draw(st.sampled_from(sorted(TOO_MANY)))
        n = TOO_MANY[path] + draw(st.integers(1, 5))
        items: Any
        if path == "env":
            items = [{"name": f"V{i}"} for i in range(n)]
        elif path == "commands.custom":
            items = [{"name": f"c{i}", "response": "r"} for i in range(n)]
        elif path == "commands.plugins":
            items = [f"p{i}" for i in range(n)]
        elif path in ("features", "nodeSelector"):
            items = {f"k{i}": (True if path == "features" else "v") for i in range(n)}
        elif path == "tolerations":
            items = [{"key": f"k{i}", "operator": "Exists"} for i in range(n)]
        else:
            items = ["message"] * n
        return Case("too many items", f"spec.{path}", spec=_place(spec, path, items))
    if kind == "required":
        which = draw(st.sampled_from(["serverName", "custom.response", "custom.name",
                                      "webhook.url", "database.secretRef",
                                      "secretRef.name", "env.name"]))
        if which == "serverName":
            return Case("missing required field", "spec.serverName",
                        spec={k: v for k, v in spec.items() if k != "serverName"})
        if which == "custom.response":
            # response, image, document or location: one of them (a CEL rule on the item).
            return Case("missing required field", "spec.commands.custom[0]",
                        spec=_set(spec, ["commands", "custom"], [{"name": "x"}]))
        if which == "custom.name":
            return Case("missing required field", "spec.commands.custom[0].name",
                        spec=_set(spec, ["commands", "custom"], [{"response": "x"}]))
        if which == "webhook.url":
            return Case("missing required field", "spec.webhook.url",
                        spec=_set(spec, ["webhook"], {"secretRef": {"name": "hook"}}))
        if which == "database.secretRef":
            return Case("missing required field", "spec.database.secretRef",
                        spec=_set(spec, ["database"], {}))
        if which == "secretRef.name":
            return Case("missing required field", "spec.database.secretRef.name",
                        spec=_set(spec, ["database"], {"secretRef": {"key": "k"}}))
        return Case("missing required field", "spec.env[0].name",
                    spec=_set(spec, ["env"], [{"value": "x"}]))
    if kind == "duplicate":
        which = draw(st.sampled_from(["env", "custom", "builtins", "plugins"]))
        if which == "env":
            return Case("duplicate list key", "spec.env[1]", model_refuses=False,
                        spec=_set(spec, ["env"], [{"name": "A"}, {"name": "A"}]))
        if which == "custom":
            return Case("duplicate list key", "spec.commands.custom[1]", model_refuses=False,
                        spec=_set(spec, ["commands", "custom"],
                                  [{"name": "a", "response": "x"}, {"name": "a",
                                                                    "response": "y"}]))
        if which == "builtins":
            b = draw(st.sampled_from(ALL_BUILTINS))
            return Case("duplicate list key", "spec.commands.builtins[1]",
                        model_refuses=False, spec=_set(spec, ["commands", "builtins"], [b, b]))
        return Case("duplicate list key", "spec.commands.plugins[1]", model_refuses=False,
                    spec=_set(spec, ["commands", "plugins"], ["echo", "echo"]))
    if kind == "pattern":
        which = draw(st.sampled_from([
            "serverName", "botId", "resources.limits.cpu", "resources.requests.memory",
            "storage.size", "commands.prefix", "commands.custom[0].name",
            "commands.plugins[0]", "env[0].name", "database.secretRef.name",
            "storage.storageClassName", "priorityClassName", "webhook.url",
        ]))
        regex = {"serverName": NAME_RE, "botId": NAME_RE, "database.secretRef.name": NAME_RE,
                 "resources.limits.cpu": QUANTITY_RE, "resources.requests.memory": QUANTITY_RE,
                 "storage.size": QUANTITY_RE, "commands.prefix": r"^\S{1,3}$",
                 "commands.custom[0].name": r"^[A-Za-z0-9_-]{1,32}$",
                 "commands.plugins[0]": r"^[A-Za-z0-9_.-]{1,128}$",
                 "env[0].name": r"^[A-Za-z_][A-Za-z0-9_]*$",
                 "storage.storageClassName": r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
                 "priorityClassName": r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
                 "webhook.url": r"^https?://"}[which]
        short = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=30)
        if which == "commands.prefix":
            # Unicode spaces too (the CRD lists them; RE2's \s alone is ASCII). Not U+001C-
            # U+001F: Python's \s has them, Unicode's White_Space (and so the model) not.
            short = st.text(st.sampled_from(list(" \t\v!/?#ab\u00e9\u00a0\u2003\u3000")),
                            min_size=1, max_size=3)
        value = draw(not_matching(regex, short))
        return Case("bad pattern", f"spec.{which}", spec=_place(spec, which, value))
    if kind == "metadata_name":
        name = draw(st.one_of(
            st.from_regex(r"\A[a-z]{1,10}[A-Z_ ][a-z]{0,10}\Z"),
            st.from_regex(r"\A-[a-z]{1,10}\Z"), st.from_regex(r"\A[a-z]{1,10}-\Z"),
            st.from_regex(r"\A[a-z]{1,5}/[a-z]{1,5}\Z"),
            st.from_regex(r"\A[a-z]{1,5}[\u00e9\u05d0][a-z]{0,5}\Z")))
        return Case("bad metadata.name", "metadata.name", name=name, spec=spec,
                    model_refuses=False)
    if kind == "name_too_long":
        name = "n" * draw(st.integers(53, 253))
        return Case("metadata.name too long for the children", "metadata.name", name=name,
                    spec=spec, model_refuses=False)
    if kind == "reserved_env":
        env = [{"name": n} for n in draw(st.lists(ENV_NAME, max_size=3, unique=True))]
        i = draw(st.integers(0, len(env)))
        env.insert(i, {"name": draw(st.sampled_from(RESERVED_ENV_NAMES)), "value": "x"})
        return Case("reserved env name", f"spec.env[{i}].name", spec=_set(spec, ["env"], env))
    # immutable: a change to one of the existing bots, alone or with valid changes beside it
    change = draw(st.sampled_from(["serverName", "botId", "drop_botId", "add_botId"]))
    put = draw(st.booleans())
    also: dict[str, Any] = {}
    if draw(st.booleans()):
        also = {k: v for k, v in draw(valid_spec()).items()
                if k not in ("serverName", "botId", "pairing", "webhook")}
    if change == "serverName":
        return Case("immutable field changed", "spec.serverName",
                    update={**also, "serverName": draw(DNS.filter(lambda s: s != "acme"))},
                    put=put, model_refuses=False,
                    name="with-id" if draw(st.booleans()) else "no-id")
    if change == "botId":
        return Case("immutable field changed", "spec.botId", name="with-id", put=put,
                    update={**also, "botId": draw(DNS.filter(lambda s: s != "fixed-id"))},
                    model_refuses=False)
    if change == "drop_botId":
        return Case("immutable field changed", "spec.botId", name="with-id", put=put,
                    update={**also, "botId": None}, model_refuses=False)
    return Case("immutable field changed", "spec.botId", name="no-id", put=put,
                update={**also, "botId": draw(DNS)}, model_refuses=False)


def generate(n: int) -> list[Case]:
    """n distinct cases from hypothesis, the same share of each kind of fault (generation
    only: nothing can fail in here)."""
    cases: list[Case] = []
    for i, kind in enumerate(KINDS):
        quota = n // len(KINDS) + (1 if i < n % len(KINDS) else 0)
        found: dict[str, Case] = {}

        @seed(sizes.SEED + i)
        @settings(max_examples=quota * 5 + 50, database=None, deadline=None,
                  phases=[Phase.generate], suppress_health_check=list(HealthCheck))
        @given(invalid_case(kind))
        def collect(case: Case) -> None:
            if len(found) < quota:  # noqa: B023 - collect() runs before the loop moves on
                found.setdefault(case.key(), case)  # noqa: B023

        collect()
        assert len(found) == quota, f"only {len(found)} distinct {kind} cases"
        cases.extend(found.values())
    random.Random(sizes.SEED).shuffle(cases)
    return cases


def _get(spec: dict[str, Any], path: str) -> Any:
    node: Any = spec
    for part in path.removeprefix("spec.").replace("[0]", ".0").split("."):
        node = node[int(part)] if isinstance(node, list) else node.get(part)
    return node


def model_refuses(case: Case) -> bool:
    try:
        WhatsAppBotSpec.model_validate(case.spec)
    except ValidationError:
        return True
    return False


@dataclass
class Outcome:
    case: Case
    status: int | None
    message: str
    elapsed: float


def submit(cluster: Cluster, case: Case, index: int) -> Outcome:
    started = time.perf_counter()
    try:
        if case.update is not None:
            if case.put:
                for _attempt in range(20):  # the operator's status writes move the version
                    obj = cluster.bot(case.name)
                    obj["spec"] = {**obj["spec"], **case.update}
                    obj["spec"] = {k: v for k, v in obj["spec"].items() if v is not None}
                    try:
                        cluster.custom.replace_namespaced_custom_object(
                            API_GROUP, API_VERSION, cluster.ns, PLURAL, case.name, obj)
                    except ApiException as e:
                        if e.status == 409:
                            continue
                        raise
                    break
            else:
                cluster.patch_bot(case.name, case.update)
        else:
            body = {"apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": KIND,
                    "metadata": {"name": case.name or f"inv-{index}"}, "spec": case.spec}
            cluster.custom.create_namespaced_custom_object(API_GROUP, API_VERSION, cluster.ns,
                                                           PLURAL, body)
    except ApiException as e:
        try:
            message = str(json.loads(e.body)["message"])
        except (TypeError, ValueError, KeyError):
            message = str(e.body)
        return Outcome(case, e.status, message, time.perf_counter() - started)
    return Outcome(case, None, "ADMITTED", time.perf_counter() - started)


def test_generated_invalid_specs_are_refused_with_the_field_path(
        cluster: Cluster, operator_factory: Callable[..., OperatorProcess]) -> None:
    figures.section(SECTION, "2. Generated invalid specs (hypothesis)")
    op = operator_factory().start()
    pid = op.proc.pid if op.proc else None
    # The bots whose immutable fields the update cases try to change, and valid controls.
    cluster.create_bot("with-id", {"botId": "fixed-id"})
    cluster.create_bot("no-id")
    t0 = time.monotonic()
    cases = generate(sizes.INVALID_SPECS)
    gen_s = time.monotonic() - t0

    t1 = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(lambda ic: submit(cluster, ic[1], ic[0]), enumerate(cases)))
    api_s = time.monotonic() - t1

    admitted = [o for o in outcomes if o.status is None]
    not_422 = [o for o in outcomes if o.status not in (None, 422)]
    no_path = [o for o in outcomes if o.status == 422 and o.case.path not in o.message]
    model_checked = [o for o in outcomes if o.case.model_refuses]
    model_accepts = [o for o in model_checked if not model_refuses(o.case)]
    by_category = Counter(o.case.category for o in outcomes)
    typed = [o for o in outcomes if o.case.category == "wrong type"]
    coerced = [o for o in typed if not model_refuses(o.case)]
    strict = submit_strict_unknown_field(cluster)

    # The operator lived through it and still works: the controls converge.
    for name in ("with-id", "no-id"):
        eventually(lambda name=name: (p := cluster.pod(f"wabot-{name}")) is not None
                   and p.status.phase == "Running", timeout=90, what=f"{name} running")
    assert op.proc is not None
    alive = op.proc.poll() is None and op.healthy()
    errors = op.metric("wabot_operator_reconcile_errors_total")
    leftovers = [b["metadata"]["name"] for b in cluster.custom.list_namespaced_custom_object(
        API_GROUP, API_VERSION, cluster.ns, PLURAL)["items"]
        if b["metadata"]["name"] not in ("with-id", "no-id")]

    figures.record(SECTION, "invalid manifests submitted", len(outcomes))
    figures.record(SECTION, "by category", ", ".join(f"{c} {n}"
                                                      for c, n in sorted(by_category.items())))
    figures.record(SECTION, "creates / updates (PATCH, PUT)",
                   f"{sum(1 for c in cases if c.update is None)} / "
                   f"{sum(1 for c in cases if c.update is not None and not c.put)}, "
                   f"{sum(1 for c in cases if c.put)}")
    figures.record(SECTION, "refused with 422 naming the field path",
                   f"{len(outcomes) - len(admitted) - len(not_422) - len(no_path)}"
                   f"/{len(outcomes)}")
    figures.record(SECTION, "admitted / other status / 422 without the path",
                   f"{len(admitted)} / {len(not_422)} / {len(no_path)}")
    figures.record(SECTION, "pydantic model refuses the same spec",
                   f"{len(model_checked) - len(model_accepts)}/{len(model_checked)} "
                   "(cases whose rule is also the model's)")
    example = (f", e.g. {coerced[0].case.path} = "
               f"{json.dumps(_get(coerced[0].case.spec, coerced[0].case.path))[:40]}"
               if coerced else "")
    figures.record(SECTION, "wrong types the model coerces instead of refusing",
                   f"{len(coerced)}/{len(typed)} (strict spec models{example})")
    figures.record(SECTION, "unknown field", f"pruned by default (structural schema); "
                   f"fieldValidation=Strict (kubectl's default): {strict[0]} "
                   f"{strict[1][strict[1].find('unknown field'):][:60]}")
    figures.record(SECTION, "time: generate / API (8 threads)",
                   f"{gen_s:.1f} s / {api_s:.1f} s "
                   f"(p50 {sorted(o.elapsed for o in outcomes)[len(outcomes) // 2] * 1000:.0f} ms"
                   " per request)")
    figures.record(SECTION, "operator: same process, alive, /healthz OK, restarts",
                   f"{op.proc.pid == pid}, {alive}, 0" if alive else f"DEAD ({op.proc.returncode})")
    figures.record(SECTION, "operator reconcile errors during the run", int(errors))

    examples = lambda items: [(o.case.category, o.case.path, o.case.name, o.case.spec,  # noqa: E731
                               o.case.update, o.status, o.message[:300]) for o in items[:5]]
    assert admitted == [], examples(admitted)
    assert not_422 == [], examples(not_422)
    assert no_path == [], examples(no_path)
    assert model_accepts == [], examples(model_accepts)
    assert leftovers == []
    assert alive and op.proc.pid == pid
    assert len(outcomes) >= sizes.INVALID_SPECS
    assert strict[0] == 400 and 'unknown field "spec.bogus"' in strict[1], strict


def submit_strict_unknown_field(cluster: Cluster) -> tuple[int | None, str]:
    """What kubectl does by default (fieldValidation=Strict) with a field the CRD lacks."""
    body = {"apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": KIND,
            "metadata": {"name": "strict"}, "spec": {"serverName": "acme", "bogus": 1}}
    try:
        cluster.custom.create_namespaced_custom_object(API_GROUP, API_VERSION, cluster.ns,
                                                       PLURAL, body, field_validation="Strict")
    except ApiException as e:
        return e.status, str(json.loads(e.body).get("message"))
    return None, "ADMITTED"


# Prefixes where RE2 (the API server) and pydantic's engine (the model) could disagree: every
# Unicode White_Space character alone and beside a valid one, and non-spaces that look or
# count as spaces somewhere (U+200B, U+FEFF, U+001C which str.isspace() calls space, U+3001).
PREFIX_PROBES = [
    *(chr(cp) for cp in [*range(0x09, 0x0E), 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B),
                         0x2028, 0x2029, 0x202F, 0x205F, 0x3000]),
    "!\u2003", "\u00a0!", "#\u3000", "!\v",
    "!", "#!", "\u00e9", "\u200b", "\ufeff", "\x1c", "\u3001", "\U0001f916",
]


def test_the_api_server_refuses_exactly_the_prefixes_the_model_refuses(cluster: Cluster) -> None:
    """Once a known gap: the CRD's `^\\S+$` was RE2's ASCII \\s, the model's Unicode, so a
    prefix of U+00A0 passed the API server and the operator then marked the bot InvalidSpec.
    Both now carry wabot.bot_commands.PREFIX_PATTERN (tests/contract/test_crd_patterns.py)."""
    figures.section(SECTION, "2. Generated invalid specs (hypothesis)")
    differ = []
    refused = 0
    for prefix in PREFIX_PROBES:
        spec = {"serverName": "acme", "commands": {"prefix": prefix}}
        by_model = model_refuses(Case("prefix", "spec.commands.prefix", spec=spec))
        body = {"apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": KIND,
                "metadata": {"name": "unicode-space"}, "spec": spec}
        try:
            cluster.custom.create_namespaced_custom_object(API_GROUP, API_VERSION, cluster.ns,
                                                           PLURAL, body, dry_run="All")
        except ApiException as e:
            by_api = True
            assert e.status == 422 and "spec.commands.prefix" in str(e.body), e.body
        else:
            by_api = False
        refused += by_api
        if by_api != by_model:
            differ.append((f"U+{ord(prefix[0]):04X}" if len(prefix) == 1 else prefix,
                           "API server" if by_api else "model"))
    figures.record(SECTION, "prefixes with Unicode spaces: API server and model agree",
                   f"{len(PREFIX_PROBES) - len(differ)}/{len(PREFIX_PROBES)} "
                   f"({refused} refused by both, e.g. U+00A0, U+2003, U+3000)")
    assert differ == []
    assert refused == 25 + 4
