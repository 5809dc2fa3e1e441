from typing import Any


def handler(event: Any, context: Any) -> dict[str, bool]:
    return {"ok": True}
