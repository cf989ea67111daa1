"""A share join's links as the referred customer takes them: a referral link that names it
as the referred one, or a link taken back (an erasure, a merge)."""

from __future__ import annotations

from datetime import datetime

import orjson

from journey.customer import to_us
from journey.referrals import take_referral
from stream.processing.batch import Arrival, Batch, Config
from stream.processing.customers import Customers, States
from stream.processing.identity.merging import Merger

__all__ = ["Referrals"]


class Referrals:
    """The handler of `link` and `unlink` messages on the referred topic."""

    def __init__(self, config: Config, customers: Customers, merger: Merger) -> None:
        self.config = config
        self.customers = customers
        self.merger = merger

    def handle(self, batch: Batch, arrival: Arrival) -> None:
        message = arrival.value
        partition = arrival.partition
        customer_id = message["referred_id"]
        to = self.merger.pointer(batch.identity, customer_id, partition)
        if to is not None:
            States(self.customers, batch).followed(customer_id)
            # A link for an id that stopped being canonical: its person's now.
            batch.out.add(
                self.config.names.referred, to.encode("utf-8"), orjson.dumps({**message, "referred_id": to})
            )
            return
        state = self.customers.state(batch, customer_id)
        referral: tuple[str, str] | None = None
        horizon = batch.horizons.get(customer_id)
        if message.get("kind") == "unlink":
            if horizon is not None and state.version == 0 and message["share_id"] not in state.referrals:
                return  # an erased customer's own link, taken back: nothing to keep of it
        else:
            # A link its own touchpoint's erasure overtook: the join retracts it when the
            # erasure reaches it, so it never counts. (Its time is read only for an erased customer.)
            if horizon is not None and to_us(datetime.fromisoformat(message["discovered_at"])) <= horizon:
                return
            # A link forwarded from an id that stopped being canonical may come after the share
            # join retracted it: one naming the person itself as referrer is a self-referral
            # now, which is no referral. Else its referrer and share channel become the
            # customer's impact keys.
            referrer = message["referrer_id"]
            if referrer != customer_id and referrer not in state.aliases:
                referral = (referrer, message["share_channel"])
        # A message delivered again, or older than one taken, changes nothing.
        if take_referral(state, message, referral):
            batch.changed[partition].add(customer_id)
