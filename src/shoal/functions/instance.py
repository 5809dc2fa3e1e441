"""An instance's life, in the child a template just forked: set up, announce, serve, exit.

Called by ``shoal.functions.template`` right after ``os.fork()``; never returns (the caller
``os._exit``\\ s with what :func:`serve` returns). The child is born inside its own memory
cgroup (the template made it and hops on after the fork), so in order it only:

0. if it is a **standby** (forked ahead of demand, see ``shoal.functions.pool``), waits for
   its first frame: until then nothing of the function runs in it, and end-of-stream (the
   pool dropped it) ends it with status 0;
1. reseeds numpy's legacy generator if the handler loaded numpy (``random`` is reseeded by
   CPython's own at-fork hook, which ``os.fork()`` runs) and calls the module's
   ``after_fork()``;
2. says ``hello`` on its socket: the dispatcher may already have written the first invocation
   behind the spawn command, so it is read right away;
3. serves ``invoke`` frames, ``concurrency`` at a time (worker threads when more than one), each
   with a fresh :class:`~shoal.functions.context.LambdaContext`; an exception becomes Lambda's
   error shape (and an ``[ERROR]`` line in the log, as on Lambda); every ``result`` says how
   long the handler ran and the process's peak RSS (``ru_maxrss``);
4. at end-of-stream (the dispatcher's "stop"), finishes what is in flight and exits 0. Being
   killed (timeout, memory) or calling ``sys.exit`` in a handler ends it at once; the
   dispatcher learns how from the template's exit report.

Like everything forked processes import, this module stays light (no ``typing``, no
``dataclasses``), and the path from the fork to the first result is short on purpose: after
``fork()`` every page the child writes, a reference count included, is copied (about 4.5 us
each on the machine this was measured on), so its name (``fn:NAME``), its log stream variable
and its socket are prepared by the template, ``hello`` is built without json, and it reads and
writes its socket as a raw descriptor.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
import traceback

from shoal.functions import protocol
from shoal.functions.context import LambdaContext, error_shape, function_arn, log_group_name

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import ModuleType
    from typing import Any

_SKIP = (__file__,)


class Setup:
    """What every instance of one template needs, prepared once in the template."""

    __slots__ = (
        "arn",
        "concurrency",
        "current",
        "handler",
        "log_group",
        "memory_mb",
        "module",
        "name",
    )

    def __init__(
        self, config: dict[str, Any], module: ModuleType, handler: Callable[[Any, Any], Any]
    ) -> None:
        self.name: str = config["name"]
        self.memory_mb = int(config["memory_mb"])
        self.concurrency = max(1, int(config.get("concurrency", 1)))
        self.handler = handler
        self.module = module
        self.arn = function_arn(self.name)
        self.log_group = log_group_name(self.name)
        self.current = Current()  # the request id being served, for log lines


class Current:
    """The request id an instance is serving (per thread when ``concurrency`` > 1)."""

    __slots__ = ("request_id",)

    def __init__(self) -> None:
        self.request_id = ""


def lambda_logging(setup: Setup) -> None:
    """Give the root logger the handler Lambda's runtime gives it, when the module uses
    ``logging`` and configured no handler itself: ``[INFO]\t<UTC time>\t<request id>\t<msg>``
    on stdout, so ``logging.getLogger().info(...)`` in a Lambda handler reaches the log."""
    logging = sys.modules.get("logging")
    if logging is None or logging.getLogger().handlers:
        return
    if setup.concurrency > 1:
        setup.current = sys.modules["threading"].local()
    current = setup.current

    class RequestId(logging.Filter):  # type: ignore[name-defined,misc]
        def filter(self, record: Any) -> bool:
            record.aws_request_id = getattr(current, "request_id", "")
            return True

    handler = logging.StreamHandler(sys.stdout)
    formatter = logging.Formatter(
        "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s",
        "%Y-%m-%dT%H:%M:%S",
    )
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    handler.addFilter(RequestId())
    logging.getLogger().addHandler(handler)


def _reseed() -> None:
    """numpy's legacy global generator, when loaded (``random`` reseeds itself at fork)."""
    numpy = sys.modules.get("numpy")
    legacy = getattr(getattr(numpy, "random", None), "seed", None)
    if callable(legacy):
        legacy()


