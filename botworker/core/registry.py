"""This bot's own command registry: built-ins, the spec's custom replies, and its plugins.

A registry is built from one WhatsAppBotSpec and belongs to one bot; there is no module-level
registry a plugin could register into, so a plugin listed by bot A never appears in bot B's
commands even when both run in one interpreter (as in tests). A spec change builds a fresh
registry and swaps it in whole, so a running command never sees half of an update.

Plugins are entry points in the `wabot.plugins` group whose object is a callable
`register(registry)`. A plugin that is missing, fails to import or raises while registering is
left out and reported; it never takes the bot down.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points

from wabot.spec_view import CustomCommand, SettingsSpec, WhatsAppBotSpec

from .context import CommandContext

PLUGIN_GROUP = "wabot.plugins"
_NAME_RE = re.compile(r"^[\w-]{1,32}$")

Handler = Callable[[CommandContext], str | None]
InfoProvider = Callable[[], Mapping[str, str]]


@dataclass(frozen=True)
class Command:
    name: str
    handler: Handler
    description: str = ""
    aliases: tuple[str, ...] = ()
    source: str = "builtin"


class RegistryError(ValueError):
    pass


class CommandRegistry:
    """Names and aliases (case-insensitive) to commands, for one bot."""

    def __init__(
        self,
        bot_id: str,
        server_name: str,
        settings: SettingsSpec | None = None,
        features: Mapping[str, bool] | None = None,
    ) -> None:
        self.bot_id = bot_id
        self.server_name = server_name
        self.settings = settings or SettingsSpec()
        self.features: Mapping[str, bool] = dict(features or {})
        self._by_name: dict[str, Command] = {}
        self._frozen = False
        self._source = "plugin"

    def command(
        self,
        name: str,
        handler: Handler | None = None,
        *,
        description: str = "",
        aliases: Iterable[str] = (),
    ) -> Callable[[Handler], Handler]:
        """Register a handler, directly or as a decorator; what plugins call."""

        def deco(fn: Handler) -> Handler:
            self.add(
                Command(
                    name=name,
                    handler=fn,
                    description=description,
                    aliases=tuple(aliases),
                    source=self._source,
                )
            )
            return fn

        if handler is not None:
            deco(handler)
        return deco

    def add(self, cmd: Command, *, replace: bool = False) -> None:
        if self._frozen:
            raise RegistryError("the registry is frozen; register commands in register()")
        names = [cmd.name.casefold(), *(a.casefold() for a in cmd.aliases)]
        for n in names:
            if not _NAME_RE.match(n):
                raise RegistryError(f"invalid command name {n!r}")
        if len(set(names)) != len(names):
            raise RegistryError(f"duplicate names in {cmd.name!r}")
        if replace:
            for n in names:
                old = self._by_name.get(n)
                if old is not None:
                    self._remove(old)
        else:
            taken = [n for n in names if n in self._by_name]
            if taken:
                raise RegistryError(f"command name(s) already taken: {', '.join(taken)}")
        canonical = Command(
            name=cmd.name.casefold(),
            handler=cmd.handler,
            description=cmd.description,
            aliases=tuple(a.casefold() for a in cmd.aliases),
            source=cmd.source,
        )
        for n in names:
            self._by_name[n] = canonical

    def _remove(self, cmd: Command) -> None:
        for n in (cmd.name, *cmd.aliases):
            if self._by_name.get(n) is cmd:
                del self._by_name[n]

    def merge(self, other: CommandRegistry) -> None:
        """Add all of `other`'s commands, or none of them when any name is taken."""
        taken = sorted(n for n in other._by_name if n in self._by_name)
        if taken:
            raise RegistryError(f"command name(s) already taken: {', '.join(taken)}")
        for cmd in other.commands():
            self.add(cmd)

    def freeze(self) -> None:
        self._frozen = True

    def lookup(self, name: str) -> Command | None:
        return self._by_name.get(name.casefold())

    def commands(self) -> list[Command]:
        unique = {c.name: c for c in self._by_name.values()}
        return [unique[k] for k in sorted(unique)]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.casefold() in self._by_name


# --- built-ins -------------------------------------------------------------------------------


def _help_handler(registry: CommandRegistry, prefix: str) -> Handler:
    def handle(ctx: CommandContext) -> str:
        lines = ["*Commands*"]
        for cmd in registry.commands():
            names = prefix + cmd.name
            if cmd.aliases:
                names += " (" + ", ".join(prefix + a for a in cmd.aliases) + ")"
            lines.append(f"{names} - {cmd.description}" if cmd.description else names)
        return "\n".join(lines)

    return handle


