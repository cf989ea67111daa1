#!/usr/bin/env bash
# The secured Kafka node of docker-compose.secured.yml: its storage formatted once, with the
# SCRAM users `admin` and `journey` whose passwords are Docker secrets, then the broker.
set -euo pipefail
admin=$(cat /run/secrets/kafka_admin_password)
journey=$(cat /run/secrets/journey_kafka_password)
if [ ! -f /var/lib/kafka/data/meta.properties ]; then
  /opt/kafka/bin/kafka-storage.sh format --cluster-id "${CLUSTER_ID:-journey-secured-0001}" \
    --config /etc/journey-kafka/server.properties \
    --add-scram "SCRAM-SHA-512=[name=admin,password=${admin}]" \
    --add-scram "SCRAM-SHA-512=[name=journey,password=${journey}]"
fi
exec /opt/kafka/bin/kafka-server-start.sh /etc/journey-kafka/server.properties
