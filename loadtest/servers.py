"""Servers under test as child processes on loopback ports: the service (`python -m service`), the
naive baseline (`python -m loadtest.baseline`) or any server script that takes `--host` and `--port`;
started, awaited until ready, measured, stopped."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Self

import httpx
import psutil

READY_TIMEOUT_S = 300.0  # seven GoogLeNet sessions load and warm up in well under this on 2 cores


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """`with ServerProcess(module, [...args]) as server:` -> `server.url` answers /readyz with 200.
    A `module` ending in .py is run as a script."""

    def __init__(self, module: str, args: list[str], *, log: Path | None = None, env: dict[str, str] | None = None,
                 cwd: Path | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        target = [module] if module.endswith(".py") else ["-m", module]
        self.command = [sys.executable, *target, *args, "--host", "127.0.0.1", "--port", str(self.port)]
        self.grpc_target: str | None = None  # the service's gRPC API (never a fixed 8001 that could collide)
        if module == "service":
            asked = args[args.index("--grpc-port") + 1] if "--grpc-port" in args else None
            grpc_port = int(asked) if asked is not None else free_port()
            self.grpc_target = f"127.0.0.1:{grpc_port}" if grpc_port else None
            if asked is None:
                self.command += ["--grpc-port", str(grpc_port)]
        self.log = log
        self.env = {**os.environ, **(env or {})}
        self.cwd = cwd  # the checkout whose code runs (python -m finds it there first)
        self.process: subprocess.Popen[bytes] | None = None
        self._ps: psutil.Process | None = None

    def __enter__(self) -> Self:
        out = self.log.open("ab") if self.log else subprocess.DEVNULL
        try:
            self.process = subprocess.Popen(self.command, stdout=out, stderr=subprocess.STDOUT, env=self.env,
                                            cwd=self.cwd)
        finally:
            if self.log:
                out.close()
        self._ps = psutil.Process(self.process.pid)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        with httpx.Client(timeout=5) as client:
            while time.monotonic() < deadline:
                if self.process is not None and self.process.poll() is not None:
                    where = f"; see {self.log}" if self.log else ""
                    raise RuntimeError(f"{' '.join(self.command[1:4])} exited with {self.process.returncode}{where}")
                try:
                    if client.get(self.url + "/readyz").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.2)
        raise TimeoutError(f"the server was not ready within {READY_TIMEOUT_S:g} s")

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError("the server has not been started")
        return self.process.pid

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process (all its threads) so far."""
        if self._ps is None:
            return 0.0
        times = self._ps.cpu_times()
        return times.user + times.system

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)  # graceful: drains admitted requests
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
