"""Request bodies of the native API."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StartRequest(_Body):
    business_key: str | None = Field(default=None, max_length=255)
    variables: dict[str, Any] = Field(default_factory=dict)


class ClaimRequest(_Body):
    user: str = Field(min_length=1, max_length=255)


class AssignRequest(_Body):
    user: str | None = Field(default=None, max_length=255)


class CompleteRequest(_Body):
    variables: dict[str, Any] = Field(default_factory=dict)
    user: str | None = Field(default=None, max_length=255)


class MessageRequest(_Body):
    name: str = Field(min_length=1, max_length=255)
    business_key: str | None = Field(default=None, max_length=255)
    correlation_keys: dict[str, Any] = Field(default_factory=dict)
    variables: dict[str, Any] = Field(default_factory=dict)
    message_id: str | None = Field(default=None, min_length=1, max_length=255)
    ttl_seconds: int = Field(default=0, ge=0, le=30 * 86_400)
    all: bool = False


class RetryRequest(_Body):
    variables: dict[str, Any] = Field(default_factory=dict)


class JobCompleteRequest(_Body):
    variables: dict[str, Any] = Field(default_factory=dict)


class JobFailRequest(_Body):
    error_message: str = Field(min_length=1, max_length=4000)
    retries: int | None = Field(default=None, ge=0, le=100)


class CancelRequest(_Body):
    reason: str | None = Field(default=None, max_length=1000)
