"""Output message models: what downstream consumers read (SPEC.md, "Outputs").

The worker builds these messages as plain dicts on its hot path; these models are the
documented shape, the source of the exported JSON Schemas, and what tests and the client
validate messages against.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["CustomerState", "DeadLetter", "Moments", "PppUpdate", "ReferralLink"]


class Moments(BaseModel):
    """How many touchpoints of each moment, and shares as `umot`."""

    model_config = ConfigDict(extra="forbid")

    zmot: int = Field(ge=0)
    fmot: int = Field(ge=0)
    smot: int = Field(ge=0)
    umot: int = Field(ge=0)


class PppUpdate(BaseModel):
    """One message on `ppp-updates`: the customer's scores after an event changed them."""

    model_config = ConfigDict(extra="forbid")

    customer_id: str
    csat: float = Field(ge=0, le=10, description="0 to 10, two decimals")
    cltv: float = Field(ge=0, description="lifetime value in the base currency, two decimals")
    ppp: float = Field(ge=0, description="csat x cltv, two decimals")
    previous_ppp: float | None = Field(description="null on the customer's first update")
    cltv_365d: float = Field(ge=0)
    version: int = Field(ge=1, description="counts this customer's updates; drop lower ones")
    cause_event_id: str
    cause_type: Literal["touchpoint", "purchase", "survey", "share"]
    moments: Moments
    as_of: str = Field(description="latest occurred_at of the customer's events, UTC")


class ReferralLink(BaseModel):
    """One message on `referral-links`: a share that brought in a new person."""

    model_config = ConfigDict(extra="forbid")

    share_id: str
    referrer_id: str
    referred_id: str
    share_channel: str
    shared_at: str
    discovered_at: str
    touchpoint_event_id: str
    latency_seconds: float


class DeadLetter(BaseModel):
    """One message on `dead-letters`: a rejected input message and why."""

    model_config = ConfigDict(extra="forbid")

    topic: str
    partition: int
    offset: int
    key: str | None
    key_encoding: Literal["utf-8", "base64"] = "utf-8"
    value: str
    value_encoding: Literal["utf-8", "base64"] = "utf-8"
    value_truncated: bool = Field(default=False, description="the value was cut at 256 KiB")
    value_bytes: int | None = Field(default=None, description="the original size, when cut")
    error: str
    received_at: str


class CustomerState(BaseModel):
    """What `GET /customers/{id}` answers and `journey replay` prints."""

    model_config = ConfigDict(extra="forbid")

    customer_id: str
    csat: float
    cltv: float
    ppp: float
    cltv_365d: float
    version: int
    moments: Moments
    as_of: str
    surveys: int
    purchases: int
    refunds: int
    first_seen: str
    last_seen: str
