"""Load generator: a separate process that fires HTTP requests and reports what it saw.

Reads a JSON job on stdin: {"base_url", "concurrency", "requests": [{"method", "path",
"token", "body"}]} and prints {"elapsed", "statuses": {code: n}, "latencies_ms": [...], "cpu_s"}
(`cpu_s`: this process's own CPU over the run, so the bench can tell its share of the machine).
"""

import asyncio
import json
import sys
import time
from collections import Counter

import aiohttp


async def run(job: dict) -> dict:
    queue: asyncio.Queue = asyncio.Queue()
    for req in job["requests"]:
        queue.put_nowait(req)
    statuses: Counter = Counter()
    latencies: list[float] = []
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(job["base_url"], timeout=timeout) as session:
        async def worker():
            while True:
                try:
                    req = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                headers = {"Authorization": f"Token {req['token']}"} if req.get("token") else {}
                started = time.perf_counter()
                async with session.request(req["method"], req["path"], json=req.get("body"),
                                           headers=headers) as resp:
                    await resp.read()
                    statuses[resp.status] += 1
                latencies.append((time.perf_counter() - started) * 1000)

        started, cpu0 = time.perf_counter(), time.process_time()
        await asyncio.gather(*(worker() for _ in range(job["concurrency"])))
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu0
    return {"elapsed": elapsed, "statuses": dict(statuses), "latencies_ms": latencies, "cpu_s": cpu}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(run(json.load(sys.stdin)))))
