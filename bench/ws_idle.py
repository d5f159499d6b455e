"""Idle websockets on Redis: do sockets that hear nothing for minutes stay open, and still get the next event?

Starts a redis-server of its own and ModelDeck's web process as `make run` starts it (uvicorn, uvloop, lifespan on,
REDIS_URL set: the Redis channel layer), opens --sockets team-event sockets with a logged-in session and no client
pings (browsers send none), leaves them idle for --minutes, then publishes one team event. Prints, each minute, how
many sockets are still open, and at the end how many the server closed during the idle time and how many received
the event; writes bench/results/ws_idle.json. The target: none closed, all received.
Usage: .venv/bin/python bench/ws_idle.py [--minutes 10] [--sockets 20] [--redis-port 56391]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, this folder would come first on sys.path and shadow the project's packages.
sys.path[0] = str(ROOT)
from channels_redis.core import RedisChannelLayer  # noqa: E402
from websockets.exceptions import ConnectionClosed  # noqa: E402
from websockets.sync.client import ClientConnection, connect  # noqa: E402
from websockets.typing import Origin  # noqa: E402

from bench.serving import free_port, manage, server  # noqa: E402
from common.channel_groups import team_group  # noqa: E402

SESSION = (
    "from django.contrib.auth.models import User; from django.test import Client; c = Client(); "
    "c.force_login(User.objects.get(username='bench')); print(c.cookies['sessionid'].value)"
)


class Listener:
    """One socket read on a thread: the first message it gets, or when and how the server closed it."""

    def __init__(self, socket: ClientConnection, started: float) -> None:
        self.socket = socket
        self.started = started
        self.message: Any = None
        self.closed_after: float | None = None
        self.close_code: int | None = None
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            self.message = json.loads(self.socket.recv())
        except ConnectionClosed as exc:
            self.closed_after = time.monotonic() - self.started
            self.close_code = exc.rcvd.code if exc.rcvd else None


def publish(redis_url: str) -> None:
    async def send() -> None:
        layer = RedisChannelLayer(hosts=[redis_url])
        await layer.group_send(team_group("bench"), {"type": "team.event", "event": {"kind": "bench", "data": {}}})
        await layer.close_pools()

    asyncio.run(send())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--sockets", type=int, default=20)
    parser.add_argument("--redis-port", type=int, default=56391)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "ws_idle.json")
    options = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="modeldeck-bench-ws-idle-"))
    redis_url = f"redis://127.0.0.1:{options.redis_port}/0"
    redis_server = subprocess.Popen(
        ["redis-server", "--port", str(options.redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                redis.Redis.from_url(redis_url).ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"}}
        env |= {
            "DJANGO_SETTINGS_MODULE": "config.settings.local",
            "MODELDECK_VAR_DIR": str(workdir / "var"),
            "REDIS_URL": redis_url,
        }
        manage(env, "migrate", "--verbosity", "0")
        manage(env, "createteam", "bench", "--admin", "bench")
        cookie = f"sessionid={manage(env, 'shell', '-c', SESSION).splitlines()[-1]}"
        port = free_port()
        web = ["config.asgi:application", "--loop", "uvloop", "--lifespan", "on"]
        web += ["--http", "serving.fastpath:DataPlaneProtocol"]
        with server(web, env, port, "/v2/health/ready"), ExitStack() as sockets:
            started = time.monotonic()
            listeners = [
                Listener(
                    sockets.enter_context(
                        connect(
                            f"ws://127.0.0.1:{port}/ws/teams/bench/events/",
                            origin=Origin(f"http://127.0.0.1:{port}"),
                            additional_headers={"Cookie": cookie},
                            ping_interval=None,
                        )
                    ),
                    started,
                )
                for _ in range(options.sockets)
            ]
            print(f"{options.sockets} sockets open; idle for {options.minutes:g} min", flush=True)
            deadline = started + options.minutes * 60
            while (left := deadline - time.monotonic()) > 0:
                time.sleep(min(60.0, left))
                still_open = sum(listener.closed_after is None for listener in listeners)
                print(f"  {(time.monotonic() - started) / 60:5.1f} min: {still_open} open", flush=True)
            publish(redis_url)
            for listener in listeners:
                listener.thread.join(timeout=5)
            closed = [listener for listener in listeners if listener.closed_after is not None]
            received = sum(listener.message is not None for listener in listeners)
            result = {
                "minutes_idle": options.minutes,
                "sockets": options.sockets,
                "closed_while_idle": len(closed),
                "first_closed_after_s": round(min(listener.closed_after or 0 for listener in closed), 1)
                if closed
                else None,
                "close_codes": sorted({listener.close_code for listener in closed}, key=str),
                "received_event_after_idle": received,
            }
            print(json.dumps(result, indent=2))
            print(f"target: 0 closed, {options.sockets}/{options.sockets} received", flush=True)
            options.out.write_text(json.dumps(result, indent=2) + "\n")
    finally:
        redis_server.terminate()
        redis_server.wait(timeout=10)


if __name__ == "__main__":
    main()
