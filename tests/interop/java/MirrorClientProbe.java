import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.TreeSet;

import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.connect.mirror.RemoteClusterUtils;

/**
 * Asks Java MM2's connect-mirror-client about a cluster and prints the answers as one JSON object.
 *
 * Usage: MirrorClientProbe BOOTSTRAP REMOTE_ALIAS GROUP [ALIAS...]
 * translateOffsets(REMOTE_ALIAS, GROUP), heartbeatTopics, checkpointTopics, upstreamClusters, and
 * replicationHops for REMOTE_ALIAS and every further ALIAS.
 */
public final class MirrorClientProbe {
    public static void main(String[] args) throws Exception {
        Map<String, Object> props = new HashMap<>();
        props.put("bootstrap.servers", args[0]);
        String remote = args[1];
        String group = args[2];
        Duration timeout = Duration.ofSeconds(30);

        Map<TopicPartition, OffsetAndMetadata> offsets =
            RemoteClusterUtils.translateOffsets(props, remote, group, timeout);
        List<String> rows = new ArrayList<>();
        Map<String, TopicPartition> sorted = new TreeMap<>();
        for (TopicPartition tp : offsets.keySet()) {
            sorted.put(tp.topic() + "\u0000" + String.format("%010d", tp.partition()), tp);
        }
        for (TopicPartition tp : sorted.values()) {
            OffsetAndMetadata om = offsets.get(tp);
            rows.add("{\"topic\":" + str(tp.topic()) + ",\"partition\":" + tp.partition()
                + ",\"offset\":" + om.offset() + ",\"metadata\":" + str(om.metadata()) + "}");
        }
        List<String> hops = new ArrayList<>();
        for (int i = 1; i < args.length; i++) {
            if (i == 2) {
                continue;
            }
            hops.add(str(args[i]) + ":" + RemoteClusterUtils.replicationHops(props, args[i]));
        }
        System.out.println("{\"translate_offsets\":[" + String.join(",", rows) + "]"
            + ",\"replication_hops\":{" + String.join(",", hops) + "}"
            + ",\"upstream_clusters\":" + strs(RemoteClusterUtils.upstreamClusters(props))
            + ",\"heartbeat_topics\":" + strs(RemoteClusterUtils.heartbeatTopics(props))
            + ",\"checkpoint_topics\":" + strs(RemoteClusterUtils.checkpointTopics(props)) + "}");
    }

    private static String strs(Collection<String> values) {
        List<String> out = new ArrayList<>();
        for (String v : new TreeSet<>(values)) {
            out.add(str(v));
        }
        return "[" + String.join(",", out) + "]";
    }

    private static String str(String s) {
        StringBuilder b = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            if (c == '"' || c == '\\') {
                b.append('\\').append(c);
            } else if (c < 0x20) {
                b.append(String.format("\\u%04x", (int) c));
            } else {
                b.append(c);
            }
        }
        return b.append('"').toString();
    }
}