def serve(fd: int, setup: Setup, stream: str, *, standby: bool = False) -> int:
    """The instance's whole life (see the module docstring); the exit status.

    A ``standby`` was forked ahead of demand: it waits for its first frame (``go``, or its
    first ``invoke``) before anything of the function runs in it, ``after_fork()`` included,
    and exits 0 at end-of-stream if it is dropped unused."""
    reader = protocol.FrameReader(fd)
    first: protocol.Frame | None = None
    if standby:
        try:
            rehearse(setup, stream)
        except Exception:  # only ever a head start: a standby that cannot rehearse still serves
            traceback.print_exc()
        first = reader.read()
        if first is None:
            return 0
    _reseed()
    after_fork = getattr(setup.module, "after_fork", None)
    if callable(after_fork):
        try:
            after_fork()
        except Exception as exc:
            error = error_shape(exc, skip_files=_SKIP)
            protocol.write_frame(fd, {"op": "hello", "pid": os.getpid(), "error": error})
            _log_error(error)
            return 1
    protocol.write_all(fd, hello_frame(os.getpid()))
    if setup.concurrency == 1:
        frame = first if first is not None else reader.read()
        while frame is not None:
            header, body = frame
            if header.get("op") == "invoke":
                protocol.write_all(fd, invoke(setup, stream, header, body))
            frame = reader.read()
        return 0
    return _serve_threads(fd, reader, setup, stream, first)


REHEARSAL_EVENT = (
    b'{"version":"2.0","routeKey":"POST /standby","rawPath":"/standby","rawQueryString":"",'
    b'"headers":{"content-length":"64","content-type":"application/json","host":"127.0.0.1",'
    b'"user-agent":"shoal","x-forwarded-for":"127.0.0.1","x-forwarded-port":"8080",'
    b'"x-forwarded-proto":"http","x-request-id":"0123456789ab-1"},"requestContext":{'
    b'"accountId":"000000000000","apiId":"shoal","domainName":"127.0.0.1","domainPrefix":'
    b'"127","http":{"method":"POST","path":"/standby","protocol":"HTTP/1.1","sourceIp":'
    b'"127.0.0.1","userAgent":"shoal"},"requestId":"00000000-0000-4000-8000-000000000000",'
    b'"routeKey":"POST /standby","stage":"$default","time":"01/Jan/2026:00:00:00 +0000",'
    b'"timeEpoch":1767225600000},"body":"{\\"rehearsal\\": true, \\"items\\": [1, 2, 3]}",'
    b'"isBase64Encoded":false}'
)
"""A made-up HTTP event for :func:`rehearse` (the shape the gateway sends)."""


def rehearse(setup: Setup, stream: str) -> None:
    """In a standby, before it is taken: go through the platform's part of an invocation on a
    made-up frame (decode it, parse the event, build a context, encode a result), without the
    handler. After the fork every page written is a copy (see the module docstring); these are
    the pages any invocation writes, so they are copied now, while nothing waits. Nothing of
    the function runs: its module is not touched."""
    header = {"op": "invoke", "id": "00000000-0000-4000-8000-000000000000", "t": 3000}
    frames = protocol.FrameParser().feed(protocol.encode(header, REHEARSAL_EVENT))
    for head, body in frames:
        event = json.loads(body)
        make_context(setup, stream, head["id"], head).get_remaining_time_in_millis()
        started = time.perf_counter()
        answer = {"statusCode": 200, "headers": event["headers"], "body": event["body"]}
        payload = _encode(answer).encode()
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        result_frame(head["id"], (time.perf_counter() - started) * 1000, rss, payload)


