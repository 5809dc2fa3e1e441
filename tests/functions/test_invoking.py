"""Invoking through a real pool: cold and warm, AWS's own example handlers, errors, hooks."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from shoal.errors import FunctionInitError, HandlerError
from shoal.functions import shapes
from shoal.functions.results import InvocationResult
from tests.functions.conftest import (
    HandlerWriter,
    PoolFactory,
    eventually,
    ok_value,
    tagged_processes,
)

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(10)]

PID_HANDLER = """
    import os, time

    def handler(event, context):
        if event.get("sleep"):
            time.sleep(event["sleep"])
        return {"pid": os.getpid(), "request_id": context.aws_request_id}
"""

# AWS's own examples, written out as AWS documents them (indentation of the second repaired:
# the page's own does not parse).
AWS_CONSOLE_DEFAULT = """
    import json

    def lambda_handler(event, context):
        # TODO implement
        return {
            'statusCode': 200,
            'body': json.dumps('Hello from Lambda!')
        }
"""
AWS_MY_HANDLER = """
    def my_handler(event, context):
        message = 'Hello {} {}!'.format(event['first_name'],
                                        event['last_name'])
        return {
            'message' : message
        }
"""
AWS_CONTEXT_EXAMPLE = """
    import time

    def lambda_handler(event, context):
        print("Lambda function ARN:", context.invoked_function_arn)
        print("CloudWatch log stream name:", context.log_stream_name)
        print("CloudWatch log group name:",  context.log_group_name)
        print("Lambda Request ID:", context.aws_request_id)
        print("Lambda function memory limits in MB:", context.memory_limit_in_mb)
        # We have added a 1 second delay so you can see the time remaining in get_remaining_time_in_millis.
        time.sleep(1)
        print("Lambda time remaining in MS:", context.get_remaining_time_in_millis())
