"""Load test of an OpenAI-compatible server on this machine: N concurrent streaming clients for a
bounded time; requests/s, tokens/s, p50/p99 time to first token and inter-token latency, errors,
the server's memory, and (apls) the KV cache's audit. Prints a table, writes JSON.

Against a running server (loopback addresses only):

    python tools/load_test.py --url http://127.0.0.1:8080 --streams 1,4,8 --duration 30

Or start the servers itself, one after the other, same model and same load:

    python tools/load_test.py --serve apls --serve llama-cpp -m model.gguf --streams 1,4,8 --duration 30 --json out.json

(`--serve llama-server --server-bin PATH` times llama.cpp's own server the same way; on the GPU
machine tools/gpu_bench.sh's `serve` phase builds it with tools/peer_llama_cpp.sh.)

Each client sends /v1/completions (or /v1/chat/completions with --chat) with stream=true,
greedy, max_tokens M, prompts taken in turn from a fixed list, and starts its next request as
soon as one ends. Requests still running at the end of the window are cut there; tokens count
when they arrive inside the window, so tokens/s is what the server delivered in it. A token is
counted per content chunk (both servers send one token per chunk without speculation; with
--speculative apls may send several in one, and then counts them from the final usage).
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import shlex
import socket
import subprocess
import sys
import time
import urllib.parse
from dataclasses import asdict, dataclass, field

import httpx

PROMPTS = [
    "Once upon a time, in a small village by the sea, there lived",
    "The history of the printing press begins",
    "Here is a short story about a robot who learns to paint:",
    "Explain how a refrigerator works, step by step.",
    "The three most important inventions of the twentieth century are",
    "Write a letter to a friend describing your summer holiday.",
    "In a distant galaxy, a lonely starship captain",
    "A recipe for a simple tomato soup: first,",
    "The rules of chess are as follows.",
    "Describe a walk through a busy city market in the morning.",
    "The causes of the French Revolution include",
    "My favourite book is about a detective who",
]


@dataclass
class RequestResult:
    ok: bool
    error: str = ""
    ttft_s: float | None = None
    gaps_s: list[float] = field(default_factory=list)  # between content chunks
    tokens_in_window: int = 0
    finished: bool = False  # ended inside the window


@dataclass
class LevelResult:
    server: str
    streams: int
    duration_s: float
    requests_finished: int
    requests_cut: int
    errors: int
    error_samples: list[str]
    requests_per_s: float
    tokens: int
    tokens_per_s: float
    ttft_p50_ms: float
    ttft_p99_ms: float
    itl_p50_ms: float
    itl_p99_ms: float
    rss_mb_start: float | None = None
    rss_mb_end: float | None = None
    rss_mb_max: float | None = None
    audit: dict | None = None


def percentile(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    i = min(len(xs) - 1, max(0, round(q / 100 * (len(xs) - 1))))
    return xs[i]


def check_loopback(url: str) -> None:
    """Refuse anything but this machine: every address the host resolves to must be loopback."""
    host = urllib.parse.urlparse(url).hostname or ""
    addrs = {info[4][0] for info in socket.getaddrinfo(host, None)}
    if not addrs or not all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addrs):
        sys.exit(f"load_test: {url} is not a loopback address ({sorted(addrs)}); this tool only loads this machine")


async def one_request(client, url, body, chat, deadline) -> RequestResult:
    res = RequestResult(ok=True)
    t0 = time.perf_counter()
    last = None
    chunk_tokens = 0
    usage_tokens = None
    try:
        async with client.stream("POST", url, json=body) as r:
            if r.status_code != 200:
                await r.aread()
                return RequestResult(ok=False, error=f"HTTP {r.status_code}: {r.text[:120]}")
            async for line in r.aiter_lines():
                now = time.perf_counter()
                if now > deadline:
                    break
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    res.finished = True
                    break
                obj = json.loads(data)
                if "error" in obj:
                    return RequestResult(ok=False, error=str(obj["error"])[:120])
                if obj.get("usage"):
                    usage_tokens = obj["usage"].get("completion_tokens")
                choices = obj.get("choices") or []
                text = (
                    (choices[0].get("delta", {}).get("content") if chat else choices[0].get("text"))
                    if choices
                    else None
                )
                if text:
                    chunk_tokens += 1
                    if last is None:
                        res.ttft_s = now - t0
                    else:
                        res.gaps_s.append(now - last)
                    last = now
    except (httpx.HTTPError, json.JSONDecodeError) as e:
        return RequestResult(ok=False, error=f"{type(e).__name__}: {e}"[:120])
    # Speculative servers may put several tokens in a chunk: the usage says how many.
    res.tokens_in_window = usage_tokens if res.finished and usage_tokens is not None else chunk_tokens
    return res


async def client_loop(i, base, args, deadline, results):
    path = "/v1/chat/completions" if args.chat else "/v1/completions"
    n = i
    async with httpx.AsyncClient(base_url=base, timeout=httpx.Timeout(args.duration + 60)) as client:
        while time.perf_counter() < deadline:
            prompt = PROMPTS[n % len(PROMPTS)]
            n += args.streams_now
            body = {
                "max_tokens": args.max_tokens,
                "temperature": 0,
                "stream": True,
                "stream_options": {"include_usage": True},
            }
            if args.chat:
                body["messages"] = [{"role": "user", "content": prompt}]
            else:
                body["prompt"] = prompt
            if args.model_name:
                body["model"] = args.model_name
            results.append(await one_request(client, path, body, args.chat, deadline))


def rss_mb(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


async def run_level(name, base, args, streams, pid) -> LevelResult:
    args.streams_now = streams
    results: list[RequestResult] = []
    rss = [rss_mb(pid)]
    t0 = time.perf_counter()
    deadline = t0 + args.duration

    async def sample():
        while time.perf_counter() < deadline:
            await asyncio.sleep(1.0)
            rss.append(rss_mb(pid))

    await asyncio.gather(sample(), *(client_loop(i, base, args, deadline, results) for i in range(streams)))
    window = args.duration
    ok = [r for r in results if r.ok]
    errs = [r for r in results if not r.ok]
    ttft = [r.ttft_s for r in ok if r.ttft_s is not None]
    gaps = [g for r in ok for g in r.gaps_s]
    tokens = sum(r.tokens_in_window for r in ok)
    finished = sum(1 for r in ok if r.finished)
    rss_ok = [x for x in rss if x is not None]
    audit = None
    if name.startswith("apls"):
        audit = await idle_audit(base)
    return LevelResult(
        server=name,
        streams=streams,
        duration_s=window,
        requests_finished=finished,
        requests_cut=len(ok) - finished,
        errors=len(errs),
        error_samples=sorted({r.error for r in errs})[:5],
        requests_per_s=finished / window,
        tokens=tokens,
        tokens_per_s=tokens / window,
        ttft_p50_ms=1000 * percentile(ttft, 50),
        ttft_p99_ms=1000 * percentile(ttft, 99),
        itl_p50_ms=1000 * percentile(gaps, 50),
        itl_p99_ms=1000 * percentile(gaps, 99),
        rss_mb_start=rss_ok[0] if rss_ok else None,
        rss_mb_end=rss_ok[-1] if rss_ok else None,
        rss_mb_max=max(rss_ok) if rss_ok else None,
        audit=audit,
    )


async def idle_audit(base: str, timeout: float = 30.0) -> dict | None:
    """apls: once no request runs, /health?audit=true checks the KV cache (invariants, entries and
    blocks the slots account for)."""
    async with httpx.AsyncClient(base_url=base, timeout=30) as c:
        end = time.perf_counter() + timeout
        while time.perf_counter() < end:
            h = (await c.get("/health", params={"audit": "true"})).json()
            if h.get("slots_busy") == 0 and h.get("queue") == 0 and "audit" in h:
                return h["audit"]
            await asyncio.sleep(0.2)
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(kind: str, args) -> tuple[subprocess.Popen, str]:
    port = free_port()
    if kind in ("apls", "apls-spec"):
        cmd = [sys.executable, "-m", "apls", "serve", "-m", args.model, "--port", str(port), "-np", str(args.parallel)]
        cmd += ["-t", str(args.threads), "-c", str(args.ctx), "--alias", "model"]
        cmd += ["--speculative"] if kind == "apls-spec" else []
    elif kind == "llama-cpp":
        t, c = str(args.threads), str(args.ctx)
        cmd = [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            args.model,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]
        cmd += ["--n_threads", t, "--n_threads_batch", t, "--n_ctx", c, "--model_alias", "model", "--verbose", "False"]
        # Queue concurrent requests: by default it ends the running stream when another arrives.
        cmd += ["--interrupt_requests", "False"]
    elif kind == "llama-server":
        # llama.cpp's own server (continuous batching over -np slots); its -c is the context of all
        # slots together, ours is per request. -ngl 99: every layer on the GPU where the build has one.
        if not args.server_bin:
            sys.exit("load_test: --serve llama-server needs --server-bin (tools/peer_llama_cpp.sh builds it)")
        cmd = [args.server_bin, "-m", args.model, "--host", "127.0.0.1", "--port", str(port)]
        cmd += ["-np", str(args.parallel), "-c", str(args.ctx * args.parallel), "-t", str(args.threads)]
        cmd += ["-ngl", "99", "--alias", "model"] + shlex.split(args.server_args)
    else:
        sys.exit(f"load_test: unknown server kind {kind!r} (apls, apls-spec, llama-cpp, llama-server)")
    log = open(f"{args.log_dir}/load_test_{kind}.log", "w")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    end = time.time() + 120
    while time.time() < end:
        if proc.poll() is not None:
            sys.exit(f"load_test: {kind} server exited ({proc.returncode}); see {log.name}")
        try:
            if httpx.get(base + "/v1/models", timeout=2).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    sys.exit(f"load_test: {kind} server did not start in 120 s; see {log.name}")


def table(results: list[LevelResult]) -> str:
    head = "| server | streams | req/s | tokens/s | TTFT p50 ms | TTFT p99 ms | ITL p50 ms | ITL p99 ms | errors | RSS MB start/end/max |"
    lines = [head, "|" + "---|" * 10]
    for r in results:
        rss = "-" if r.rss_mb_start is None else f"{r.rss_mb_start:.0f}/{r.rss_mb_end:.0f}/{r.rss_mb_max:.0f}"
        lines.append(
            f"| {r.server} | {r.streams} | {r.requests_per_s:.2f} | {r.tokens_per_s:.1f} | {r.ttft_p50_ms:.0f} | "
            f"{r.ttft_p99_ms:.0f} | {r.itl_p50_ms:.1f} | {r.itl_p99_ms:.1f} | {r.errors} | {rss} |"
        )
    return "\n".join(lines)


async def warm_up(base, args):
    async with httpx.AsyncClient(base_url=base, timeout=120) as c:
        body = {"prompt": PROMPTS[0], "max_tokens": 8, "temperature": 0}
        if args.model_name:
            body["model"] = args.model_name
        (await c.post("/v1/completions", json=body)).raise_for_status()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", help="a running server (loopback only)")
    ap.add_argument("--pid", type=int, help="its process id, to sample its memory")
    ap.add_argument(
        "--serve",
        action="append",
        choices=["apls", "apls-spec", "llama-cpp", "llama-server"],
        help="start this server (repeatable)",
    )
    ap.add_argument("--server-bin", help="the llama-server binary for --serve llama-server")
    ap.add_argument(
        "--server-args", default="", help="extra llama-server options, as one string: --server-args='--kv-unified'"
    )
    ap.add_argument("-m", "--model", help="GGUF file for --serve (default: the default model)")
    ap.add_argument("--streams", default="1,4,8", help="concurrent clients, comma-separated levels (default 1,4,8)")
    ap.add_argument("--duration", type=float, default=30.0, help="seconds per level (default 30)")
    ap.add_argument("--max-tokens", type=int, default=64, help="tokens per request (default 64)")
    ap.add_argument("--chat", action="store_true", help="use /v1/chat/completions (default /v1/completions)")
    ap.add_argument("--parallel", type=int, default=8, help="apls slots for --serve (default 8)")
    ap.add_argument("--threads", type=int, default=2, help="engine threads for --serve (default 2)")
    ap.add_argument("--ctx", type=int, default=1024, help="context for --serve (default 1024)")
    ap.add_argument("--model-name", default=None, help="the model field to send (default: none; 'model' with --serve)")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--log-dir", default="/tmp", help="servers' logs (default /tmp)")
    args = ap.parse_args()
    levels = [int(x) for x in args.streams.split(",")]
    results: list[LevelResult] = []
    targets = []
    if args.serve:
        if not args.model:
            from apls import default_model_path

            args.model = default_model_path()
        args.model_name = args.model_name or "model"
        targets = [(kind, None) for kind in args.serve]
    elif args.url:
        check_loopback(args.url)
        targets = [("server", args.url)]
    else:
        ap.error("give --url or --serve")
    failed = []
    for kind, url in targets:
        proc = None
        if url is None:
            try:
                proc, url = spawn(kind, args)
            except SystemExit as e:  # one server that does not start leaves the others' results
                print(e, file=sys.stderr)
                failed.append(kind)
                continue
        try:
            check_loopback(url)
            asyncio.run(warm_up(url, args))
            pid = proc.pid if proc else args.pid
            for streams in levels:
                r = asyncio.run(run_level(kind, url, args, streams, pid))
                results.append(r)
                print(table([r]).splitlines()[-1], file=sys.stderr, flush=True)
        finally:
            if proc is not None:
                proc.terminate()
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
    print(table(results))
    for r in results:
        if r.audit is not None:
            print(f"{r.server} x{r.streams}: KV audit after the load: {r.audit}")
    by = {(r.server, r.streams): r.tokens_per_s for r in results}
    for kind, _ in targets:
        if (kind, 1) in by:
            for n in levels:
                if n > 1 and (kind, n) in by and by[(kind, 1)] > 0:
                    print(f"{kind}: {n} streams = {by[(kind, n)] / by[(kind, 1)]:.2f}x the tokens/s of 1 stream")
    kinds = [kind for kind, _ in targets]
    for other in kinds[1:]:
        for n in levels:
            if (kinds[0], n) in by and (other, n) in by and by[(other, n)] > 0:
                print(f"{kinds[0]} / {other} at {n} streams: {by[(kinds[0], n)] / by[(other, n)]:.2f}x the tokens/s")
    if args.json:
        meta = {
            "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "argv": sys.argv[1:],
            "model": args.model,
            "cpu_count": os.cpu_count(),
            "max_tokens": args.max_tokens,
            "duration_s": args.duration,
        }
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "results": [asdict(r) for r in results]}, f, indent=2)
            f.write("\n")
    return 1 if failed or any(r.errors for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
