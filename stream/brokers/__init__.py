"""Brokers journey starts itself: the embedded Tansu (`embedded`) and local Apache Kafka
from its Maven jars (`apache`), for the demo, the tests and `journey kafka up`."""
