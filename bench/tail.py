"""Following topics while a benchmark runs: one plain aiokafka consumer kept open (no consumer
group, nothing committed), from the beginning or from the current end. Waiting for a record then
costs a fetch of what is new, not a re-read of the whole topic (``rapport_testing.kafka.read_all``)
— which, with thousands of episodes on the topics, takes CPU from the services being measured."""

from __future__ import annotations

import time

from aiokafka import AIOKafkaConsumer, TopicPartition

from rapport_testing.kafka import Record, _partitions, record_of


class Tail:
    def __init__(self, bootstrap: str, *topics: str, from_end: bool = False) -> None:
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                         auto_offset_reset="earliest")
        self.topics, self.from_end = topics, from_end
        self.records: list[Record] = []  # everything read so far, in arrival order
        self.tps: list[TopicPartition] = []

    async def __aenter__(self) -> "Tail":
        await self.consumer.start()
        try:
            for topic in self.topics:
                self.tps += [TopicPartition(topic, p) for p in sorted(await _partitions(self.consumer, topic))]
            self.consumer.assign(self.tps)
            if self.from_end:
                await self.consumer.seek_to_end(*self.tps)
            else:
                await self.consumer.seek_to_beginning(*self.tps)
        except BaseException:
            await self.consumer.stop()
            raise
        return self

    async def __aexit__(self, *exc) -> None:
        await self.consumer.stop()

    async def poll(self, timeout_s: float = 0.5) -> list[Record]:
        """What arrived since the last call (waits up to ``timeout_s`` when nothing has)."""
        new = [record_of(m) for msgs in (await self.consumer.getmany(timeout_ms=int(timeout_s * 1000))).values()
               for m in msgs]
        self.records += new
        return new

    async def to_end(self, timeout: float = 120) -> list[Record]:
        """Everything up to the topics' current end (fails rather than return part of it)."""
        ends = await self.consumer.end_offsets(self.tps)
        deadline = time.monotonic() + timeout
        behind = set(ends)
        while behind:
            behind = {tp for tp in behind if await self.consumer.position(tp) < ends[tp]}
            if behind and time.monotonic() > deadline:
                raise TimeoutError(f"{', '.join(self.topics)} not read to the end after {timeout:.0f} s")
            if behind:
                await self.poll()
        return self.records


async def read_to_end(bootstrap: str, topic: str, timeout: float = 120) -> list[Record]:
    """Every record now in ``topic`` (``read_all`` stops at 30 s and returns what it has)."""
    async with Tail(bootstrap, topic) as tail:
        return await tail.to_end(timeout)

