"""Output message models: what downstream consumers read (SPEC.md, "Outputs").

The worker builds these messages as plain dicts on its hot path; these models are the
documented shape, the source of the exported JSON Schemas, and what tests and the client
validate messages against.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "CustomerState",
    "DeadLetter",
    "ErasureLogEntry",
    "ImpactEntry",
    "MergeEntry",
    "Moments",
    "PppUpdate",
    "ReferralLink",
    "RetractedLink",
]


class Moments(BaseModel):
    """How many touchpoints of each moment, and shares as `umot`."""

    model_config = ConfigDict(extra="forbid")

    zmot: int = Field(ge=0)
    fmot: int = Field(ge=0)
    smot: int = Field(ge=0)
    umot: int = Field(ge=0)


class PppUpdate(BaseModel):
    """One message on `ppp-updates`: the customer's scores after an event changed them. A
    null value (tombstone) when the customer was erased, or stopped being a person's
    canonical id; its versions count again from 1 after it."""

    model_config = ConfigDict(extra="forbid")

    customer_id: str
    csat: float = Field(ge=0, le=10, description="0 to 10, two decimals")
    cltv: float = Field(ge=0, description="lifetime value in the base currency, two decimals")
    ppp: float = Field(ge=0, description="csat x cltv, two decimals")
    previous_ppp: float | None = Field(description="null on the customer's first update")
    cltv_365d: float = Field(ge=0)
    version: int = Field(ge=1, description="counts this customer's updates; drop lower ones")
    cause_event_id: str
    cause_type: Literal["touchpoint", "purchase", "survey", "share", "identify"] = Field(
        description="the type of the event that made the update; identify when joining ids into a person changed the scores"
    )
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
    campaigns: list[str] = Field(description="the campaigns of the customer's touchpoints, sorted")
    channels: list[str] = Field(description="the channels of the customer's touchpoints, sorted")
    referred_by: list[str] = Field(description="the referrer_ids of the links that brought the customer in")
    referral_channels: list[str] = Field(description="the share channels of those links, sorted")
    smot_failures: int = Field(ge=0, description="SMOT touchpoints with a sentiment below 0")
    recovery: Literal["smooth", "recovered", "unrecovered"] | None = Field(
        description="null without a SMOT touchpoint; recovered when the latest good SMOT is after the latest failure"
    )
    aliases: list[str] = Field(description="the person's other ids, sorted ([] for a person of one id)")


class OnwardMoments(BaseModel):
    """Customers who reached a moment and the one before it (beyond SPEC.md: the circle's
    onward shares, docs/choices.md)."""

    model_config = ConfigDict(extra="forbid")

    fmot: int = Field(ge=0, description="customers who reached ZMOT and FMOT")
    smot: int = Field(ge=0, description="customers who reached FMOT and SMOT")
    umot: int = Field(ge=0, description="customers who reached SMOT and UMOT")


class ImpactEntry(BaseModel):
    """One message on `impact`, keyed by `dimension/key`: the sums over the customers that
    have the key (SPEC.md, "Impact"). A null value (tombstone) when no customer is left."""

    model_config = ConfigDict(extra="forbid")

    dimension: Literal["all", "campaign", "channel", "referrer", "referral_channel", "recovery"]
    key: str = Field(description="`*` for `all`; may hold `/`")
    customers: int = Field(ge=0)
    buyers: int = Field(ge=0, description="customers with cltv above 0")
    surveyed: int = Field(ge=0, description="customers with at least one survey")
    referred: int = Field(ge=0, description="customers with at least one referrer")
    moments: Moments = Field(description="customers who reached each moment")
    ppp: float = Field(ge=0)
    cltv: float = Field(ge=0)
    csat_sum: float = Field(ge=0)
    attributed_ppp: float = Field(ge=0, description="linear attribution: each customer's ppp / its keys")
    attributed_cltv: float = Field(ge=0)
    moments_onward: OnwardMoments | None = Field(
        default=None,
        description=(
            "customers who reached each moment and the one before it; null where not known"
            " (an entry kept from a release before these counts)"
        ),
    )
    version: int = Field(ge=1, description="counts the messages of this key; drop lower ones")


class RetractedLink(BaseModel):
    """A link sent to `referral-links` that an erasure takes back."""

    model_config = ConfigDict(extra="forbid")

    share_id: str
    referrer_id: str
    referred_id: str


class ErasureLogEntry(BaseModel):
    """One message on `erasure-log`, keyed by customer_id: what an erasure request did, for
    downstream systems to honour (SPEC.md, "Erasure")."""

    model_config = ConfigDict(extra="forbid")

    request_id: str
    customer_id: str
    ids: list[str] = Field(description="every id of the person the request reached, sorted")
    requested_at: str
    done_at: str
    events_erased: int = Field(ge=0)
    links_retracted: list[RetractedLink]


class MergeEntry(BaseModel):
    """One message on `merges`, keyed by the canonical customer_id: ids that stopped being
    canonical because their person joined another or an earlier identify arrived (SPEC.md,
    "Identity"), and the links sent under them that are taken back."""

    model_config = ConfigDict(extra="forbid")

    customer_id: str = Field(description="the person's canonical id")
    merged_ids: list[str] = Field(description="the ids that stopped being canonical, sorted")
    aliases: list[str] = Field(description="all of the person's aliases now, sorted")
    merged_at: str
    links_retracted: list[RetractedLink]
