#!/usr/bin/env bash
# The ACLs of journey's user for docker-compose.secured.yml: what `journey_acls` lists
# (docs/secured.md), for the topics of JOURNEY_TOPIC_PREFIX (empty here) and the
# app id `journey`, granted over the node's own listener.
set -euo pipefail
acl() { /opt/kafka/bin/kafka-acls.sh --bootstrap-server localhost:9092 --add --allow-principal User:journey "$@"; }
topics="touchpoints purchases surveys shares identities erasures ppp-updates referral-links dead-letters impact erasure-log merges"
for topic in $topics; do
  acl --topic "$topic" --operation Read --operation Write --operation Create --operation Describe
done
acl --topic journey- --resource-pattern-type prefixed \
  --operation Read --operation Write --operation Create --operation Describe
acl --group journey --operation Read --operation Describe
acl --transactional-id journey- --resource-pattern-type prefixed --operation Write --operation Describe
acl --cluster --operation IdempotentWrite
