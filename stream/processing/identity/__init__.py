"""Persons of several ids in the stream: identify events, pulls, absorbs, merges and the
share joins they rename (the decisions are in `journey.identity`)."""
