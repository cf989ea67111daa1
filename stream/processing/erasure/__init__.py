"""Erasure requests in the stream: one id's (`eraser`) and a person's across its ids
(`persons`); the decisions are in `journey.erasure`."""
