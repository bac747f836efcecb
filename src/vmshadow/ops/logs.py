"""The service's logs: a level, and text or one JSON object per line.

uvicorn's own loggers (``uvicorn.error``, and ``uvicorn.access`` for each
request) go through the same handler and format, so a log collector parses
one format. A JSON line holds ``ts`` (UTC, ISO 8601), ``level``, ``logger``,
``message``, the exception as ``exc`` when there is one, and for access lines
``client``, ``method``, ``path`` and ``status``.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from vmshadow.ops.settings import LogSettings

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        # uvicorn's access records carry (client, method, path, version, status) as args.
        if record.name == "uvicorn.access" and isinstance(record.args, tuple):
            args = record.args
            if len(args) == 5:
                doc.update(client=args[0], method=args[1], path=args[2], status=args[4])
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


def formatter(fmt: str) -> logging.Formatter:
    return JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT)


def configure(settings: LogSettings) -> None:
    """Set the root logger and uvicorn's to the level and format; idempotent."""
    handler = logging.StreamHandler()
    handler.setFormatter(formatter(settings.format))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.level.upper())
    for name in UVICORN_LOGGERS:
        lg = logging.getLogger(name)
        lg.handlers.clear()
        lg.propagate = True  # to the root's handler: one format for all
        lg.setLevel(settings.level.upper())


def uvicorn_log_config() -> dict[str, Any]:
    """Hand uvicorn a config that leaves its loggers to ``configure``."""
    return {"version": 1, "disable_existing_loggers": False}
