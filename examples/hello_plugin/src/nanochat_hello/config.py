"""The ``plugins.hello`` section."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class HelloConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="Greet")
    greeting: str = Field("hello", min_length=1, max_length=40, description="What to say")
    times: int = Field(1, ge=1, le=5, description="How many times")
