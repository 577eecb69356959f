"""Schema migrations (Alembic) and tenant roles: the owner's side of the database.

On PostgreSQL the migrations run as the *owner* (migrator) role, once per rollout, by the
deployment's migrate step (the Helm chart's hook Job, the monolith/controller at start, or by
hand), never by a worker: workers connect as tenant roles that cannot change the schema or
row-level security (see tenancy.py and docs/design.md). A worker still migrates its own SQLite
file (no roles there), in a child process, because Alembic and its templating add ~10 MB that
the long-running worker would keep for its whole life after using them once.

The owner's DSN travels in the environment (WABOT_MIGRATE_URL, never on a command line, where
`ps` shows it), and nothing here prints it or any password:

    python -m botworker.data.migrate                  # upgrade $WABOT_MIGRATE_URL to head
    python -m botworker.data.migrate provision --tenant acme [--role wabot_acme]
        [--dsn-file acme.dsn | --password-file pw]    # create/bind a tenant role
    python -m botworker.data.migrate revoke --role wabot_acme [--drop]
    python -m botworker.data.migrate setup --tenant acme --tenant globex
        # upgrade, then provision wabot_<tenant> with the password in $WABOT_DB_PASSWORD_<TENANT>
        # (the Docker Compose tier's one-shot service)

`wabot db ...` is the same command (the images' entry point).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from .subprocess_step import one_line, run_module

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
URL_ENV = "WABOT_MIGRATE_URL"
PASSWORD_ENV_PREFIX = "WABOT_DB_PASSWORD_"


def password_env(tenant: str) -> str:
    """The variable `setup` reads a tenant role's password from."""
    return PASSWORD_ENV_PREFIX + tenant.upper().replace("-", "_")


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at `url` to `revision`, in this process."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["url"] = url
    command.upgrade(cfg, revision)


def run_in_child(url: str, timeout_s: float = 120.0) -> tuple[bool, str]:
    """Upgrade to head in a child process; (ok, one-line reason when not ok)."""
    done = run_module("botworker.data.migrate", [], url, URL_ENV, timeout_s)
    if done.returncode == 0:
        return True, ""
    if done.returncode is None:
        return False, f"migrations {done.reason}"
    return False, done.reason


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m botworker.data.migrate",
        description="Migrate the schema and manage tenant roles, as the owner role whose DSN "
        f"is in ${URL_ENV} (or $DATABASE_URL). Prints no DSN and no password.")
    sub = p.add_subparsers(dest="command")
    sub.add_parser("upgrade", help="bring the schema to head (the default command)")
    prov = sub.add_parser(
        "provision", help="create (if missing) a login role for a tenant, grant it the tenant "
        "privileges and bind it to the tenant; idempotent")
    prov.add_argument("--tenant", required=True, help="the serverName the role serves")
    prov.add_argument("--role", help="role name (default: wabot_<tenant>); one role per bot "
                      "is fine, several roles may serve one tenant")
    secret = prov.add_mutually_exclusive_group()
    secret.add_argument("--dsn-file", type=Path, help="set a new random password and write the "
                        "role's DSN to this file (mode 0600), e.g. for `kubectl create secret "
                        "generic acme-db --from-file=value=FILE`")
    secret.add_argument("--password-file", type=Path, help="set the password read from this "
                        "file (first line)")
    setup = sub.add_parser(
        "setup", help="upgrade, then provision the role wabot_<tenant> of each --tenant with "
        f"the password in ${PASSWORD_ENV_PREFIX}<TENANT> (upper case, '-' as '_')")
    setup.add_argument("--tenant", action="append", default=[], required=True)
    rev = sub.add_parser("revoke", help="unbind a role from its tenant and take its privileges "
                         "back")
    rev.add_argument("--role", required=True)
    rev.add_argument("--drop", action="store_true", help="also drop the role")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    url_env = URL_ENV if os.environ.get(URL_ENV) else "DATABASE_URL"
    url = os.environ.get(url_env)
    if not url:
        print(f"migrate: set {URL_ENV} (the owner role's DSN)", file=sys.stderr)
        return 2
    # Every setting is checked before the database is connected to: a malformed DSN, or a
    # tenant's password missing after the schema was already migrated, is a setting.
    from wabot.envcheck import check_dsn

    try:
        check_dsn(url)
    except ValueError as exc:
        print(f"migrate: {url_env}: {exc}", file=sys.stderr)
        return 2
    if args.command == "setup":
        missing = [password_env(t) for t in args.tenant if not os.environ.get(password_env(t))]
        if missing:
            print(f"setup: set {', '.join(missing)} (each tenant role's password)",
                  file=sys.stderr)
            return 2
    import logging

    logging.basicConfig(level=logging.WARNING)
    from .tenancy import ProvisionError, provision, revoke

    try:
        if args.command == "provision":
            password = None
            if args.password_file is not None:
                password = args.password_file.read_text(encoding="utf-8").splitlines()[0]
            done = provision(url, args.tenant, args.role, password=password,
                             set_password=password is not None, dsn_file=args.dsn_file)
            print(f"provision: {done.describe()}")
        elif args.command == "setup":
            upgrade(url)
            for tenant in args.tenant:
                secret = os.environ[password_env(tenant)]  # checked above
                done = provision(url, tenant, password=secret, set_password=True)
                print(f"setup: {done.describe()}")
        elif args.command == "revoke":
            print(f"revoke: {revoke(url, args.role, drop=args.drop)}")
        else:
            upgrade(url)
    except ProvisionError as exc:
        print(f"{args.command}: {exc}", file=sys.stderr)
        return 1
    except (OSError, IndexError) as exc:
        print(f"{args.command}: {one_line(exc, url)}", file=sys.stderr)
        return 2
    except Exception as exc:
        print(f"{args.command or 'migrate'}: {one_line(exc, url)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
