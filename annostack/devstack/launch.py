"""Start a server fully detached from its caller, and record it; used by `processes.spawn`.

`python -m annostack.devstack.launch PID_FILE LOG_FILE CWD -- ARGV...` double-forks: the
server ends up in its own session, a child of init rather than of the CLI or the pytest run
that asked for it, so it outlives them, never lingers as a zombie, and no Popen object in the
caller is left pointing at it. Run as a fresh single-threaded interpreter, so forking is safe.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from annostack.devstack.processes import ProcessRecord, start_time


def main(args: list[str]) -> None:
    pid_file, log_file, cwd, separator, *argv = args
    if separator != "--" or not argv:
        raise SystemExit("usage: launch PID_FILE LOG_FILE CWD -- ARGV...")
    if os.fork():
        os.wait()  # the intermediate child exits as soon as the server is recorded
        return
    os.setsid()
    server = os.fork()
    if server:
        record = ProcessRecord(server, start_time(server) or "")
        record.write(Path(pid_file))
        os._exit(0)
    _become(argv, Path(log_file), Path(cwd))


def _become(argv: list[str], log: Path, cwd: Path) -> None:
    # Lead a process group of its own, so `processes.stop` can signal the server together
    # with anything it starts (Pulsar's JVM threads, weed's sub-servers).
    os.setpgid(0, 0)
    os.chdir(cwd)
    null = os.open(os.devnull, os.O_RDONLY)
    out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    try:
        os.execvp(argv[0], argv)  # noqa: S606 (argv comes from the component, not a user)
    except OSError as error:
        os.write(2, f"cannot start {argv[0]}: {error}\n".encode())
        os._exit(127)


if __name__ == "__main__":
    main(sys.argv[1:])
