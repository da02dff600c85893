package org.apache.kafka.connect.mirror;

import java.io.InputStream;
import java.util.ArrayList;
import java.util.List;
import java.util.OptionalLong;
import java.util.TreeSet;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;

import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.common.TopicPartition;

/**
 * Computes JAVA_STORE_VECTORS of tests/unit/mm2/test_offset_translation.py with Java MM2's own
 * OffsetSyncStore (the class of the connect-mirror jar on the classpath, not a copy).
 *
 * It lives in OffsetSyncStore's package to use the store's package-private test hooks, as Kafka's own
 * OffsetSyncStoreTest does: the no-argument constructor (no Kafka client), backingStoreStart (here it
 * hands the store the syncs "read before the end" instead of reading the offset-syncs topic) and
 * syncFor (one slot). Syncs reach the store through handleRecord as serialized offset-sync records.
 *
 * Usage: java -cp CLASSES:MM2_LIBS/* org.apache.kafka.connect.mirror.OffsetSyncStoreVectors < SCENARIOS
 * SCENARIOS is a JSON array of {"name", "must_read", "read_at", "syncs": [[upstream, downstream], ...]}:
 * start(must_read) reads syncs[:read_at] before the end, the others arrive after it.
 * Prints one JSON object {name: {"runs": [[first slot, upstream, downstream], ...],
 * "translations": [[upstream, translated or null], ...]}}: runs lists each distinct slot (by identity)
 * at its first index; the probe offsets are Long.MIN_VALUE, 0, Long.MAX_VALUE and u-1, u, u+1 (long
 * arithmetic) for every len/12-th of the distinct upstream offsets (sorted, from the first) and the
 * last three.
 */
public final class OffsetSyncStoreVectors extends OffsetSyncStore {
    private static final TopicPartition TP = new TopicPartition("orders", 0);
    private static final String GROUP = "g";

    private final List<long[]> beforeEnd;
    private long recordOffset = 0;

    private OffsetSyncStoreVectors(List<long[]> beforeEnd) {
        this.beforeEnd = beforeEnd;
    }

    @Override
    void backingStoreStart() {
        for (long[] sync : beforeEnd) {
            feed(sync);
        }
    }

    private void feed(long[] sync) {
        OffsetSync offsetSync = new OffsetSync(TP, sync[0], sync[1]);
        handleRecord(new ConsumerRecord<>(
            "mm2-offset-syncs.B.internal", 0, recordOffset++, offsetSync.recordKey(), offsetSync.recordValue()));
    }

    static List<Long> probes(List<long[]> syncs) {
        TreeSet<Long> distinct = new TreeSet<>();
        for (long[] sync : syncs) {
            distinct.add(sync[0]);
        }
        List<Long> ups = new ArrayList<>(distinct);
        int step = Math.max(1, ups.size() / 12);
        List<Long> picked = new ArrayList<>();
        for (int i = 0; i < ups.size(); i += step) {
            picked.add(ups.get(i));
        }
        picked.addAll(ups.subList(Math.max(0, ups.size() - 3), ups.size()));
        TreeSet<Long> probes = new TreeSet<>(List.of(Long.MIN_VALUE, 0L, Long.MAX_VALUE));
        for (long u : picked) {
            probes.add(u - 1);
            probes.add(u);
            probes.add(u + 1);
        }
        return new ArrayList<>(probes);
    }

    static ObjectNode run(ObjectMapper mapper, boolean mustRead, int readAt, List<long[]> syncs) {
        int split = Math.min(readAt, syncs.size());
        OffsetSyncStoreVectors store = new OffsetSyncStoreVectors(syncs.subList(0, split));
        if (readAt < syncs.size()) {
            store.start(mustRead);
        } else {
            store.initializationMustReadToEnd = mustRead;  // the end is never reached: no start()
            store.backingStoreStart();
        }
        for (long[] sync : syncs.subList(split, syncs.size())) {
            store.feed(sync);
        }
        ObjectNode out = mapper.createObjectNode();
        ArrayNode runs = out.putArray("runs");
        OffsetSync previous = null;
        for (int i = 0; i < OffsetSyncStore.SYNCS_PER_PARTITION; i++) {
            OffsetSync slot = store.syncFor(TP, i);
            if (slot != previous) {
                for (int j = 0; j < i; j++) {
                    if (store.syncFor(TP, j) == slot) {
                        throw new IllegalStateException("slot " + i + " repeats slot " + j + " after another sync");
                    }
                }
                runs.addArray().add(i).add(slot.upstreamOffset()).add(slot.downstreamOffset());
            }
            previous = slot;
        }
        ArrayNode translations = out.putArray("translations");
        for (long g : probes(syncs)) {
            OptionalLong translated = store.translateDownstream(GROUP, TP, g);
            ArrayNode row = translations.addArray().add(g);
            if (translated.isPresent()) {
                row.add(translated.getAsLong());
            } else {
                row.addNull();
            }
        }
        return out;
    }

    public static void main(String[] args) throws Exception {
        ObjectMapper mapper = new ObjectMapper();
        JsonNode scenarios;
        try (InputStream in = args.length > 0 ? new java.io.FileInputStream(args[0]) : System.in) {
            scenarios = mapper.readTree(in);
        }
        ObjectNode result = mapper.createObjectNode();
        for (JsonNode scenario : scenarios) {
            List<long[]> syncs = new ArrayList<>();
            for (JsonNode sync : scenario.get("syncs")) {
                syncs.add(new long[] {sync.get(0).asLong(), sync.get(1).asLong()});
            }
            result.set(scenario.get("name").asText(),
                run(mapper, scenario.get("must_read").asBoolean(), scenario.get("read_at").asInt(), syncs));
        }
        System.out.println(mapper.writeValueAsString(result));
    }
}
