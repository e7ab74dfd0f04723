"""The web under polling load: 100 clients polling once a second, as open pages do.

One asyncio process (httpx.AsyncClient) plays every client, so the clients stay light. Each
client polls what a page polls: the runs page (/api/runs/table and /api/queue), or a run's
page (/api/runs/{id}); the client keeps the last ETag per URL and sends If-None-Match, as
static/js/api.js does. The web is uvicorn serving backend.main on 127.0.0.1, one process.

    python bench/web_under_load.py [--clients 100] [--seconds 60] [--train] [--epochs 4]

--train also starts one Celery worker and runs a small finetune on `demo` twice, alone and
under the load (which then lasts until that training ends, --seconds at least), and
compares its training time (and images/s).

Prints per-endpoint p50/p95/max latency, errors, the 304 share and the web process's CPU
milliseconds per request (its own user+system time over the load, from /proc); before the
load, the web CPU of one unchanged poll (2,000 in a row from one keep-alive client). Last line
of stdout: one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jobspec.status import RunStatus  # noqa: E402
from tests.stack import Workers, stack_env, start_web, wait_for  # noqa: E402
from worker.system_metrics import cpu_seconds  # noqa: E402

TARGET_CPU_MS_304 = 0.5


def seed_runs() -> list[int]:
    """A few finished runs with metrics and one running run, straight into the store."""
    from store.datasets import service as datasets_service
    from store.db import session_scope, upgrade_schema
    from store.runs import attempts
    from store.runs import metrics as metrics_service
    from store.runs import service as runs_service
    from worker.datasets import ensure_builtin

    upgrade_schema()
    ensure_builtin("demo")
    ids = []
    with session_scope() as session:
        dataset_id = datasets_service.get_by_name(session, "demo").id
        for i in range(20):
            run = runs_service.create_run(
                session=session, kind="finetune", name=f"load {i}", tags=[], params={},
                seed=0, dataset_id=dataset_id, parent_run_id=None, group_id=None,
            )  # fmt: skip
            session.flush()
            attempts.claim(
                session=session, run_id=run.id, worker_host="bench", device="CPU", versions={}
            )
            for epoch in range(1, 21):
                metrics_service.log_epoch(
                    session=session, run_id=run.id, stage="finetune", step=epoch,
                    values={"loss": 1 / epoch, "val_accuracy": 0.5 + epoch / 50},
                )  # fmt: skip
            if i:
                done = RunStatus.SUCCEEDED
                attempts.finish(session=session, run_id=run.id, attempt=1, status=done)
            ids.append(run.id)
    return ids


class Connection:
    """One page's keep-alive HTTP/1.1 connection, spoken by hand over asyncio streams: a
    GET costs the client tens of microseconds (httpx costs about a millisecond), so the
    clients are not what slows training. The answer's body is read and dropped."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        lines = [f"GET {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += ["Accept-Encoding: gzip", *(f"{k}: {v}" for k, v in headers.items())]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        head = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(head[0].split()[1])
        fields = {}
        for line in head[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                fields[name.strip().lower()] = value.strip()
        length = int(fields.get("content-length", "0"))
        if length:
            await self.reader.readexactly(length)
        if fields.get("connection", "").lower() == "close":
            await self.close()
        return status, fields

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = self.reader = None


async def client_loop(base, urls, going, samples, start_delay, conditional=True):
    """One open page: every second while going(), GET its URLs (with If-None-Match when
    conditional)."""
    host, port = base.split("//", 1)[1].rsplit(":", 1)
    connection = Connection(host, int(port))
    tags: dict[str, str] = {}
    await asyncio.sleep(start_delay)
    while going():
        tick = time.monotonic()
        for url in urls:
            headers = {"If-None-Match": tags[url]} if url in tags else {}
            began = time.perf_counter()
            try:
                status, fields = await connection.get(url, headers)
                ms = (time.perf_counter() - began) * 1000
                if conditional and status == 200 and "etag" in fields:
                    tags[url] = fields["etag"]
                samples[url.split("?")[0]].append((ms, status, status in (200, 304)))
            except Exception as err:  # counted as errors; the load goes on
                await connection.close()
                samples["errors: " + type(err).__name__].append((float("nan"), 0, False))
                samples[url.split("?")[0]].append((float("nan"), 0, False))
        await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))
    await connection.close()