"""  # noqa: E501 (AWS's example, verbatim)


async def test_cold_then_warm(write_handler: HandlerWriter, make_pool: PoolFactory) -> None:
    results: list[InvocationResult] = []
    pool = await make_pool(write_handler("fn.py", PID_HANDLER), on_invocation=results.append)
    first = await pool.invoke({}, request_id="req-1")
    second = await pool.invoke({})
    assert ok_value(first)["request_id"] == "req-1"
    assert ok_value(first)["pid"] == ok_value(second)["pid"]
    assert first.cold and first.init_duration_ms is not None and first.init_duration_ms > 0
    assert not second.cold and second.init_duration_ms is None
    assert "Init Duration" in first.report_line()
    assert "Init Duration" not in second.report_line()
    assert [r.request_id for r in results] == ["req-1", second.request_id]
    record = first.record()
    assert (record.function, record.status, record.cold, record.ordinal) == ("fn", "ok", True, 0)
    assert record.billed_ms >= 1 and record.max_memory_bytes and record.init_duration_ms
    metrics = pool.metrics()
    assert (metrics.invocations, metrics.cold_starts, metrics.errors) == (2, 1, 0)
    assert metrics.duration.count == 2
    (template,) = pool.snapshot().templates
    assert template.state == "running" and template.init_ms is not None
    (instance,) = pool.snapshot().instances
    assert (instance.state, instance.invocations) == ("idle", 2)
    assert instance.memory_bytes is not None and instance.memory_bytes > 0
    assert pool.forkserver is not None  # the leak check finds these processes by this tag:
    assert {template.pid, instance.pid} <= set(tagged_processes(pool.forkserver.tag))


async def test_aws_console_default_handler_runs_unchanged(
    write_handler: HandlerWriter, make_pool: PoolFactory
) -> None:
    path = write_handler("lambda_function.py", AWS_CONSOLE_DEFAULT)
    pool = await make_pool(path, handler_function="lambda_handler")
    event = shapes.http_event(method="GET", raw_path="/", request_id="r", now=0.0)
    result = await pool.invoke(event)
    assert ok_value(result) == {"statusCode": 200, "body": '"Hello from Lambda!"'}
    response = shapes.http_response(result.payload)
    assert (response.status, response.body) == (200, b'"Hello from Lambda!"')


async def test_aws_documented_handler_and_context_example(
    write_handler: HandlerWriter, make_pool: PoolFactory, tmp_path: Path
) -> None:
    mine = await make_pool(
        write_handler("example.py", AWS_MY_HANDLER), handler_function="my_handler"
    )
    result = await mine.invoke({"first_name": "Ada", "last_name": "Lovelace"})
    assert ok_value(result) == {"message": "Hello Ada Lovelace!"}

    path = write_handler("context_example.py", AWS_CONTEXT_EXAMPLE)
    pool = await make_pool(path, handler_function="lambda_handler", timeout=3.0)
    result = await pool.invoke({}, request_id="ctx-1")
    assert ok_value(result) is None
    log = (tmp_path / "logs" / "context_example.log").read_text()
    assert "Lambda function ARN: arn:aws:lambda:local:000000000000:function:context_example" in log
    assert "CloudWatch log group name: /aws/lambda/context_example" in log
    assert "CloudWatch log stream name: 20" in log and "[$LATEST]" in log
    assert "Lambda Request ID: ctx-1" in log
    assert "Lambda function memory limits in MB: 128" in log
    remaining = int(log.split("Lambda time remaining in MS:")[1].split()[0])
    assert 1500 < remaining < 2000


async def test_handler_exception_becomes_lambdas_error_shape(
    write_handler: HandlerWriter, make_pool: PoolFactory, tmp_path: Path
) -> None:
    path = write_handler(
        "broken.py",
        """
        def handler(event, context):
            if event == "object":
                return object()
            raise ValueError("no such order")
        """,
    )
    pool = await make_pool(path)
    result = await pool.invoke({}, request_id="err-1")
    assert isinstance(result.error, HandlerError)
    assert (result.status, result.error.error_type, result.error.http_status) == (
        "error",
        "ValueError",
        500,
    )
    shape = result.value()
    assert shape["errorMessage"] == "no such order"
    assert shape["errorType"] == "ValueError"
    assert shape["requestId"] == "err-1"
    assert 'broken.py", line 4, in handler' in shape["stackTrace"][0]
    marshal = await pool.invoke("object")
    assert marshal.error is not None and marshal.error.error_type == "Runtime.MarshalError"
    await eventually(lambda: "[ERROR] ValueError: no such order" in _log(tmp_path, "broken"))
    assert pool.metrics().errors == 2


def _log(tmp_path: Path, name: str) -> str:
    path = tmp_path / "logs" / f"{name}.log"
    return path.read_text() if path.exists() else ""


@pytest.mark.parametrize(
    ("code", "error_type", "message"),
    [
        ("import nosuchmodule\n", "Runtime.ImportModuleError", "No module named 'nosuchmodule'"),
        ("def handler(:\n", "Runtime.UserCodeSyntaxError", "Syntax error in module 'bad'"),
        ("x = 1\n", "Runtime.HandlerNotFound", "Handler 'handler' missing on module 'bad'"),
        ("raise RuntimeError('init broke')\n", "RuntimeError", "init broke"),
    ],
)
async def test_init_failures_have_lambdas_error_types(
    write_handler: HandlerWriter,
    make_pool: PoolFactory,
    code: str,
    error_type: str,
    message: str,
) -> None:
    pool = await make_pool(write_handler("bad.py", code))
    result = await pool.invoke({})
    assert isinstance(result.error, FunctionInitError)
    assert result.error.error_type == error_type
    assert message in result.error.message
    assert result.value()["requestId"] == result.request_id
    assert pool.snapshot().templates[0].state == "fatal"


async def test_a_fixed_handler_is_picked_up_after_an_init_failure(
    write_handler: HandlerWriter, make_pool: PoolFactory
) -> None:
    path = write_handler("fixme.py", "import nosuchmodule\n")
    pool = await make_pool(path, watch_interval=0.05)
    assert (await pool.invoke({})).status == "error"
    write_handler("fixme.py", "def handler(event, context):\n    return 'fixed'\n")
    await eventually(lambda: pool.snapshot().templates[0].state == "running")
    assert ok_value(await pool.invoke({})) == "fixed"


async def test_hooks_and_reseeding_across_instances(
    write_handler: HandlerWriter, make_pool: PoolFactory, tmp_path: Path
) -> None:
    marks = tmp_path / "before_fork.txt"
    path = write_handler(
        "hooks.py",
        f"""
        import os, random, time

        STATE = {{"connected_in": os.getpid(), "after_fork": 0}}

        def before_fork():
            with open({str(marks)!r}, "a") as out:
                out.write(f"{{os.getpid()}}\\n")

        def after_fork():
            STATE["after_fork"] += 1
            STATE["connected_in"] = os.getpid()

        def handler(event, context):
            time.sleep(event.get("sleep", 0))
            return {{"pid": os.getpid(), "random": random.random(), **STATE}}
        """,
    )
    pool = await make_pool(path, standby=False)  # one fork per instance (standbys: their tests)
    first, second = await asyncio.gather(*(pool.invoke({"sleep": 0.3}) for _ in range(2)))
    a, b = ok_value(first), ok_value(second)
    assert a["pid"] != b["pid"]
    assert a["random"] != b["random"]
    for value in (a, b):
        assert value["after_fork"] == 1
        assert value["connected_in"] == value["pid"]
    template_pid = pool.snapshot().templates[0].pid
    assert marks.read_text().split() == [str(template_pid)] * 2


async def test_environment_working_directory_and_output(
    write_handler: HandlerWriter, make_pool: PoolFactory, tmp_path: Path
) -> None:
    path = write_handler(
        "envy.py",
        """
        import os, sys
        print("init line")

        def handler(event, context):
            print("to stdout", context.aws_request_id)
            print("to stderr", file=sys.stderr)
            names = ("AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
                     "AWS_LAMBDA_LOG_STREAM_NAME", "GREETING", "_HANDLER", "PYTHONPATH")
            return {"cwd": os.getcwd(), "env": {n: os.environ.get(n) for n in names},
                    "stream": context.log_stream_name}
        """,
    )
    pool = await make_pool(path, env={"GREETING": "hi"}, memory_bytes=256 << 20)
    value = ok_value(await pool.invoke({}, request_id="env-1"))
    assert value["cwd"] == str(path.parent)
    env = value["env"]
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "envy"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    assert env["GREETING"] == "hi"
    assert env["_HANDLER"] == "envy.handler"
    assert env["AWS_LAMBDA_LOG_STREAM_NAME"] == value["stream"]
    assert env["PYTHONPATH"] is None  # the daemon's environment does not leak in
    await eventually(lambda: "to stderr" in _log(tmp_path, "envy"))
    log = _log(tmp_path, "envy")
    assert log.index("init line") < log.index("to stdout env-1")


async def test_bytes_events_pass_through(
    write_handler: HandlerWriter, make_pool: PoolFactory
) -> None:
    pool = await make_pool(write_handler("echo.py", "def handler(e, c):\n    return e\n"))
    assert ok_value(await pool.invoke(b'{"already": "json"}')) == {"already": "json"}
    assert ok_value(await pool.invoke(None)) is None
    assert json.loads((await pool.invoke([1, "two"])).payload) == [1, "two"]


async def test_logging_reaches_the_log_as_on_lambda(
    write_handler: HandlerWriter, make_pool: PoolFactory, tmp_path: Path
) -> None:
    path = write_handler(
        "logs.py",
        """
        import logging

        logger = logging.getLogger()
        logger.setLevel(logging.INFO)

        def lambda_handler(event, context):
            logger.info("got %s", event["n"])
            return event["n"]
        """,
    )
    pool = await make_pool(path, handler_function="lambda_handler")
    assert ok_value(await pool.invoke({"n": 7}, request_id="log-1")) == 7
    await eventually(lambda: "got 7" in _log(tmp_path, "logs"))
    (line,) = [x for x in _log(tmp_path, "logs").splitlines() if "got 7" in x]
    level, stamp, request_id, message = line.split("\t")
    assert (level, request_id, message) == ("[INFO]", "log-1", "got 7")
    assert stamp.endswith("Z") and "T" in stamp


async def test_a_raising_after_fork_fails_the_invocation_as_an_init_error(
    write_handler: HandlerWriter, make_pool: PoolFactory
) -> None:
    path = write_handler(
        "reconnect.py",
        """
        def after_fork():
            raise ConnectionError("database unreachable")

        def handler(event, context):
            return "never"
        """,
    )
    pool = await make_pool(path)
    result = await pool.invoke({})
    assert isinstance(result.error, FunctionInitError)
    assert result.error.error_type == "ConnectionError"
    assert "database unreachable" in result.error.message


async def test_a_hung_before_fork_never_leaves_an_invocation_waiting(
    write_handler: HandlerWriter, make_pool: PoolFactory
) -> None:
    path = write_handler(
        "hung.py",
        """
        import time

        def before_fork():
            time.sleep(30)

        def handler(event, context):
            return "never"
        """,
    )
    pool = await make_pool(path, init_timeout=0.5)
    result = await asyncio.wait_for(pool.invoke({}), 3)
    assert isinstance(result.error, FunctionInitError)
    assert "did not start within 0.5s" in result.error.message
