"""The Kafka protocol and the client libraries: connection options, topic names, admin,
offsets, fetching, transactions, the outbox, the batching consumer, reading from outside."""