async def load(
    base: str,
    clients: int,
    seconds: float,
    running_id: int,
    conditional: bool = True,
    until: asyncio.Future | None = None,
) -> dict:
    """The clients for `seconds`, and on until `until` (the training) is done."""
    pages = [
        ["/api/runs/table?sort=created&order=desc", "/api/queue"],
        [f"/api/runs/{running_id}"],
    ]
    samples: dict[str, list] = defaultdict(list)
    stop_at = time.monotonic() + seconds

    def going() -> bool:
        return time.monotonic() < stop_at or (until is not None and not until.done())

    await asyncio.gather(
        *(
            client_loop(base, pages[i % 2], going, samples, i / clients, conditional)
            for i in range(clients)
        )
    )
    return samples


def summarize(samples: dict) -> dict:
    rows = {}
    for url, items in samples.items():
        ms = sorted(m for m, _, ok in items if ok) or [float("nan")]
        q = statistics.quantiles(ms, n=100) if len(ms) > 1 else [ms[0]] * 99
        rows[url] = {
            "requests": len(items),
            "errors": sum(not ok for _, _, ok in items),
            "share_304": round(sum(s == 304 for _, s, _ in items) / len(items), 3),
            "p50_ms": round(q[49], 2),
            "p95_ms": round(q[94], 2),
            "max_ms": round(ms[-1], 2),
        }
    return rows


def unchanged_poll_cpu(base: str, pid: int, url: str, polls: int = 2000) -> dict:
    """Web CPU per unchanged poll: one keep-alive client repeats a poll it holds the ETag
    of, `polls` times in a row; the web process's own CPU time over them."""
    import httpx

    with httpx.Client(base_url=base, timeout=30) as http:
        tag = http.get(url).headers["etag"]
        statuses: dict[int, int] = defaultdict(int)
        before = cpu_seconds(pid)
        began = time.perf_counter()
        for _ in range(polls):
            statuses[http.get(url, headers={"If-None-Match": tag}).status_code] += 1
        seconds = time.perf_counter() - began
        cpu = cpu_seconds(pid) - before
    return {
        "url": url,
        "polls": polls,
        "statuses": dict(statuses),
        "web_cpu_ms_per_poll": round(cpu * 1000 / polls, 3),
        "wall_ms_per_poll": round(seconds * 1000 / polls, 3),
    }


