"""Several guarded single-document updates in one round trip."""

from pymongo import UpdateOne


async def guarded_updates(collection, ops: list[tuple[dict, dict]]) -> int:
    """Apply each (filter, update) once, unordered; returns how many matched and changed.

    One unordered bulk_write on a real driver (nx-27017 and MongoDB both report an exact
    modified count for it). mongomock cannot run a bulk_write built by current pymongo
    (its UpdateOne passes `sort`), so there the same updates run one by one.
    """
    if not ops:
        return 0
    if _is_mongomock(collection):
        modified = 0
        for query, update in ops:
            result = await collection.update_one(query, update)
            modified += result.modified_count
        return modified
    result = await collection.bulk_write([UpdateOne(q, u) for q, u in ops], ordered=False)
    return result.modified_count


def _is_mongomock(collection) -> bool:
    # mongomock-motor's collection class is a subclass named after motor's.
    return any(cls.__module__.startswith("mongomock") for cls in type(collection).__mro__)
