"""Lanes: hashes fed in order on worker threads (verify/warc.py), bounded in what they hold."""

from __future__ import annotations

import hashlib
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from verify.warc import LANE_BYTES, LANE_MIN, Lane


def test_lanes_hash_in_order_whatever_the_slice_sizes():
    rnd = random.Random(7)
    data = rnd.randbytes(24 << 20)
    # Large slices go to the pool, small ones inline: the order must hold across both.
    cuts, pos = [], 0
    while pos < len(data):
        n = rnd.choice([1, 100, LANE_MIN - 1, LANE_MIN, 1 << 20, 3 << 20])
        cuts.append(data[pos : pos + n])
        pos += n
    with ThreadPoolExecutor(3) as pool:
        lanes = [Lane(hashlib.sha256(), pool) for _ in range(3)]
        for c in cuts:
            for lane in lanes:
                lane.update(c)
        got = [lane.digest() for lane in lanes]
    assert got == [hashlib.sha256(data).digest()] * 3
    # control: the same slices without a pool give the same digest
    inline = Lane(hashlib.sha256(), None)
    for c in cuts:
        inline.update(c)
    assert inline.digest() == got[0]


class _SlowHash:
    """Counts what the lane has taken but not yet hashed; each update takes a while."""

    def __init__(self) -> None:
        self.h = hashlib.sha256()

    def update(self, data: bytes) -> None:
        time.sleep(0.002)
        self.h.update(data)

    def digest(self) -> bytes:
        return self.h.digest()


def test_a_slow_lane_holds_back_the_reader_instead_of_queueing_without_bound():
    slice_ = bytes(1 << 20)
    with ThreadPoolExecutor(1) as pool:
        lane = Lane(_SlowHash(), pool)
        most = 0
        for _ in range(80):
            lane.update(slice_)
            with lane._lock:
                most = max(most, sum(len(x) for x in lane._queue))
        digest = lane.digest()
    assert digest == hashlib.sha256(slice_ * 80).digest()
    assert 0 < most <= LANE_BYTES  # the reader ran ahead, and no further than the bound


def test_update_returns_while_the_lane_hashes():
    # The point of a lane: the caller goes on (inflating, parsing) while the hash runs.
    release, hashed = threading.Event(), []

    class Held(_SlowHash):
        def update(self, data: bytes) -> None:
            release.wait(10)
            self.h.update(data)
            hashed.append(len(data))

    with ThreadPoolExecutor(1) as pool:
        lane = Lane(Held(), pool)
        lane.update(bytes(LANE_MIN))
        lane.update(bytes(LANE_MIN))
        ahead = list(hashed)  # had update waited for its hash, both would be in by now
        release.set()
        assert lane.digest() == hashlib.sha256(bytes(2 * LANE_MIN)).digest()
    assert ahead == [] and hashed == [LANE_MIN, LANE_MIN]
