"""journey's transport: everything that talks to Kafka and Faust, in rooms by what they talk to.

- `kafka/`: the Kafka protocol and the client libraries (connection options, topics and
  their names, admin, offsets, fetching, transactions, the outbox, the batching consumer,
  reading a topic from outside).
- `brokers/`: brokers journey starts itself (the embedded Tansu, local Apache Kafka).
- `serving/`: what a worker serves (the web server and page, metrics, leaders, the impact
  view, consumer lag).
- `processing/`: the worker's processing (the pipeline's dispatcher and its handlers,
  tables; `identity/` for persons of several ids, `erasure/` for erasure requests).
- `clients/`: what people outside the worker run (the typed client, the publisher,
  erasure requests, the demo's simulated traffic).
- `app.py` and `worker.py` assemble one worker from the rooms.

A room imports only the rooms listed before it (and `journey`, `schemas`);
`docs/architecture.md` draws the picture and `tests/unit/test_layers.py` keeps it.
"""
