"""Record digests and the classification of differences between a source partition and its copy."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from mirror.migration.digest import (
    Difference,
    Entry,
    KeyedComparison,
    Outcome,
    SequenceComparison,
    compare,
    record_digest,
)


def entries(digests: list[bytes], first_offset: int = 0, step: int = 1) -> list[Entry]:
    return [Entry(first_offset + i * step, d) for i, d in enumerate(digests)]


def unique(n: int, tag: bytes = b"r") -> list[bytes]:
    return [tag + i.to_bytes(4, "big") for i in range(n)]


# --- digests ---------------------------------------------------------------------------------------------


def test_a_digest_covers_key_value_headers_and_timestamp() -> None:
    base = record_digest(b"k", b"v", [("h", b"1")], 5)
    assert base == record_digest(b"k", b"v", [("h", b"1")], 5)
    variants = [
        record_digest(None, b"v", [("h", b"1")], 5),
        record_digest(b"", b"v", [("h", b"1")], 5),
        record_digest(b"k", None, [("h", b"1")], 5),
        record_digest(b"k", b"", [("h", b"1")], 5),
        record_digest(b"k", b"v", [("h", b"2")], 5),
        record_digest(b"k", b"v", [("h", None)], 5),
        record_digest(b"k", b"v", [("h", b"1"), ("h", b"1")], 5),  # a duplicated header
        record_digest(b"k", b"v", [], 5),
        record_digest(b"k", b"v", [("h", b"1")], 6),
        record_digest(b"kv", b"", [("h", b"1")], 5),  # framing: bytes moved between fields
    ]
    assert base not in variants
    assert len(set(variants)) == len(variants)


def test_header_order_matters() -> None:
    assert record_digest(None, None, [("a", b""), ("b", b"")], 0) != record_digest(
        None, None, [("b", b""), ("a", b"")], 0
    )


# --- each defect, at its offsets ---------------------------------------------------------------------------


def test_identical_sequences_match_with_the_offset_mapping_at_both_ends() -> None:
    digests = unique(50)
    outcome = compare(entries(digests, 10), entries(digests, 100, step=2))  # exactly-once: markers between
    assert outcome.identical and outcome.matched == 50
    assert outcome.first == (10, 100) and outcome.last == (59, 198)


def test_a_deleted_record_is_missing_at_its_source_offset() -> None:
    digests = unique(20)
    outcome = compare(entries(digests), entries(digests[:7] + digests[8:]))
    assert outcome.differences == [Difference("missing", 7, None)]


def test_an_extra_record_is_reported_at_its_target_offset() -> None:
    digests = unique(20)
    outcome = compare(entries(digests), entries([*digests[:7], b"planted", *digests[7:]]))
    assert outcome.differences == [Difference("extra", None, 7)]


def test_a_changed_record_differs_at_both_offsets() -> None:
    digests = unique(20)
    outcome = compare(entries(digests), entries([*digests[:7], b"changed", *digests[8:]], 1000))
    assert outcome.differences == [Difference("differing", 7, 1007)]


def test_a_swapped_pair_is_reordered() -> None:
    digests = unique(20)
    swapped = [*digests[:7], digests[8], digests[7], *digests[9:]]
    outcome = compare(entries(digests), entries(swapped))
    assert outcome.counts == {"reordered": 1}
    (diff,) = outcome.differences
    assert {diff.source_offset, diff.target_offset} <= {7, 8}


def test_a_recopied_run_is_duplicate_not_extra() -> None:
    digests = unique(30)
    outcome = compare(entries(digests), entries(digests[:20] + digests[15:20] + digests[20:]))
    assert outcome.counts == {"duplicate": 5}
    assert [d.target_offset for d in outcome.differences] == [20, 21, 22, 23, 24]


def test_target_records_after_the_range_are_not_compared() -> None:
    digests = unique(30)
    outcome = compare(entries(digests[:20]), entries(digests))  # the target ran ahead of the progress
    assert outcome.identical and outcome.target_records == 20


def test_records_missing_at_the_end_of_the_target() -> None:
    digests = unique(30)
    outcome = compare(entries(digests), entries(digests[:25]))
    assert [d.source_offset for d in outcome.differences] == [25, 26, 27, 28, 29]
    assert outcome.counts == {"missing": 5}


def test_target_records_the_source_deleted_are_outside_the_range_when_allowed() -> None:
    digests = unique(30)
    older = entries(digests)[:10]
    assert compare(entries(digests)[10:], older + entries(digests)[10:], head_unmatched_ok=True).identical
    outcome = compare(entries(digests)[10:], older + entries(digests)[10:])
    assert outcome.counts == {"extra": 10}


def test_an_empty_source_is_identical_and_an_empty_target_misses_everything() -> None:
    assert compare([], entries(unique(3))).identical
    assert compare(entries(unique(3)), []).counts == {"missing": 3}


def test_entirely_different_data_is_all_missing() -> None:
    outcome = compare(entries(unique(500, b"a")), entries(unique(500, b"b")), window=100)
    assert outcome.counts == {"missing": 500}


def test_a_long_extra_run_is_found_past_the_small_windows() -> None:
    digests = unique(3000)
    planted = [b"x" + i.to_bytes(4, "big") for i in range(2000)]
    outcome = compare(entries(digests), entries(digests[:100] + planted + digests[100:]))
    assert outcome.counts == {"extra": 2000}
    assert outcome.matched == 3000


# --- properties ------------------------------------------------------------------------------------------

DEFECTS = ("delete", "insert", "change", "swap")


@st.composite
def one_defect(draw: st.DrawFn) -> tuple[list[bytes], list[bytes], str, int]:
    n = draw(st.integers(2, 300))
    digests = unique(n)
    kind = draw(st.sampled_from(DEFECTS))
    i = draw(st.integers(0, n - 2))
    target = list(digests)
    if kind == "delete":
        del target[i]
    elif kind == "insert":
        target.insert(i, b"new")
    elif kind == "change":
        target[i] = b"changed"
    else:
        target[i], target[i + 1] = target[i + 1], target[i]
    return digests, target, kind, i


@settings(max_examples=300, deadline=None)
@given(one_defect(), st.integers(1, 50), st.sampled_from([4, 50, 10_000]))
def test_each_planted_defect_is_found_by_position(
    case: tuple[list[bytes], list[bytes], str, int], chunk: int, window: int
) -> None:
    source, target, kind, i = case
    outcome = _streamed(entries(source), entries(target), chunk, window)
    expected = {
        "delete": [Difference("missing", i, None)],
        "insert": [Difference("extra", None, i)],
        "change": [Difference("differing", i, i)],
    }
    if kind == "swap":
        assert outcome.counts == {"reordered": 1}
        assert {outcome.differences[0].source_offset, outcome.differences[0].target_offset} <= {i, i + 1}
    else:
        assert outcome.differences == expected[kind]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(0, 30), max_size=200),
    st.lists(st.integers(0, 30), max_size=200),
    st.integers(1, 40),
    st.sampled_from([1, 8, 10_000]),
)
def test_every_record_is_accounted_for_and_feeding_in_chunks_changes_nothing(
    src: list[int], tgt: list[int], chunk: int, window: int
) -> None:
    """Arbitrary sequences (with repeated digests): each source record is matched, missing, differing or
    reordered exactly once; each compared target record likewise; chunked feeding gives the same result."""
    source = entries([bytes([x]) for x in src])
    target = entries([bytes([x]) for x in tgt], 1000)
    whole = compare(source, target, window=window)
    streamed = _streamed(source, target, chunk, window)
    assert (streamed.counts, streamed.matched, streamed.differences) == (
        whole.counts,
        whole.matched,
        whole.differences,
    )
    c = whole.counts
    assert whole.source_records == len(source)
    assert whole.matched + c["missing"] + c["differing"] + c["reordered"] == len(source)
    assert (
        whole.matched + c["extra"] + c["differing"] + c["reordered"] + c["duplicate"] == whole.target_records
    )
    assert whole.target_records <= len(target)
    assert (src == tgt) <= whole.identical  # equal sequences are identical


def _streamed(source: list[Entry], target: list[Entry], chunk: int, window: int) -> Outcome:
    comparison = SequenceComparison(window)
    s = t = 0
    rnd = random.Random(chunk)
    while not comparison.done:
        if comparison.wants_source and s < len(source):
            n = rnd.randint(1, chunk)
            comparison.add_source(source[s : s + n])
            s += n
        elif comparison.wants_source:
            comparison.end_source()
        if comparison.wants_target and t < len(target):
            comparison.add_target(target[t : t + chunk])
            t += chunk
        elif comparison.wants_target:
            comparison.end_target()
        comparison.step()
    return comparison.finish()


# --- compacted topics: by key ------------------------------------------------------------------------------


def keyed(
    end: int, source: list[tuple[bytes, int, bytes | None]], target: list[tuple[bytes, int, bytes | None]]
) -> Outcome:
    comparison = KeyedComparison(end)
    for key, offset, digest in source:
        comparison.add_source(key, offset, digest)
    for key, offset, digest in target:
        comparison.add_target(key, offset, digest)
    return comparison.finish()


def test_compacted_partitions_compare_the_latest_record_per_key() -> None:
    source = [(b"a", 0, b"1"), (b"b", 1, b"1"), (b"a", 2, b"2"), (b"c", 3, b"1"), (b"c", 4, None)]
    # the target compacted differently: the old a=1 is gone, c's tombstone as well
    assert keyed(5, source, [(b"b", 1, b"1"), (b"a", 2, b"2")]).identical
    outcome = keyed(5, source, [(b"b", 1, b"9"), (b"a", 2, b"1"), (b"d", 7, b"1")])
    assert outcome.differences == [
        Difference("extra", None, 7),
        Difference("differing", 1, 1),
        Difference("differing", 2, 2),
    ]
    assert keyed(5, source, [(b"a", 2, b"2")]).differences == [Difference("missing", 1, None)]


def test_compacted_keys_whose_latest_record_is_past_the_progress_are_not_compared() -> None:
    source = [(b"a", 0, b"1"), (b"a", 5, b"2"), (b"b", 6, b"1")]
    assert keyed(5, source, [(b"a", 0, b"1")]).identical


@st.composite
def several_defects(draw: st.DrawFn) -> tuple[list[bytes], list[bytes], list[Difference], int]:
    """Up to 8 defects, each at least 3 records from the next, on distinct records."""
    n = draw(st.integers(10, 400))
    source = unique(n)
    positions = sorted(draw(st.sets(st.integers(0, n - 2), max_size=8)))
    kept: list[int] = []
    for i in positions:
        if not kept or i - kept[-1] >= 3:
            kept.append(i)
    kinds = [draw(st.sampled_from(DEFECTS)) for _ in kept]
    target: list[bytes] = []
    expected: list[Difference] = []
    swaps = 0
    defects = dict(zip(kept, kinds, strict=True))
    i = 0
    while i < n:
        kind = defects.get(i)
        if kind == "delete":
            expected.append(Difference("missing", i, None))
        elif kind == "insert":
            expected.append(Difference("extra", None, len(target)))
            target += [b"new" + i.to_bytes(4, "big"), source[i]]
        elif kind == "change":
            expected.append(Difference("differing", i, len(target)))
            target.append(b"changed" + i.to_bytes(4, "big"))
        elif kind == "swap":
            swaps += 1
            target += [source[i + 1], source[i]]
            i += 1
        else:
            target.append(source[i])
        i += 1
    return source, target, expected, swaps


@settings(max_examples=300, deadline=None)
@given(several_defects(), st.integers(1, 64), st.sampled_from([8, 10_000]))
def test_several_defects_are_each_found_by_position(
    case: tuple[list[bytes], list[bytes], list[Difference], int], chunk: int, window: int
) -> None:
    source, target, expected, swaps = case
    outcome = _streamed(entries(source), entries(target), chunk, window)
    found = [d for d in outcome.differences if d.kind != "reordered"]
    assert sorted(found, key=repr) == sorted(expected, key=repr)
    assert outcome.counts["reordered"] == swaps
