#!/usr/bin/env python3
# Memory under slow clients (issue 13, docs/security.md): python3 tests/memory/drip.py PID PORT N KEY
# PID: the service process; PORT: its API port; N: connections; KEY: an ingest key.
# Opens N connections that each announce a 100,000-byte body and then send
# one byte every 2 s (six times), samples the process's VmRSS every 0.25 s for
# 10 s, and prints the baseline, the peak and what is left afterwards.
import asyncio, sys, time, os
pid, port, n, key = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
def rss():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
base = rss()
peak = base
async def one(i):
    try:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(f"POST /api/events HTTP/1.1\r\nhost: x\r\nx-api-key: {key}\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n{{".encode())
        await w.drain()
        for _ in range(6):
            await asyncio.sleep(2)
            w.write(b" ")
            await w.drain()
        await r.read()
    except Exception:
        pass
async def sample():
    global peak
    for _ in range(40):
        peak = max(peak, rss())
        await asyncio.sleep(0.25)
async def main():
    tasks = [asyncio.create_task(one(i)) for i in range(n)]
    await sample()
    await asyncio.gather(*tasks)
asyncio.run(main())
print(f"baseline {base} MiB, peak {peak} MiB with {n} dripping connections, growth {peak-base} MiB, after {rss()} MiB")
