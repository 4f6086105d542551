#!/usr/bin/env python
"""Start, inspect and stop a single-node Ray head bound to 127.0.0.1.

    python cluster/local_head.py start [--num-cpus 2] [--state-dir runs/ray-head]
    python cluster/local_head.py status [--state-dir runs/ray-head]
    python cluster/local_head.py stop  [--state-dir runs/ray-head]

``start`` runs ``ray start --head --block`` with the dashboard and the job
server bound to 127.0.0.1 (Ray itself swaps a loopback ``--node-ip-address``
for the machine's address, and its gRPC services listen on all interfaces;
they require this head's auth token), every port picked free (so it never collides
with another Ray instance on the machine), and its own ``--temp-dir`` (so a
plain ``ray.init()`` elsewhere on the machine does not attach to it). It waits
until the job server answers, writes ``STATE_DIR/head.json`` and prints the
job-server address, e.g. ``RAY_ADDRESS=http://127.0.0.1:40123``, for
``ray job submit --address ...``.

``stop`` ends exactly the processes this head started: it signals the process
group of the ``ray start`` it launched (SIGTERM, then SIGKILL after a grace
period). It never runs ``ray stop``, which would end every Ray instance of the
user on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

HOST = "127.0.0.1"
PORT_FLAGS = (
    "--port",
    "--dashboard-port",
    "--dashboard-agent-listen-port",
    "--dashboard-agent-grpc-port",
    "--runtime-env-agent-port",
    "--ray-client-server-port",
    "--metrics-export-port",
    "--node-manager-port",
    "--object-manager-port",
)


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports that are free on 127.0.0.1 right now."""
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind((HOST, 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def _ray_bin() -> str:
    """The ``ray`` next to this Python (the venv's), else the one on PATH."""
    here = Path(sys.executable).with_name("ray")
    found = str(here) if here.exists() else shutil.which("ray")
    if found is None:
        raise SystemExit("error: no `ray` executable next to this python or on PATH")
    return found


def _alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _ready(url: str) -> bool:
    """True once the job server answers HTTP (401/403: it is up, with token auth on)."""
    try:
        with urllib.request.urlopen(f"{url}/api/version", timeout=2) as resp:
            return resp.status == 200
    except urllib.error.HTTPError as exc:
        return exc.code in (401, 403)
    except (urllib.error.URLError, OSError):
        return False


def auth_env(state_dir: Path) -> dict[str, str]:
    """Token authentication with this head's own token (``STATE_DIR/auth_token``, 0600).

    Clients (``ray job submit``, ``ray.init``) need the same two variables; ``start``
    prints them and writes them to ``STATE_DIR/env.sh``.
    """
    token = state_dir / "auth_token"
    if not token.exists():
        fd = os.open(token, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}


def start(state_dir: Path, num_cpus: int, timeout: float) -> dict:
    """Start the head; return its state (also written to ``state_dir/head.json``)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    state_file = state_dir / "head.json"
    if state_file.exists():
        old = json.loads(state_file.read_text())
        if _alive(old["pgid"]):
            raise SystemExit(
                f"error: a head from {state_file} is running ({old['dashboard_url']}); "
                "stop it first"
            )
        state_file.unlink()
    ports = dict(zip(PORT_FLAGS, free_ports(len(PORT_FLAGS)), strict=True))
    # Short path: Ray puts Unix sockets under the temp dir (108-byte limit).
    temp_dir = tempfile.mkdtemp(prefix="vqray-", dir="/tmp")
    cmd = [
        _ray_bin(),
        "start",
        "--head",
        "--block",
        "--node-ip-address",
        HOST,
        "--dashboard-host",
        HOST,
        "--include-dashboard",
        "true",
        "--num-cpus",
        str(num_cpus),
        "--temp-dir",
        temp_dir,
        "--disable-usage-stats",
    ]
    for flag, port in ports.items():
        cmd += [flag, str(port)]
    env = dict(os.environ)
    # `python` in a job entrypoint is this interpreter (the venv's), not the system one.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(auth_env(state_dir))
    # One node, nowhere to drain work to: shut down at once on SIGTERM.
    env["RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S"] = "0"
    log = open(state_dir / "head.log", "w")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=state_dir, env=env
    )
    state = {
        "pid": proc.pid,
        "pgid": proc.pid,
        "gcs_address": f"{HOST}:{ports['--port']}",
        "dashboard_url": f"http://{HOST}:{ports['--dashboard-port']}",
        "temp_dir": temp_dir,
        "log": str((state_dir / "head.log").resolve()),
        "env": {**auth_env(state_dir), "RAY_ADDRESS": f"http://{HOST}:{ports['--dashboard-port']}"},
    }
    (state_dir / "env.sh").write_text("".join(f"export {k}={v}\n" for k, v in state["env"].items()))
    state_file.write_text(json.dumps(state, indent=2))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            stop(state_dir, grace=5)
            tail = (state_dir / "head.log").read_text()[-2000:]
            raise SystemExit(f"error: ray start exited with {proc.returncode}:\n{tail}")
        if _ready(state["dashboard_url"]):
            return state
        time.sleep(0.5)
    stop(state_dir, grace=5)
    raise SystemExit(f"error: the job server did not answer within {timeout:.0f} s; see {log.name}")


def stop(state_dir: Path, grace: float = 8.0) -> bool:
    """Stop the head recorded in ``state_dir/head.json``; False when there was none."""
    state_file = state_dir / "head.json"
    if not state_file.exists():
        return False
    state = json.loads(state_file.read_text())
    pgid = int(state["pgid"])
    if _alive(pgid):
        os.killpg(pgid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while _alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _alive(pgid):
            os.killpg(pgid, signal.SIGKILL)
            deadline = time.monotonic() + 5
            while _alive(pgid) and time.monotonic() < deadline:
                time.sleep(0.2)
    shutil.rmtree(state["temp_dir"], ignore_errors=True)
    state_file.unlink(missing_ok=True)
    return True


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("start", "stop", "status"))
    parser.add_argument("--state-dir", default="runs/ray-head", help="where head.json lives")
    parser.add_argument("--num-cpus", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--timeout", type=float, default=90.0, help="seconds to wait for start")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    state_dir = Path(args.state_dir).resolve()
    if args.action == "start":
        state = start(state_dir, args.num_cpus, args.timeout)
        print(f"Ray head up (pid {state['pid']}), logs {state['log']}")
        for key, value in state["env"].items():
            print(f"{key}={value}")
        print(f"(source {state_dir / 'env.sh'} to use it from a shell)")
        return 0
    if args.action == "stop":
        print("stopped" if stop(state_dir) else f"no head recorded in {state_dir}")
        return 0
    state_file = state_dir / "head.json"
    if state_file.exists() and _alive(json.loads(state_file.read_text())["pgid"]):
        state = json.loads(state_file.read_text())
        up = "answering" if _ready(state["dashboard_url"]) else "not answering"
        print(f"running, job server {up}: RAY_ADDRESS={state['dashboard_url']}")
        return 0
    print("not running")
    return 1


if __name__ == "__main__":
    sys.exit(main())
