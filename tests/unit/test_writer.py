"""The background writer: order kept, consecutive inserts batched, one bad row loses nothing else."""

from __future__ import annotations

from centralino.storage.writer import Writer


class FakeStore:
    """Records each call: a unit test of the writer's own logic, not of the database."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[object, ...]]] = []

    async def add(self, *rows: object) -> None:
        if "bad" in rows:
            raise ValueError("constraint violated")
        self.calls.append(("add", rows))

    add.batches = True  # type: ignore[attr-defined]

    async def update(self, *values: object) -> None:
        self.calls.append(("update", values))


async def test_consecutive_adds_are_one_write_and_order_is_kept():
    store, writer = FakeStore(), Writer()
    for item in ("a", "b"):
        writer.put(store.add, item)
    writer.put(store.update, "u")
    writer.put(store.add, "c")
    writer.start()
    await writer.drain()
    await writer.close()
    assert store.calls == [("add", ("a", "b")), ("update", ("u",)), ("add", ("c",))]


async def test_a_bad_row_in_a_batch_loses_only_itself():
    store, writer = FakeStore(), Writer()
    for item in ("a", "bad", "c"):
        writer.put(store.add, item)
    writer.start()
    await writer.drain()
    await writer.close()
    assert store.calls == [("add", ("a",)), ("add", ("c",))]
