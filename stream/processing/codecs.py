"""The Faust codecs of the share-join and impact tables: compact JSON written by the pure core's encoders."""

from __future__ import annotations

from faust.serializers import codecs

from journey.impact import ImpactEntry, decode_entry, encode_entry
from journey.referrals import ShareJoin, decode_join, encode_join

__all__ = ["IMPACT_ENTRY_CODEC", "SHARE_JOIN_CODEC", "register_codecs"]

SHARE_JOIN_CODEC = "journey-share-join"
IMPACT_ENTRY_CODEC = "journey-impact-entry"


class _ShareJoinCodec(codecs.Codec):
    def _dumps(self, obj: ShareJoin) -> bytes:
        return encode_join(obj)

    def _loads(self, s: bytes) -> ShareJoin:
        return decode_join(s)


class _ImpactEntryCodec(codecs.Codec):
    def _dumps(self, obj: ImpactEntry) -> bytes:
        return encode_entry(obj)

    def _loads(self, s: bytes) -> ImpactEntry:
        return decode_entry(s)


def register_codecs() -> None:
    codecs.register(SHARE_JOIN_CODEC, _ShareJoinCodec())
    codecs.register(IMPACT_ENTRY_CODEC, _ImpactEntryCodec())
