"""Plugins' own documents (`PluginDocuments`): every operation, on every backend."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from checkout_server.plugin import DocumentExists


@pytest.mark.gen_test(timeout=60)
async def test_insert_get_and_delete_by_id(backend):
    storage = await backend.storage()
    docs = storage.plugin_documents("acme_pay")
    at = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    stored = await docs.insert({"_id": "pay_1", "amount": 2500, "state": "created", "at": at,
                                "lines": [{"sku": "A", "n": 2}], "meta": {"k": "v"}})
    assert stored["_id"] == "pay_1"
    got = await docs.get("pay_1")
    assert got == {"_id": "pay_1", "amount": 2500, "state": "created", "at": at,
                   "lines": [{"sku": "A", "n": 2}], "meta": {"k": "v"}}
    with pytest.raises(DocumentExists):
        await docs.insert({"_id": "pay_1"})
    generated = await docs.insert({"state": "created"})
    assert isinstance(generated["_id"], str) and len(generated["_id"]) >= 16
    assert (await docs.get(generated["_id"]))["state"] == "created"
    with pytest.raises(TypeError):  # string ids only: backends disagree on "7" against 7
        await docs.insert({"_id": 7})
    assert await docs.delete("pay_1") is True
    assert await docs.delete("pay_1") is False
    assert await docs.get("pay_1") is None


@pytest.mark.gen_test(timeout=60)
async def test_each_plugin_has_its_own_documents(backend):
    storage = await backend.storage()
    await storage.plugin_documents("acme_pay").insert({"_id": "x", "owner": "acme"})
    await storage.plugin_documents("other-plugin").insert({"_id": "x", "owner": "other"})
    assert (await storage.plugin_documents("acme_pay").get("x"))["owner"] == "acme"
    assert (await storage.plugin_documents("other-plugin").get("x"))["owner"] == "other"
    # Nothing of the core's: a plugin named like a core collection still gets its own.
    await storage.plugin_documents("orders").insert({"_id": "ORD-2026-000001"})
    assert await storage.orders.get("ORD-2026-000001") is None


@pytest.mark.gen_test(timeout=60)
async def test_find_by_equal_top_level_fields_in_id_order(backend):
    storage = await backend.storage()
    docs = storage.plugin_documents("acme_pay")
    for n, state in ((3, "paid"), (1, "created"), (2, "paid"), (4, None)):
        await docs.insert({"_id": f"p{n}", "state": state, "n": n, "test": True})
    assert [d["_id"] for d in await docs.find()] == ["p1", "p2", "p3", "p4"]
    assert [d["_id"] for d in await docs.find({"state": "paid"})] == ["p2", "p3"]
    assert [d["_id"] for d in await docs.find({"state": "paid", "n": 3})] == ["p3"]
    assert [d["_id"] for d in await docs.find({"state": None})] == ["p4"]
    assert [d["_id"] for d in await docs.find({"test": True}, limit=2)] == ["p1", "p2"]
    assert await docs.find({"state": "refunded"}) == []


@pytest.mark.gen_test(timeout=60)
async def test_a_guarded_update_wins_once(backend):
    storage = await backend.storage()
    docs = storage.plugin_documents("acme_pay")
    await docs.insert({"_id": "pay_1", "state": "created", "tries": 0})
    other = (await backend.another_client()).plugin_documents("acme_pay")
    decided = await asyncio.gather(
        docs.update("pay_1", {"state": "paid"}, where={"state": "created"}),
        other.update("pay_1", {"state": "cancelled"}, where={"state": "created"}))
    winners = [d for d in decided if d is not None]
    assert len(winners) == 1 and winners[0]["state"] in ("paid", "cancelled")
    assert (await docs.get("pay_1"))["state"] == winners[0]["state"]
    # Unguarded: sets the fields, keeps the others, answers the document as changed.
    changed = await docs.update("pay_1", {"tries": 1, "note": {"by": "admin"}})
    assert changed == {"_id": "pay_1", "state": winners[0]["state"], "tries": 1, "note": {"by": "admin"}}
    assert await docs.update("pay_unknown", {"state": "paid"}) is None


@pytest.mark.gen_test(timeout=60)
async def test_no_operator_and_no_field_path_gets_through(backend):
    storage = await backend.storage()
    docs = storage.plugin_documents("acme_pay")
    await docs.insert({"_id": "pay_1", "state": "created"})
    for where in ({"state": {"$ne": "x"}}, {"$where": "1"}, {"a.b": 1}, {"state": ["created"]}):
        with pytest.raises((TypeError, ValueError)):
            await docs.find(where)
        with pytest.raises((TypeError, ValueError)):
            await docs.update("pay_1", {"state": "paid"}, where=where)
    for changes in ({"$set": {"state": "paid"}}, {"a.b": 1}, {"_id": "other"}, {}):
        with pytest.raises(ValueError):
            await docs.update("pay_1", changes)
    for bad_id in ({"$gt": ""}, None, True, 1.5, 7, ""):
        with pytest.raises(TypeError):
            await docs.get(bad_id)
    with pytest.raises(ValueError):
        await docs.insert({"_id": "pay_2", "$set": 1})
    with pytest.raises(ValueError):
        storage.plugin_documents("../orders")
    assert await docs.find() == [{"_id": "pay_1", "state": "created"}]


@pytest.mark.gen_test(timeout=60)
async def test_a_version_guarded_read_and_write_loses_no_concurrent_change(backend):
    """What the sandbox's refunds rely on: read, then update `where` the version is unchanged."""
    storage = await backend.storage()
    await storage.plugin_documents("acme_pay").insert({"_id": "pay_1", "total": 0, "parts": {}, "version": 0})
    clients = [await backend.another_client() for _ in range(3)] if backend.wire else [storage] * 3

    async def add(n: int) -> None:
        docs = clients[n % 3].plugin_documents("acme_pay")
        while True:
            doc = await docs.get("pay_1")
            if await docs.update("pay_1", {"total": doc["total"] + 100, "parts": {**doc["parts"], f"p{n}": 100},
                                           "version": doc["version"] + 1}, where={"version": doc["version"]}):
                return

    await asyncio.gather(*(add(n) for n in range(6)))
    doc = await storage.plugin_documents("acme_pay").get("pay_1")
    assert doc["total"] == 600 and len(doc["parts"]) == 6 and doc["version"] == 6
