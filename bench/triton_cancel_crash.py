"""Reproduction: Triton 2.51 crashes in its gRPC frontend when many streams are cancelled.

Starts one local Triton with the stand-in LLM (``ponder-sim-llm``) and sends ``--streams``
samples through the router's own client (``ponder_router.triton``), ``--concurrency`` at a
time, each cancelled after a random 1..200 of its tokens, as probe exits and early stopping
cancel them. Prints whether Triton survived and, if not, the lines of its log from the
crash on (on r24.10: ``GRPC_CALL_ERROR_TOO_MANY_OPERATIONS`` or ``ASSERTION FAILED: ops_``,
then ``Signal (6)``; the live thinking bench also met ``Signal (11)``). The crash does not
need the model to act on the cancellation: with the stand-in's cancellation check removed
it still comes within seconds. It needs cancellations at once: 1,000 cancelled one at a
time left Triton up; 4 at a time over one connection (as the router's one channel per
replica multiplexes them) brought it down within 5 s; 4 at a time each on its own
connection survived 2,000, 32 at a time each on its own connection crashed within 35 s,
and so did 32 at a time with the cancels themselves at least 20 ms apart.
Closing an HTTP ``generate_stream`` early was not settled as a way round: Triton documents
request cancellation for gRPC only; one stream closed alone stopped the stand-in, but in a
run of 3,000 closed early through one ``httpx`` pool (which reused connections mid-stream)
the stand-in went on generating (1.03 M tokens where the client read 0.27 M) and nothing
crashed because little was cancelled. Exit status 1 when Triton crashed.

Symbolised from the r24.10 binary's own symbol table (``nm``), the crashing thread is the
gRPC frontend's stream handler: SIGSEGV in ``triton::server::grpc::ModelStreamInferHandler::
Process`` (+0x3e); SIGABRT from ``gpr_assertion_failed`` in ``grpc::internal::CallOpSet<
CallOpRecvMessage<inference::ModelInferRequest>>`` (a second read posted on one stream,
from ``ModelStreamInferHandler::Process`` +0xd4f) or in ``CallOpSet<CallOpSendInitialMetadata,
CallOpSendMessage, CallOpServerSendStatus>`` (a write racing the stream's finish). Before
a crash the server may answer a stream with "Request for unknown model: ''" (a request
read into a state already reused).

    PYTHONPATH=operator:router:tools:localstack .venv/bin/python bench/triton_cancel_crash.py \\
        [--streams 3000] [--concurrency 32] [--token-ms 1]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

from ponder_localstack.sim_llm import MODEL_NAME
from ponder_localstack.triton import SimModelOptions, TritonServer
from ponder_router.errors import UpstreamError
from ponder_router.triton import SampleParams, TritonBackend

CRASH_MARKERS = ("ASSERTION FAILED", "API misuse", "Signal (")


async def cancel_one(backend: TritonBackend, seed: int, after_tokens: int) -> bool:
    """One sample cancelled after ``after_tokens`` responses; False if the call failed."""
    stream = backend.stream_sample("Think for a long time.",
                                   SampleParams(max_tokens=400, seed=seed), timeout_seconds=60)
    try:
        received = 0
        async for _ in stream:
            received += 1
            if received >= after_tokens:
                stream.cancel()
                break
    except UpstreamError:
        return False
    return True


async def run(args: argparse.Namespace, workdir: Path) -> int:
    model = SimModelOptions(token_latency_ms=args.token_ms, max_concurrency=args.concurrency,
                            length_scale=1.0)
    triton = TritonServer(workdir, models=(model,)).start()
    rng = random.Random(0)
    failed = 0
    try:
        backend = TritonBackend(triton.grpc_url, MODEL_NAME)
        slots = asyncio.Semaphore(args.concurrency)

        async def guarded(seed: int) -> None:
            nonlocal failed
            async with slots:
                failed += not await cancel_one(backend, seed, rng.randint(1, 200))

        started = time.monotonic()
        await asyncio.gather(*(guarded(seed) for seed in range(args.streams)))
        elapsed = time.monotonic() - started
        await backend.close()
        alive = triton.alive
    finally:
        triton.stop()
        if triton.process is not None and triton.process.popen is not None:
            with contextlib.suppress(ProcessLookupError):  # a stub outlives a crashed server
                os.killpg(triton.process.popen.pid, signal.SIGKILL)
    print(f"{args.streams} cancelled streams, {args.concurrency} at once, {args.token_ms:g} ms "
          f"a token: {elapsed:.0f} s, {failed} failed calls; Triton "
          f"{'survived' if alive else 'CRASHED'} (log {triton.log_path})")
    if alive:
        return 0
    lines = triton.log_path.read_text(errors="replace").splitlines()
    first = next((i for i, line in enumerate(lines) if any(m in line for m in CRASH_MARKERS)),
                 max(len(lines) - 20, 0))
    print("\n".join(lines[first:first + 20]))
    return 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--token-ms", type=float, default=1.0)
    args = parser.parse_args()
    return asyncio.run(run(args, Path(tempfile.mkdtemp(prefix="triton-cancel-crash-"))))


if __name__ == "__main__":
    sys.exit(main())
