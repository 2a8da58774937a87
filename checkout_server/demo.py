"""--demo: a small catalog, one ready customer, and a curl to paste."""

from pathlib import Path

DEMO_CONFIG_PATH = Path(__file__).parent / "demo" / "checkout.toml"


async def seed_demo(storage, table) -> dict:
    raise NotImplementedError


def print_demo(seeded: dict, base_url: str) -> None:
    raise NotImplementedError
