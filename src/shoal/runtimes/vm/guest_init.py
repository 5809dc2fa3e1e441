"""PID 1 inside a shoal VM: starts the service's command and talks to the host on a serial line.

Not imported by the daemon: :mod:`shoal.runtimes.vm.baking` copies this file into every
service image (``/srv/shoal/init.py``) and the initramfs ``switch_root``s into
``python3 -I -S /srv/shoal/init.py``. It only uses the guest's standard library.

The flow inside the guest:

1. mount ``/run`` and ``/tmp``, read ``/srv/shoal/service.json`` (command, env, workdir, port);
2. start the command in ``/srv/app`` with its env and ``PORT``, output to the serial console
   (which the host appends to the instance's log);
3. tell the host ``ready`` once the port accepts connections inside the guest (the snapshot of
   a fresh boot is taken at that moment);
4. answer the host on the control line (``/dev/ttyS1``), one text line per message:
   ``warm <path>`` (the snapshot maker: one GET to the service, answer ``warmed``),
   ``sync <unix-ns> <hex>`` (after a snapshot restore: set the wall clock, mix the bytes into the
   kernel's entropy pool with credit and force a CRNG reseed, announce the NIC's MAC to the new
   slirp with an ARP request, answer ``synced``), ``stop <s>``
   (SIGTERM the command, SIGKILL it after ``<s>`` seconds), ``kill <n>`` (signal ``n`` to it);
5. when the command exits, say ``exit <code>`` (or ``signal <n>``), sync the disks and power off.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import signal
import socket
import struct
import sys
import termios
import threading
import time
import tty

CONFIG = "/srv/shoal/service.json"
CONTROL = "/dev/ttyS1"
CONSOLE = "/dev/console"
RNDADDENTROPY = 0x40085203  # _IOW('R', 0x03, int[2])
RNDRESEEDCRNG = 0x5207  # _IO('R', 0x07)
POWER_OFF = 0x4321FEDC  # LINUX_REBOOT_CMD_POWER_OFF
READY_POLL = 0.01
NIC = "eth0"
GUEST_IP = "10.0.2.15"  # as the initramfs configures it (slirp's defaults)
GATEWAY_IP = "10.0.2.2"


class Guest:
    """The init's state: the command's pid and the control line."""

    def __init__(self, config: dict[str, object]) -> None:
        self.config = config
        self.control = os.open(CONTROL, os.O_RDWR | os.O_NOCTTY)
        tty.setraw(self.control)
        mode = termios.tcgetattr(self.control)  # the fastest the 8250 goes: qemu paces the
        mode[4] = mode[5] = termios.B115200  # line's characters by its baud rate
        termios.tcsetattr(self.control, termios.TCSANOW, mode)
        termios.tcflush(self.control, termios.TCIOFLUSH)
        self.write_lock = threading.Lock()
        self.app = 0

    def say(self, line: str) -> None:
        with self.write_lock:
            os.write(self.control, (line + "\n").encode())

    def start(self) -> None:
        command = [str(part) for part in self.config["command"]]  # type: ignore[attr-defined]
        env = {str(k): str(v) for k, v in self.config["env"].items()}  # type: ignore[attr-defined]
        workdir = str(self.config.get("workdir") or "/srv/app")
        pid = os.fork()
        if pid == 0:  # the command: own session, console output, never a shell
            try:
                os.setsid()
                os.chdir(workdir)
                null = os.open("/dev/null", os.O_RDONLY)
                out = os.open(CONSOLE, os.O_WRONLY | os.O_NOCTTY)
                os.dup2(null, 0)
                os.dup2(out, 1)
                os.dup2(out, 2)
                os.execvpe(command[0], command, env)  # noqa: S606 - argv, never a shell
            except OSError as exc:
                os.write(2, f"shoal-init: cannot start {command!r}: {exc}\n".encode())
            os._exit(127)
        self.app = pid

    def watch_ready(self) -> None:
        port = int(str(self.config.get("port") or 0))
        if not port:
            self.say("ready")
            return
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    self.say("ready")
                    return
            except OSError:
                time.sleep(READY_POLL)

    def listen(self) -> None:
        buffer = b""
        while True:
            chunk = os.read(self.control, 4096)
            if not chunk:
                time.sleep(0.05)
                continue
            buffer += chunk
            while b"\n" in buffer:
                line, _, buffer = buffer.partition(b"\n")
                self.handle(line.decode(errors="replace").strip())

    def handle(self, line: str) -> None:
        verb, _, rest = line.partition(" ")
        if verb == "sync":
            nanos, _, entropy = rest.partition(" ")
            sync(int(nanos), bytes.fromhex(entropy))
            try:
                announce()
            except OSError as exc:
                print(f"shoal-init: cannot announce eth0: {exc}", file=sys.stderr, flush=True)
            self.say("synced")
        elif verb == "stop":
            self.stop(float(rest or "10"))
        elif verb == "warm":
            threading.Thread(target=self.warm, args=(rest or "/",), daemon=True).start()
        elif verb == "kill" and self.app:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(self.app, int(rest))

    def warm(self, path: str) -> None:
        """One request to the service before the snapshot, so its first-request work (lazy
        imports, caches) is already done in every restored clone."""
        port = int(str(self.config.get("port") or 0))
        request = f"GET {path} HTTP/1.0\r\nHost: localhost\r\nUser-Agent: shoal-warmup\r\n\r\n"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
                conn.sendall(request.encode())
                while conn.recv(65536):
                    pass
        except OSError:
            pass
        self.say("warmed")

    def stop(self, grace: float) -> None:
        if self.app:
            try:
                os.kill(self.app, signal.SIGTERM)
            except ProcessLookupError:
                return
            timer = threading.Timer(grace, self.kill)
            timer.daemon = True
            timer.start()

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.app, signal.SIGKILL)

    def reap(self) -> None:
        """Wait for the command (reaping any orphan on the way), report how it ended."""
        while True:
            pid, status = os.wait()
            if pid == self.app:
                break
        if os.WIFSIGNALED(status):
            self.say(f"signal {os.WTERMSIG(status)}")
        else:
            self.say(f"exit {os.waitstatus_to_exitcode(status)}")


def sync(nanos: int, entropy: bytes) -> None:
    """After a restore: the host's wall clock, fresh entropy credited and a CRNG reseed."""
    seconds, rest = divmod(nanos, 1_000_000_000)
    time.clock_settime(time.CLOCK_REALTIME, seconds + rest / 1e9)
    with open("/dev/urandom", "wb") as pool:
        request = struct.pack("ii", len(entropy) * 8, len(entropy)) + entropy
        fcntl.ioctl(pool, RNDADDENTROPY, request)
        fcntl.ioctl(pool, RNDRESEEDCRNG)


