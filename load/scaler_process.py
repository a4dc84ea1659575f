"""The scaler under test in its own process, as in production: `python -m scaler serve` on 127.0.0.1.

Every port is 0; the chosen ones come from its JSON "listening on" log line. `spawn` also starts Prometheus.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

PORT_FLAGS = ("--otlp-grpc-port", "0", "--otlp-http-port", "0", "--scaler-port", "0", "--http-port", "0")
STOP_TIMEOUT = 30.0  # after SIGTERM, before SIGKILL


def spawn(command: list[str], log: Path, preexec_fn: Callable[[], None] | None = None) -> subprocess.Popen[bytes]:
    """Start a server with its stdout and stderr in log; it gets SIGTERM if this benchmark dies, even by SIGKILL.

    setpriv sets the parent-death signal (sent when the thread that spawned it ends). `preexec_fn` runs
    in the child before exec, to set rlimits say; without it, and with close_fds=False, Python
    posix_spawns the child, so gRPC's fork handlers stay out of it.
    """
    setpriv = shutil.which("setpriv")
    if setpriv is not None:
        command = [setpriv, "--pdeathsig", "TERM", *command]
    with log.open("wb") as out:
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            close_fds=False,
            preexec_fn=preexec_fn,
        )


def terminate(proc: subprocess.Popen[bytes] | None, timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM, then SIGKILL if it has not exited within timeout."""
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cpu_seconds(pid: int) -> float:
    """User and system CPU of every thread of process `pid` so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ScalerProcess:
    """The scaler's process, with `flags` after ours, started by `spawn` into `log`.

    Without `log`, a temporary file that leaving the `with` block removes.
    """

    def __init__(
        self,
        *flags: str,
        log: Path | None = None,
        preexec_fn: Callable[[], None] | None = None,
        start_timeout: float = 60.0,
    ) -> None:
        self.command = [sys.executable, "-m", "scaler", "serve", "--host", "127.0.0.1", *PORT_FLAGS]
        self.command += ["--log-format", "json", *flags]
        self._temporary_log = log is None
        if log is None:
            descriptor, name = tempfile.mkstemp(prefix="scaler-", suffix=".log")
            os.close(descriptor)
            log = Path(name)
        self.log = log
        self.preexec_fn = preexec_fn
        self.start_timeout = start_timeout
        self.ports: dict[str, int] = {}
        self.startup_seconds = float("nan")  # from spawning the process to its "listening on" line
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ScalerProcess:
        """Spawn the scaler and wait for its ports; RuntimeError with its log's tail if they do not come."""
        spawned = time.monotonic()
        self._proc = spawn(self.command, self.log, self.preexec_fn)
        while not self.ports:
            returncode = self._proc.poll()
            if returncode is not None or time.monotonic() - spawned > self.start_timeout:
                why = f"exit {returncode}" if returncode is not None else f"no ports in {self.start_timeout:g} s"
                self.stop()
                raise RuntimeError(f"the scaler did not start ({why}): {self.log_text()[-2000:]}")
            time.sleep(0.01)
            self.ports = listening_ports(self.log_text())
        self.startup_seconds = time.monotonic() - spawned
        return self

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL; its exit status (None if never started)."""
        terminate(self._proc)
        return None if self._proc is None else self._proc.returncode

    def __enter__(self) -> ScalerProcess:
        try:
            return self.start()
        except BaseException:
            self.__exit__()
            raise

    def __exit__(self, *_: object) -> None:
        self.stop()
        if self._temporary_log:
            self.log.unlink(missing_ok=True)

    @property
    def pid(self) -> int:
        assert self._proc is not None, "the scaler was not started"
        return self._proc.pid

    @property
    def returncode(self) -> int | None:
        """None while the scaler runs."""
        assert self._proc is not None, "the scaler was not started"
        return self._proc.poll()

    def address(self, port: str) -> str:
        return f"127.0.0.1:{self.ports[port]}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def log_bytes(self) -> int:
        return self.log.stat().st_size

    def logged_errors(self) -> list[str]:
        """The messages of the error and critical lines the scaler logged so far."""
        found = []
        for line in self.log_text().splitlines():
            with contextlib.suppress(ValueError, AttributeError):
                entry = json.loads(line)
                if entry.get("level") in ("error", "critical"):
                    found.append(str(entry.get("message", line))[:300])
        return found

    def cpu_seconds(self) -> float:
        """User and system CPU of every thread of the scaler so far (from /proc)."""
        return cpu_seconds(self.pid)

    def rss_mib(self) -> float:
        with open(f"/proc/{self.pid}/status") as status:
            kib = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
        return kib / 1024

    def self_metrics(self, timeout: float = 60.0) -> str:
        """The scaler's own `/metrics` page."""
        with urllib.request.urlopen(f"http://{self.address('http')}/metrics", timeout=timeout) as reply:
            return str(reply.read().decode())


def listening_ports(log: str) -> dict[str, int]:
    """The ports of the scaler's "listening on" line in its log, {} before it."""
    for line in log.splitlines():
        try:
            message = json.loads(line).get("message", "") if line.startswith("{") else line
        except (ValueError, AttributeError):
            continue
        if message.startswith("listening on "):
            return {k: int(v) for k, v in (p.split("=") for p in message.split(": ", 1)[1].split())}
    return {}