def train_once(base: str, epochs: int) -> dict:
    """Launch a small finetune on `demo` through the API and wait for it; its time."""
    import httpx

    params = {"encoder": "scratch", "architecture": "single", "epochs": epochs, "batch_size": 64}
    body = {"kind": "finetune", "dataset": "demo", "params": params, "name": "load bench"}
    run = httpx.post(f"{base}/api/runs", json=body, timeout=30).json()[0]

    def done():
        row = httpx.get(f"{base}/api/runs/{run['id']}", timeout=30).json()
        return row if row["status"] in RunStatus.finished() else None

    row = wait_for(done, timeout=1800, what="the finetune to finish", every=1.0)
    from datetime import datetime

    seconds = (
        datetime.fromisoformat(row["finished_at"]) - datetime.fromisoformat(row["started_at"])
    ).total_seconds()
    rate = (row.get("progress") or {}).get("images_per_sec")
    return {"status": row["status"], "seconds": round(seconds, 1), "images_per_sec": rate}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--train", action="store_true", help="measure a finetune alone/loaded")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument(
        "--baseline", action="store_true", help="then the same load without If-None-Match"
    )
    args = parser.parse_args()

    out: dict = {"bench": "web_under_load", "clients": args.clients, "seconds": args.seconds}
    with (
        tempfile.TemporaryDirectory() as tmp,
        stack_env(
            {
                "STACKLAB_DATA_DIR": tmp,
                "STACKLAB_QUEUE": f"bench-{uuid.uuid4().hex[:8]}",
                # The seeded "running" run has no worker behind it: not to be given up.
                "STACKLAB_STALE_AFTER_SECONDS": "86400",
            }
        ),
        start_web(os.environ, log=Path(tmp) / "web.log", log_level="warning") as web,
    ):
        ids = seed_runs()
        out["unchanged"] = [
            unchanged_poll_cpu(web.url, web.proc.pid, url)
            for url in (f"/api/runs/{ids[0]}", "/api/runs/table?sort=created&order=desc")
        ]
        workers = None
        if args.train:
            workers = Workers({**os.environ}, Path(tmp))
            workers.start("bench-worker")
            out["train_alone"] = train_once(web.url, args.epochs)
        try:
            cpu_before = cpu_seconds(web.proc.pid)
            client_before = time.process_time()
            if args.train:
                loop = asyncio.new_event_loop()
                task = loop.run_in_executor(None, train_once, web.url, args.epochs)
                samples = loop.run_until_complete(
                    load(web.url, args.clients, args.seconds, ids[0], until=task)
                )
                out["train_loaded"] = loop.run_until_complete(task)
                loop.close()
            else:
                samples = asyncio.run(load(web.url, args.clients, args.seconds, ids[0]))
            cpu = cpu_seconds(web.proc.pid) - cpu_before
            client_cpu = time.process_time() - client_before
            if args.baseline:
                before = cpu_seconds(web.proc.pid)
                plain = asyncio.run(load(web.url, args.clients, args.seconds, ids[0], False))
                plain_cpu = cpu_seconds(web.proc.pid) - before
        finally:
            if workers:
                workers.stop_all()

    rows = summarize(samples)
    total = sum(r["requests"] for r in rows.values())
    print(f"{'endpoint':<22} {'req':>6} {'err':>4} {'304':>6} {'p50 ms':>8} {'p95':>8} {'max':>8}")
    for url, r in rows.items():
        print(
            f"{url:<22} {r['requests']:>6} {r['errors']:>4} {r['share_304']:>6.1%} "
            f"{r['p50_ms']:>8.2f} {r['p95_ms']:>8.2f} {r['max_ms']:>8.1f}"
        )
    cpu_ms = cpu * 1000 / max(total, 1)
    print(f"web CPU: {cpu:.2f} s over {total} requests = {cpu_ms:.2f} ms per request")
    client_ms = client_cpu * 1000 / max(total, 1)
    print(f"clients' CPU (this process): {client_cpu:.2f} s = {client_ms:.2f} ms per request")
    out["client_cpu_ms_per_request"] = round(client_ms, 3)
    for row in out["unchanged"]:
        print(
            f"unchanged poll {row['url']}: {row['web_cpu_ms_per_poll']:.3f} ms web CPU per poll "
            f"({row['polls']} in a row, statuses {row['statuses']}; target {TARGET_CPU_MS_304})"
        )
    if args.train:
        alone, loaded = out["train_alone"], out["train_loaded"]
        slower = loaded["seconds"] / alone["seconds"] - 1
        out["training_slowdown"] = round(slower, 3)
        print(
            f"finetune ({args.epochs} epochs on demo): alone {alone['seconds']} s "
            f"({alone['images_per_sec']} img/s), under load {loaded['seconds']} s "
            f"({loaded['images_per_sec']} img/s): {slower:+.0%}"
        )
    if args.baseline:
        plain_rows = summarize(plain)
        plain_total = sum(r["requests"] for r in plain_rows.values())
        plain_ms = plain_cpu * 1000 / max(plain_total, 1)
        p95 = max(r["p95_ms"] for r in plain_rows.values())
        print(f"baseline without If-None-Match: {plain_ms:.2f} ms CPU per request, p95 {p95} ms")
        out["baseline"] = {"endpoints": plain_rows, "web_cpu_ms_per_request": round(plain_ms, 3)}
    out.update(
        endpoints=rows,
        requests=total,
        errors=sum(r["errors"] for r in rows.values()),
        share_304=round(sum(r["share_304"] * r["requests"] for r in rows.values()) / total, 3),
        web_cpu_ms_per_request=round(cpu_ms, 3),
    )
    print(json.dumps(out))


if __name__ == "__main__":
    main()
