"""The VM suite's service: stdlib HTTP on $PORT inside the guest.

/healthz answers 200; /whoami answers the code's VERSION, the guest's boot id (one per cold
boot, shared by clones of one snapshot), a fresh random token and the guest's wall clock;
/exit/N answers, then exits with code N; /ignore-term makes it ignore SIGTERM; /print/WORD
prints WORD on its stdout (the serial console, so the instance's log). With VMAPP_TICK set, a
thread prints ``tick <n>`` every 50 ms (shows when the command runs: a standby clone's must not).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

VERSION = Path(__file__).with_name("VERSION").read_text().strip()


def boot_id() -> str:
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body: dict[str, object]
        if self.path == "/healthz":
            body = {"ok": True}
        elif self.path == "/whoami":
            body = {
                "version": VERSION,
                "boot": boot_id(),
                "token": os.urandom(8).hex(),
                "time": time.time(),
            }
        elif self.path == "/ignore-term":
            IGNORING.set()
            body = {"ignoring": "SIGTERM"}
        elif self.path.startswith("/print/"):
            print(self.path.removeprefix("/print/"), flush=True)
            body = {"printed": True}
        elif self.path.startswith("/exit/"):
            code = int(self.path.rsplit("/", 1)[1])
            threading.Timer(0.2, os._exit, args=(code,)).start()
            body = {"exiting": code}
        else:
            body = {"path": self.path}
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        return


IGNORING = threading.Event()


def on_term(*_: object) -> None:
    if not IGNORING.is_set():
        sys.exit(0)


def tick() -> None:
    count = 0
    while True:
        count += 1
        print(f"tick {count}", flush=True)
        time.sleep(0.05)


def main() -> None:
    signal.signal(signal.SIGTERM, on_term)
    if os.environ.get("VMAPP_TICK"):
        threading.Thread(target=tick, daemon=True).start()
    # inside the guest: slirp forwards 127.0.0.1:HOSTPORT on the host to the guest's eth0
    server = ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler)
    print(f"serving {VERSION} on {os.environ['PORT']}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
