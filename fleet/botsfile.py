"""The bots file: the same multi-document YAML of WhatsAppBot manifests that `kubectl apply`
takes, read by the tiers that have no API server.

Because there is no API server to validate it, every document is checked here with the very
models the CRD is generated from (`wabot.spec`), and an error names the file, the document and
the field path, so a typo in document 7 of 40 is found without bisecting the file. What a
`kubectl get -o yaml` adds (status, uid, resourceVersion, a `List` wrapper) is accepted, so an
export from a cluster can be run by the monolith unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import ErrorDetails

from wabot.naming import MAX_BOT_NAME
from wabot.spec import API_GROUP, API_VERSION, KIND, NAME_PATTERN, WhatsAppBotSpec

API_VERSION_FULL = f"{API_GROUP}/{API_VERSION}"
_NAME_RE = re.compile(NAME_PATTERN)


class BotsFileError(ValueError):
    """A bots file (or database row) that cannot be run; the message is for humans."""


class ObjectMeta(BaseModel):
    """The parts of metadata the tiers use; what a cluster export adds is ignored.

    Strict like the spec models (wabot.spec._SpecModel): nothing here has an API server in
    front of it, so a value of the wrong type is refused, not coerced."""

    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)

    name: str = Field(pattern=NAME_PATTERN, max_length=MAX_BOT_NAME)
    namespace: str | None = Field(default=None, pattern=NAME_PATTERN, max_length=63)
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class BotManifest(BaseModel):
    """One WhatsAppBot document. `status` is accepted (and ignored) for cluster exports."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    api_version: Literal["wabot.io/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["WhatsAppBot"]
    metadata: ObjectMeta
    spec: WhatsAppBotSpec
    status: dict[str, Any] | None = None


@dataclass(frozen=True)
class BotDefinition:
    """One bot as the tiers run it: its name (metadata.name), namespace and validated spec."""

    name: str
    spec: WhatsAppBotSpec
    namespace: str | None = None

    @property
    def server_name(self) -> str:
        return self.spec.server_name

    @property
    def bot_id(self) -> str:
        return self.spec.effective_bot_id(self.name)

    @property
    def key(self) -> str:
        """The stable identity used for group assignment: tenant and bot, never the order."""
        return f"{self.server_name}/{self.bot_id}"

    def spec_document(self) -> dict[str, Any]:
        """The spec as the worker reads it from `WABOT_SPEC_SOURCE=file:` (camelCase)."""
        return self.spec.model_dump(mode="json", by_alias=True, exclude_none=True)

    def manifest(self, namespace: str | None = None) -> dict[str, Any]:
        """A WhatsAppBot object for `kubectl apply` (namespace overrides the bot's own)."""
        meta: dict[str, Any] = {"name": self.name}
        ns = namespace or self.namespace
        if ns:
            meta["namespace"] = ns
        return {
            "apiVersion": API_VERSION_FULL,
            "kind": KIND,
            "metadata": meta,
            "spec": self.spec.model_dump(mode="json", by_alias=True, exclude_unset=True),
        }


