"""Faust codecs for journey's table values: compact JSON written by the pure core's encoders."""

from __future__ import annotations

from faust.serializers import codecs

from journey.customer import CustomerState, decode_state, encode_state
from journey.referrals import ShareJoin, decode_join, encode_join

__all__ = ["CUSTOMER_CODEC", "SHARE_JOIN_CODEC", "register_codecs"]

CUSTOMER_CODEC = "journey-customer"
SHARE_JOIN_CODEC = "journey-share-join"


class _CustomerCodec(codecs.Codec):
    def _dumps(self, obj: CustomerState) -> bytes:
        return encode_state(obj)

    def _loads(self, s: bytes) -> CustomerState:
        return decode_state(s)


class _ShareJoinCodec(codecs.Codec):
    def _dumps(self, obj: ShareJoin) -> bytes:
        return encode_join(obj)

    def _loads(self, s: bytes) -> ShareJoin:
        return decode_join(s)


def register_codecs() -> None:
    codecs.register(CUSTOMER_CODEC, _CustomerCodec())
    codecs.register(SHARE_JOIN_CODEC, _ShareJoinCodec())