def _serve_threads(
    fd: int,
    reader: protocol.FrameReader,
    setup: Setup,
    stream: str,
    first: protocol.Frame | None,
) -> int:
    import queue  # noqa: PLC0415 (imported by the template when concurrency > 1)
    import threading  # noqa: PLC0415

    work: queue.SimpleQueue[protocol.Frame | None] = queue.SimpleQueue()
    sending = threading.Lock()

    def worker() -> None:
        while (item := work.get()) is not None:
            frame = invoke(setup, stream, *item)
            with sending:
                protocol.write_all(fd, frame)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(setup.concurrency)]
    for thread in threads:
        thread.start()
    frame = first if first is not None else reader.read()
    while frame is not None:
        if frame[0].get("op") == "invoke":
            work.put(frame)
        frame = reader.read()
    for _ in threads:
        work.put(None)
    for thread in threads:
        thread.join()
    return 0


def hello_frame(pid: int) -> bytes:
    """An instance's ``hello``, built without the json module (it is the first thing a new
    instance sends: every object it touches is a page copied after the fork)."""
    head = b'{"op":"hello","pid":%d}' % pid
    return protocol.PREFIX.pack(len(head), 0) + head


_PLAIN_ID = frozenset("0123456789abcdefABCDEF-_.")


def result_frame(request_id: str, ms: float, rss: int, payload: bytes) -> bytes:
    """A successful ``result`` frame, its header built without the json module when the
    request id needs no escaping (the usual UUID): the instance's hot path."""
    if request_id and _PLAIN_ID.issuperset(request_id):
        head = b'{"op":"result","id":"%s","ok":true,"ms":%r,"rss":%d}' % (
            request_id.encode(),
            ms,
            rss,
        )
        return protocol.PREFIX.pack(len(head), len(payload)) + head + payload
    return protocol.encode(
        {"op": "result", "id": request_id, "ok": True, "ms": ms, "rss": rss}, payload
    )


def _json_default(value: Any) -> Any:
    """What Lambda's Python runtime also serialises: Decimal (as a number)."""
    if type(value).__name__ == "Decimal":
        return float(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


_encode = json.JSONEncoder(default=_json_default).encode  # made once: json.dumps(default=...)
# would make a new encoder for every result


def make_context(
    setup: Setup, stream: str, request_id: str, header: protocol.Header
) -> LambdaContext:
    """The handler's ``context`` for one ``invoke`` frame (its deadline from the frame's ``t``)."""
    return LambdaContext(
        request_id,
        function_name=setup.name,
        memory_mb=setup.memory_mb,
        log_stream=stream,
        deadline=time.monotonic() + header.get("t", 3000) / 1000,
        arn=setup.arn,
        log_group=setup.log_group,
    )


def invoke(setup: Setup, stream: str, header: protocol.Header, body: bytes) -> bytes:
    """Run the handler for one ``invoke`` frame; the ``result`` frame to send back."""
    request_id = header["id"]
    setup.current.request_id = request_id
    context = make_context(setup, stream, request_id, header)
    started = time.perf_counter()
    error: dict[str, Any] | None = None
    try:
        result = setup.handler(json.loads(body) if body else None, context)
    except Exception as exc:
        error = error_shape(exc, request_id, skip_files=_SKIP)
    else:
        try:
            payload = _encode(result).encode()
        except (TypeError, ValueError) as exc:
            error = {
                "errorMessage": f"Unable to marshal response: {exc}",
                "errorType": "Runtime.MarshalError",
                "requestId": request_id,
                "stackTrace": [],
            }
    elapsed = (time.perf_counter() - started) * 1000
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if error is None:
        return result_frame(request_id, elapsed, rss, payload)
    _log_error(error)
    reply = {"op": "result", "id": request_id, "ok": False, "et": error["errorType"]}
    return protocol.encode({**reply, "ms": elapsed, "rss": rss}, json.dumps(error).encode())


def _log_error(error: dict[str, Any]) -> None:
    """``[ERROR] ValueError: message`` and the trace, in the function's log, as Lambda logs it."""
    trace = "".join(error.get("stackTrace") or ())
    text = f"[ERROR] {error['errorType']}: {error['errorMessage']}"
    if trace:
        text += f"\nTraceback (most recent call last):\n{trace}"
    print(text.rstrip("\n"), file=sys.stderr, flush=True)


__all__ = ["Setup", "invoke", "serve"]
