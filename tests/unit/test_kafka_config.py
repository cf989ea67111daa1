"""The Kafka launcher's configuration of its nodes (started for real in tests/integration)."""

from __future__ import annotations

from pathlib import Path

from stream.brokers.apache import KafkaCluster, _cluster_id


def _properties(cluster: KafkaCluster, node_id: int) -> dict[str, str]:
    voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in cluster.nodes)
    text = cluster.node(node_id).properties(voters, len(cluster.nodes))
    return dict(line.split("=", 1) for line in text.splitlines() if line)


def test_a_kraft_cluster_id_never_reads_as_an_option() -> None:
    ids = {_cluster_id() for _ in range(2_000)}
    assert len(ids) == 2_000
    assert all(len(made) == 22 and not made.startswith("-") for made in ids)


def test_three_nodes_replicate_everything_three_times_and_write_to_two(tmp_path: Path) -> None:
    cluster = KafkaCluster(tmp_path, 3)
    props = _properties(cluster, 2)
    assert props["node.id"] == "2" and props["process.roles"] == "broker,controller"
    assert props["controller.quorum.voters"].count("@127.0.0.1:") == 3
    for name in ("default.replication.factor", "offsets.topic.replication.factor",
                 "transaction.state.log.replication.factor"):  # fmt: skip
        assert props[name] == "3", name
    assert props["min.insync.replicas"] == props["transaction.state.log.min.isr"] == "2"
    assert len(set(cluster.bootstrap)) == 3 and cluster.url == "kafka://" + ",".join(cluster.bootstrap)


def test_one_node_behind_a_proxy_advertises_it_and_keeps_a_direct_listener(tmp_path: Path) -> None:
    cluster = KafkaCluster(tmp_path, 1, advertised_ports={1: 40123})
    props = _properties(cluster, 1)
    node = cluster.node(1)
    assert (
        props["advertised.listeners"] == f"PLAINTEXT://127.0.0.1:40123,DIRECT://127.0.0.1:{node.direct_port}"
    )
    assert props["inter.broker.listener.name"] == "DIRECT"
    assert props["min.insync.replicas"] == "1"
    assert cluster.bootstrap == ["127.0.0.1:40123"]
    assert cluster.direct_bootstrap == [f"127.0.0.1:{node.direct_port}"]