def _where(loc: Iterable[int | str]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(document)"


_TYPE_NAMES: dict[type, str] = {
    bool: "a boolean", int: "an integer", float: "a decimal number", str: "a string",
    list: "a list", dict: "a mapping", type(None): "null",
}
_UNQUOTED = {"int_type": "the number", "float_type": "the number", "bool_type": "true or false"}


def _message(err: ErrorDetails) -> str:
    """pydantic's message, plus what was found instead for a wrong type: the models are strict,
    and "Input should be a valid integer" alone does not show that `"20"` is a quoted string.
    Only the type is named, never the value (an env value may be a credential)."""
    msg = err["msg"]
    if err["type"].endswith("_type") and "input" in err:
        got = _TYPE_NAMES.get(type(err["input"]))
        if got is not None:
            msg += f", got {got}"
            if got == "a string" and err["type"] in _UNQUOTED:
                msg += f" (write {_UNQUOTED[err['type']]} without quotes)"
    return msg


def _explain(source: str, where: str, exc: ValidationError,
             prefix: tuple[str, ...] = ()) -> BotsFileError:
    lines = []
    for err in exc.errors()[:10]:
        lines.append(f"  {_where((*prefix, *err['loc']))}: {_message(err)}")
    more = "" if exc.error_count() <= 10 else f"\n  ... and {exc.error_count() - 10} more"
    return BotsFileError(f"{source}: {where}: invalid WhatsAppBot:\n" + "\n".join(lines) + more)


def parse_manifest(doc: object, source: str, where: str) -> BotDefinition:
    if not isinstance(doc, dict):
        raise BotsFileError(f"{source}: {where}: expected a mapping, got {type(doc).__name__}")
    try:
        manifest = BotManifest.model_validate(doc)
    except ValidationError as exc:
        raise _explain(source, where, exc) from None
    return BotDefinition(
        name=manifest.metadata.name, namespace=manifest.metadata.namespace, spec=manifest.spec
    )


def _documents(text: str, source: str) -> list[tuple[int, object]]:
    """Each document with the line it starts on, so errors point into the file."""
    loader = yaml.SafeLoader(text)
    out: list[tuple[int, object]] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            out.append((node.start_mark.line + 1, loader.construct_document(node)))
    except yaml.YAMLError as exc:
        raise BotsFileError(f"{source}: not valid YAML: {_yaml_problem(exc)}") from None
    finally:
        loader.dispose()
    return out


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's message spans several lines (context, mark, problem, mark); one is kept, with
    the line and column of the problem, so the error is one line in a log."""
    problem = getattr(exc, "problem", None)
    mark = getattr(exc, "problem_mark", None)
    if problem and mark is not None:
        return f"{problem} (line {mark.line + 1}, column {mark.column + 1})"
    return " ".join(str(exc).split())


def parse_documents(text: str, source: str = "<bots>") -> list[BotDefinition]:
    """All WhatsAppBots of a multi-document YAML text, checked for clashes between them."""
    bots: list[BotDefinition] = []
    for index, (line, doc) in enumerate(_documents(text, source), start=1):
        if doc is None:  # an empty document (a trailing '---')
            continue
        where = f"document {index} (line {line})"
        if isinstance(doc, dict) and doc.get("kind") == "List" and doc.get("apiVersion") == "v1":
            items = doc.get("items") or []
            if not isinstance(items, list):
                raise BotsFileError(f"{source}: {where}: List.items must be a list")
            for item_index, item in enumerate(items):
                bots.append(parse_manifest(item, source, f"{where}, item {item_index}"))
            continue
        bots.append(parse_manifest(doc, source, where))
    check_unique(bots, source)
    return bots


def check_unique(bots: Sequence[BotDefinition], source: str) -> None:
    """Without namespaces, two bots with one name (or one session) cannot both run: the name is
    the bot's handle in the API, and two processes on one session get it logged out."""
    names: dict[str, int] = {}
    sessions: dict[tuple[str, str], str] = {}
    for i, bot in enumerate(bots):
        if bot.name in names:
            raise BotsFileError(
                f"{source}: bot {bot.name!r} is defined twice (bots {names[bot.name]} and {i});"
                " names must be unique in a bots file"
            )
        names[bot.name] = i
        session = (bot.server_name, bot.bot_id)
        if session in sessions:
            raise BotsFileError(
                f"{source}: bots {sessions[session]!r} and {bot.name!r} share serverName "
                f"{session[0]!r} and botId {session[1]!r}: they would share one WhatsApp session"
            )
        sessions[session] = bot.name


def load_bots_file(path: Path, source: str | None = None) -> list[BotDefinition]:
    """`source` is how errors name the file (its path by default)."""
    source = source or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BotsFileError(f"{source}: cannot read the bots file: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise BotsFileError(f"{source}: the bots file is not UTF-8 text") from None
    return parse_documents(text, source)


def dump_bots(bots: Iterable[BotDefinition], namespace: str | None = None) -> str:
    """A bots file (multi-document YAML) holding `bots`; also what a worker group reads."""
    return yaml.safe_dump_all(
        [b.manifest(namespace) for b in bots], sort_keys=False, default_flow_style=False
    )


def valid_name(name: str) -> bool:
    return len(name) <= MAX_BOT_NAME and bool(_NAME_RE.match(name))
