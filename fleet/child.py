"""The few lines that run in front of every supervised process, then `exec` it.

Two guarantees a bare `subprocess.Popen` does not give:

1. A child never outlives its supervisor. The kernel sends it SIGTERM when the supervising
   thread dies (`PR_SET_PDEATHSIG`), even if the supervisor was SIGKILLed. Otherwise a killed
   monolith or worker group would leave its bots connected while their replacements start.
2. One process per WhatsApp session. Before the worker starts, this takes an exclusive `flock`
   on the bot's lock file and keeps the descriptor open across `exec`, so the lock is held for
   exactly the worker's lifetime and released by the kernel when it dies, however it dies. A
   replacement (after a crash, a group restart or a second monolith pointed at the same auth
   dir by mistake) waits here until the old process is gone: two clients on one session get the
   number logged out. This is the local twin of the Kubernetes Lease.

Usage: python -m fleet.child [--lock PATH] [--parent PID] -- COMMAND [ARGS...]
Only the standard library is imported, and only what is needed: it runs once per bot start.
"""

from __future__ import annotations

import os
import signal
import sys
import time

PR_SET_PDEATHSIG = 1
EXIT_USAGE = 64
EXIT_PARENT_GONE = 70


def _set_parent_death_signal() -> None:
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _log(message: str) -> None:
    sys.stderr.write(f'{{"level": "info", "logger": "wabot.fleet.child", "msg": "{message}", '
                     f'"pid": {os.getpid()}}}\n')
    sys.stderr.flush()


def _hold_lock(path: str, parent: int | None) -> int:
    """Block until the lock is ours; the returned descriptor is inherited across exec."""
    import fcntl

    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    attempts = 0
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if parent is not None and os.getppid() != parent:
                os._exit(EXIT_PARENT_GONE)
            if attempts % 40 == 0:  # at once, then every 10 s
                _log(f"waiting for the previous process of this bot to exit ({path})")
            attempts += 1
            time.sleep(0.25)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    os.set_inheritable(fd, True)
    return fd


def main(argv: list[str]) -> int:
    lock: str | None = None
    parent: int | None = None
    args = list(argv)
    while args and args[0] != "--":
        flag = args.pop(0)
        if flag == "--lock" and args:
            lock = args.pop(0)
        elif flag == "--parent" and args:
            parent = int(args.pop(0))
        else:
            sys.stderr.write(f"fleet.child: unknown argument {flag!r}\n")
            return EXIT_USAGE
    if not args or len(args) < 2:
        sys.stderr.write("usage: python -m fleet.child [--lock PATH] [--parent PID] -- CMD...\n")
        return EXIT_USAGE
    command = args[1:]
    _set_parent_death_signal()
    # The parent may have died between fork and prctl; then no signal would ever come.
    if parent is not None and os.getppid() != parent:
        return EXIT_PARENT_GONE
    if lock:
        _hold_lock(lock, parent)
    os.execvp(command[0], command)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
