"""The chunking a comparison uses: pure arithmetic on ids, so it is checked without a server."""

from __future__ import annotations

import random
import uuid

from pgsync_dossier.compare import MAX_CHUNK_BITS, chunk_shift, id_ranges


def chunk_of(value: uuid.UUID, shift: int) -> int:
    """The SQL side's chunk: the id's top 16 bits, shifted right."""
    return (value.int >> (128 - MAX_CHUNK_BITS)) >> shift


def test_a_small_list_is_one_chunk_and_a_large_one_eight_to_sixteen_rows_per_chunk() -> None:
    assert chunk_shift(1) == MAX_CHUNK_BITS
    for rows in (1_000, 100_000, 300_000, 500_000):
        assert 8 <= rows / 2 ** (MAX_CHUNK_BITS - chunk_shift(rows)) <= 16
    assert 2 ** (MAX_CHUNK_BITS - chunk_shift(100_000)) == 8_192
    assert chunk_shift(10**9) == 0  # 65,536 chunks at most


def test_each_range_holds_exactly_the_id_prefixes_of_its_chunks() -> None:
    shift = 3
    chunks = [0, 1, 2, 7, 100, 101, 8191]
    lows, highs = id_ranges(chunks, shift)
    assert len(lows) == 4  # 0-2, 7, 100-101 and 8191 merged where adjacent
    assert lows[0] == 0 and highs[-1] == 2**MAX_CHUNK_BITS - 1
    for prefix in range(2**MAX_CHUNK_BITS):
        inside = any(low <= prefix <= high for low, high in zip(lows, highs, strict=True))
        assert inside == (prefix >> shift in chunks)


def test_a_range_of_prefixes_is_the_range_of_ids_the_query_scans() -> None:
    """range_rows scans each range from its lowest prefix followed by zeros to its highest
    followed by ones: exactly the ids whose chunk is one of the range's."""
    shift = 3
    chunks = [5, 6, 900]
    lows, highs = id_ranges(chunks, shift)
    rest = 128 - MAX_CHUNK_BITS
    draw = random.Random(11)  # noqa: S311 - test data, not a secret
    for _ in range(2000):
        value = uuid.UUID(
            int=(draw.choice([*range(30, 60), *range(7190, 7215)]) << rest) | draw.getrandbits(rest)
        )
        scanned = any(
            uuid.UUID(f"{low:04x}" + "0" * 28) <= value <= uuid.UUID(f"{high:04x}" + "f" * 28)
            for low, high in zip(lows, highs, strict=True)
        )
        assert scanned == (chunk_of(value, shift) in chunks)
