#!/bin/sh
# Entry point of deploy/kafka/Dockerfile: writes server.properties from the environment, formats the storage
# on the first start, then runs the broker in the foreground (SIGTERM stops it cleanly).
set -eu
dir=/var/lib/kafka
props="$dir/server.properties"
port=$KAFKA_PORT
controller=$KAFKA_CONTROLLER_PORT
internal=$KAFKA_INTERNAL_PORT
host=$KAFKA_ADVERTISED_HOST

if [ -n "${KAFKA_SASL_PLAIN_USERS:-}" ]; then
    users=$(echo "$KAFKA_SASL_PLAIN_USERS" | tr ',' '\n' | sed -E 's/^([^:]+):(.*)$/ user_\1="\2"/' | tr -d '\n')
    cat >"$props" <<PROPS
listeners=CLIENT://0.0.0.0:$port,INTERNAL://0.0.0.0:$internal,CONTROLLER://127.0.0.1:$controller
advertised.listeners=${KAFKA_ADVERTISED_LISTENERS:-CLIENT://$host:$port,INTERNAL://$host:$internal}
inter.broker.listener.name=INTERNAL
listener.security.protocol.map=CONTROLLER:PLAINTEXT,INTERNAL:PLAINTEXT,CLIENT:SASL_PLAINTEXT
listener.name.client.sasl.enabled.mechanisms=PLAIN
listener.name.client.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required$users;
PROPS
else
    cat >"$props" <<PROPS
listeners=PLAINTEXT://0.0.0.0:$port,CONTROLLER://127.0.0.1:$controller
advertised.listeners=${KAFKA_ADVERTISED_LISTENERS:-PLAINTEXT://$host:$port}
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
PROPS
fi
cat >>"$props" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller
controller.listener.names=CONTROLLER
log.dirs=$dir/data
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=5
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=5
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
PROPS
# Any other broker settings, one per line (a later line wins over the same key above).
if [ -n "${KAFKA_EXTRA_PROPERTIES:-}" ]; then
    printf '%s\n' "$KAFKA_EXTRA_PROPERTIES" >>"$props"
fi

cp=/opt/kafka/libs/*
if [ ! -f "$dir/data/meta.properties" ]; then
    cluster_id=$(java -cp "$cp" kafka.tools.StorageTool random-uuid)
    java -cp "$cp" kafka.tools.StorageTool format -t "$cluster_id" -c "$props"
fi
exec java "-Xmx$KAFKA_HEAP" -Xss1m -XX:+UseG1GC -Djava.awt.headless=true -cp "$cp" kafka.Kafka "$props"
