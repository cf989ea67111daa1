"""The Faust codec of the share-join table: compact JSON written by the pure core's encoder."""

from __future__ import annotations

from faust.serializers import codecs

from journey.referrals import ShareJoin, decode_join, encode_join

__all__ = ["SHARE_JOIN_CODEC", "register_codecs"]

SHARE_JOIN_CODEC = "journey-share-join"


class _ShareJoinCodec(codecs.Codec):
    def _dumps(self, obj: ShareJoin) -> bytes:
        return encode_join(obj)

    def _loads(self, s: bytes) -> ShareJoin:
        return decode_join(s)


def register_codecs() -> None:
    codecs.register(SHARE_JOIN_CODEC, _ShareJoinCodec())