def announce() -> None:
    """After a restore the host side of the network is a new slirp that does not know this
    guest's MAC yet (it would drop the first forwarded connection while it asks): an ARP request
    for the gateway tells it."""
    with open(f"/sys/class/net/{NIC}/address") as source:
        mac = bytes.fromhex(source.read().strip().replace(":", ""))
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1)  # Ethernet, IPv4, request
    body = arp + mac + socket.inet_aton(GUEST_IP) + b"\x00" * 6 + socket.inet_aton(GATEWAY_IP)
    frame = b"\xff" * 6 + mac + b"\x08\x06" + body
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as raw:
        raw.bind((NIC, 0))
        raw.send(frame)


def mount(kind: str, target: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    os.makedirs(target, exist_ok=True)
    libc.mount(kind.encode(), target.encode(), kind.encode(), 0, None)


def power_off() -> None:
    os.sync()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.reboot(POWER_OFF)
    time.sleep(5)


def main() -> None:
    mount("tmpfs", "/run")
    mount("tmpfs", "/tmp")  # noqa: S108 - the guest's own /tmp
    os.environ["PATH"] = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
    with open(CONFIG) as source:
        config = json.load(source)
    guest = Guest(config)
    signal.signal(signal.SIGTERM, lambda *_: guest.stop(float(str(config.get("grace", 10)))))
    guest.start()
    for target in (guest.watch_ready, guest.listen):
        threading.Thread(target=target, daemon=True).start()
    try:
        guest.reap()
    finally:
        power_off()


if __name__ == "__main__":
    try:
        main()
    except BaseException as exc:  # PID 1 must never just die: say why, then power off
        print(f"shoal-init: {exc!r}", file=sys.stderr)
        power_off()