def _ping(ctx: CommandContext) -> str:
    if ctx.received_at:
        return f"pong ({max(0, int((time.time() - ctx.received_at) * 1000))} ms)"
    return "pong"


def _info_handler(info: InfoProvider) -> Handler:
    def handle(ctx: CommandContext) -> str:
        lines = [f"Bot {ctx.bot_id} ({ctx.server_name})"]
        lines.extend(f"{k}: {v}" for k, v in info().items())
        return "\n".join(lines)

    return handle


def _custom_handler(custom: CustomCommand) -> Handler:
    """The spec's answer: its text (first), then its image, document and location, each a
    reply of its own through the bot's rate limits."""
    response = custom.response
    if custom.image is None and custom.document is None and custom.location is None:
        def text(ctx: CommandContext) -> str | None:
            return response
        return text

    def handle(ctx: CommandContext) -> None:
        if response:
            ctx.reply(response)
        if custom.image is not None:
            ctx.reply_image(custom.image.url, custom.image.caption)
        if custom.document is not None:
            doc = custom.document
            ctx.reply_document(doc.url, doc.file_name, caption=doc.caption)
        if custom.location is not None:
            loc = custom.location
            ctx.reply_location(float(loc.latitude), float(loc.longitude), loc.name,
                               loc.address)

    return handle


# --- building --------------------------------------------------------------------------------


@dataclass
class BuildResult:
    registry: CommandRegistry
    errors: list[str] = field(default_factory=list)
    plugins: list[str] = field(default_factory=list)


def installed_plugins() -> list[EntryPoint]:
    return list(entry_points(group=PLUGIN_GROUP))


_DESCRIBED = {
    "help": "list the commands",
    "menu": "list the commands",
    "ping": "check that the bot answers",
    "info": "about this bot",
}


def build_registry(
    spec: WhatsAppBotSpec,
    bot_id: str,
    info: InfoProvider,
    plugins_available: Iterable[EntryPoint] | None = None,
) -> BuildResult:
    """The registry for `spec`: enabled built-ins, custom replies (which may replace a
    built-in of the same name: the spec author asked for it), then the listed plugins (which
    may not take a name already in use)."""
    reg = CommandRegistry(bot_id, spec.server_name, spec.settings, spec.features)
    result = BuildResult(reg)
    _add_builtins(reg, spec, info)
    _add_custom(reg, spec, result)
    if spec.commands.plugins:
        _add_plugins(reg, spec, bot_id, plugins_available, result)
    reg.freeze()
    return result


def _add_builtins(reg: CommandRegistry, spec: WhatsAppBotSpec, info: InfoProvider) -> None:
    builtins = set(spec.commands.builtins)
    help_handler = _help_handler(reg, spec.commands.prefix)
    if "help" in builtins:
        aliases = ("menu",) if "menu" in builtins else ()
        reg.add(Command("help", help_handler, _DESCRIBED["help"], aliases))
    elif "menu" in builtins:
        reg.add(Command("menu", help_handler, _DESCRIBED["menu"]))
    if "ping" in builtins:
        reg.add(Command("ping", _ping, _DESCRIBED["ping"]))
    if "info" in builtins:
        reg.add(Command("info", _info_handler(info), _DESCRIBED["info"]))


def _add_custom(reg: CommandRegistry, spec: WhatsAppBotSpec, result: BuildResult) -> None:
    for custom in spec.commands.custom:
        try:
            reg.add(
                Command(
                    custom.name,
                    _custom_handler(custom),
                    custom.description,
                    tuple(custom.aliases),
                    source="custom",
                ),
                replace=True,
            )
        except RegistryError as exc:
            result.errors.append(f"custom command {custom.name!r}: {exc}")


def _add_plugins(
    reg: CommandRegistry,
    spec: WhatsAppBotSpec,
    bot_id: str,
    plugins_available: Iterable[EntryPoint] | None,
    result: BuildResult,
) -> None:
    """Each listed plugin registers into a staging registry first, so one that fails halfway
    leaves none of its commands behind."""
    available = {
        ep.name: ep
        for ep in (installed_plugins() if plugins_available is None else plugins_available)
        if ep.group in (PLUGIN_GROUP, "")
    }
    for name in spec.commands.plugins:
        ep = available.get(name)
        if ep is None:
            result.errors.append(f"plugin {name!r} is not installed")
            continue
        staging = CommandRegistry(bot_id, spec.server_name, spec.settings, spec.features)
        staging._source = f"plugin:{name}"
        try:
            register = ep.load()
            if not callable(register):
                raise TypeError(f"{ep.value} is not callable")
            register(staging)
            reg.merge(staging)
        except Exception as exc:
            result.errors.append(f"plugin {name!r} failed to load: {exc}")
            continue
        result.plugins.append(name)
