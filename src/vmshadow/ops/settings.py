"""The settings of the service's operations (``[log]`` and ``[webhooks]`` in the
config file), kept beside the code that reads them; ``config.Settings`` holds them."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

WEBHOOK_STATES = ("predicted", "launching", "running", "failed", "completed", "cancelled")


class LogSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="the service's log level, uvicorn's included"
    )
    format: Literal["text", "json"] = Field(
        "text", description="text lines, or one JSON object per line (access log included)"
    )


class WebhookSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(
        None,
        description="POST a signed JSON document here when a transition reaches one of "
        "`events` (none: no webhooks)",
    )
    events: list[Literal[WEBHOOK_STATES]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: ["predicted", "running", "failed", "completed"],
        description="the states that are sent: predicted (it waits for a decision), "
        "running (launched), failed, completed, and also launching, cancelled",
    )
    secret_file: Path | None = Field(
        None,
        description="the HMAC-SHA256 key (made 0600 when missing); default "
        "<data_dir>/webhook-secret",
    )
    timeout_s: float = Field(10.0, gt=0, le=120, description="one delivery's time limit")
    max_attempts: int = Field(8, ge=1, le=50, description="tries per event before giving up")
    retry_base_s: float = Field(
        1.0, ge=0.01, le=600, description="first retry delay; doubled each try, at most 300 s"
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"must be an http:// or https:// URL with a host, got {url!r}")
        if parts.username or parts.password:
            raise ValueError("must not carry credentials: the signature authenticates vmshadow")
        return url
