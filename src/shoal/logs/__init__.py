"""The log store: every instance's output and shoal's own lines, stamped, rotated and streamed.

It sits beside the state store, below the control plane (DESIGN.md §3-4). Instances write raw
output straight into files (the runtimes open them for the child); the log store tails those
files, stamps each line with the time it was read, appends it to the source's rotated log
file, and pushes it to live subscribers (``shoal logs -f``, the dashboard).

    records      LogRecord and its one-line text form in the files (pure)
    splitting    bytes -> lines, with a cap on line length (pure)
    rotating     a source's log file, rotated by size; reading it back
    punching     freeing consumed bytes of a raw file while its writer keeps appending
    tailing      following one raw file: offset (saved across restarts), lines, holes
    subscribing  live streams with a bounded queue per reader
    store        LogStore: the API and the tailer task

    async with LogStore(state_dir / "logs") as logs:
        logs.register("catalog#0", logs.raw_path("catalog#0"))  # the instance's spec.log_path
        logs.append("catalog#0", "started")
        records = logs.read(["catalog#0"], since=None, tail=100)
"""

from shoal.logs.records import LogRecord, Stream
from shoal.logs.store import LogStore, file_stem
from shoal.logs.subscribing import Subscription

__all__ = ["LogRecord", "LogStore", "Stream", "Subscription", "file_stem"]
