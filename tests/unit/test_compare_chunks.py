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


def test_each_range_holds_exactly_the_ids_of_its_chunks() -> None:
    shift = 3
    chunks = [0, 1, 2, 7, 100, 101, 8191]
    lows, highs = id_ranges(chunks, shift)
    assert len(lows) == 4  # 0-2, 7, 100-101 and 8191 merged where adjacent
    assert lows[0] == uuid.UUID(int=0)
    assert highs[-1] == uuid.UUID(int=2**128 - 1)
    for low, high in zip(lows, highs, strict=True):
        assert chunk_of(low, shift) in chunks and chunk_of(high, shift) in chunks
        assert chunk_of(uuid.UUID(int=low.int - 1), shift) not in chunks if low.int else True
        assert chunk_of(uuid.UUID(int=high.int + 1), shift) not in chunks if high.int < 2**128 - 1 else True
    near = [*range(0, 12), *range(95, 106), *range(8180, 8192)]
    rest = 128 - MAX_CHUNK_BITS + shift
    draw = random.Random(11)  # noqa: S311 - test data, not a secret
    for _ in range(2000):
        value = uuid.UUID(int=(draw.choice(near) << rest) | draw.getrandbits(rest))
        inside = any(low <= value <= high for low, high in zip(lows, highs, strict=True))
        assert inside == (chunk_of(value, shift) in chunks)
