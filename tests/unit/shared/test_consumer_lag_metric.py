"""rapport_consumer_lag (rapport_shared.metrics.refresh_consumer_lag): high watermark − position
per partition a consumer owns now; a partition not fetched from yet, or revoked while it is read,
has no value; a partition no longer owned disappears at the next refresh."""

from __future__ import annotations

import asyncio

from aiokafka import TopicPartition
from aiokafka.errors import IllegalStateError

from rapport_shared.metrics import CONSUMER_LAG, refresh_consumer_lag


class FakeKafkaConsumer:
    def __init__(self, state: dict[TopicPartition, tuple[int | None, int]]) -> None:
        self.state = state  # tp -> (highwater, position)

    def assignment(self) -> set[TopicPartition]:
        return set(self.state)

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.state[tp][0]

    async def position(self, tp: TopicPartition) -> int:
        if self.state[tp][1] < 0:
            raise IllegalStateError("revoked meanwhile")
        return self.state[tp][1]


class FakeSubscriber:
    def __init__(self, group_id: str, kc: FakeKafkaConsumer | None) -> None:
        self.group_id, self._kc = group_id, kc


def samples() -> dict[tuple[str, str, str], float]:
    return {(s.labels["group"], s.labels["topic"], s.labels["partition"]): s.value
            for m in CONSUMER_LAG.collect() for s in m.samples}


def test_lag_per_owned_partition_and_nothing_for_the_rest():
    a, b, c, d = (TopicPartition("rapport.intake", p) for p in range(4))
    kc = FakeKafkaConsumer({a: (10, 4), b: (7, 7), c: (None, 0), d: (5, -1)})
    subs = [FakeSubscriber("rapport-scheduler", kc), FakeSubscriber("rapport-idle", None)]
    asyncio.run(refresh_consumer_lag(subs))
    assert samples() == {("rapport-scheduler", "rapport.intake", "0"): 6, ("rapport-scheduler", "rapport.intake", "1"): 0}
    del kc.state[a]  # revoked: gone at the next refresh
    asyncio.run(refresh_consumer_lag(subs))
    assert samples() == {("rapport-scheduler", "rapport.intake", "1"): 0}
    asyncio.run(refresh_consumer_lag([]))
    assert samples() == {}
