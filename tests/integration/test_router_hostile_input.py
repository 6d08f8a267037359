"""Hostile input at the real router process: odd bodies, header floods and slow clients.

One ``ponder-router`` process (the console script, uvicorn, loopback) serves the whole
module. Its Triton endpoint is a loopback port nobody listens on: invalid requests never
reach it, and a valid one gets the router's own upstream error. Bodies go out through
httpx, or raw sockets where httpx would refuse to send them. What is checked is what a
client and an operator see: each request gets a 4xx in OpenAI's error shape naming what
is wrong (or, for what uvicorn itself refuses, a 4xx or a closed connection), other
clients are served meanwhile, and afterwards the process is alive, healthy, answering
normally, without a traceback in its log and without having grown in memory.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from components import LOG_FILES
from fixtures_router import RouterProcess, router_argv
from ponder_localstack.proc import Process, free_port, http_ok

MAX_PROMPT_CHARS = 1000
BODY_LIMIT_BYTES = MAX_PROMPT_CHARS * 4 + (1 << 20)
"""The router's body limit: four bytes a prompt character plus 1 MiB of JSON around it."""
DEADLINE_SECONDS = 3
RSS_GROWTH_LIMIT_BYTES = 50 * 1024 * 1024
JSON = {"content-type": "application/json"}
CHAT = "/v1/chat/completions"


@pytest.fixture(scope="module")
def router(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RouterProcess]:
    """The real router, its Triton endpoint a loopback port that refuses connections."""
    folder = tmp_path_factory.mktemp("hostile")
    config_path = folder / "router.json"
    config_path.write_text(json.dumps({
        "service": "hostile", "modelName": "m", "tritonModel": "t",
        "endpoints": [f"127.0.0.1:{free_port()}"],
        "admission": {"maxPromptChars": MAX_PROMPT_CHARS,
                      "requestTimeoutSeconds": DEADLINE_SECONDS},
    }))  # fmt: skip
    port = free_port()
    process = Process("router-hostile", router_argv(), folder / "router.log", env={
        "PONDER_ROUTER_CONFIG": str(config_path), "PONDER_ROUTER_PORT": str(port)})  # fmt: skip
    LOG_FILES.append(process.log_path)
    running = RouterProcess(process, f"http://127.0.0.1:{port}", config_path)
    process.start().wait_until(lambda: http_ok(running.url + "/healthz"), 30)
    yield running
    process.stop()


@pytest.fixture
def client(router: RouterProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=router.url, timeout=30) as http:
        yield http


def assert_openai_error(response: httpx.Response, status: int, *fragments: str) -> None:
    """``status``, OpenAI's error shape, and a message naming what is wrong."""
    assert response.status_code == status, response.text[:500]
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    for fragment in fragments:
        assert fragment in error["message"], error["message"]


def exchange(router: RouterProcess, request: bytes, timeout_seconds: float = 10) -> bytes:
    """Send raw bytes and read until the server closes; what it sent (b"" if nothing)."""
    port = int(router.url.rsplit(":", 1)[1])
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_seconds) as sock:
        try:
            sock.sendall(request)
            while chunk := sock.recv(65536):
                received += chunk
        except (ConnectionResetError, BrokenPipeError):
            pass  # the server closed on us mid-send: a refusal too
    return received


def read_response(sock: socket.socket) -> bytes:
    """One HTTP/1.1 response with a Content-Length: its head and its body."""
    data = b""
    while b"\r\n\r\n" not in data and (chunk := sock.recv(65536)):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next((line.split(b":", 1)[1] for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), b"0"))  # fmt: skip
    while len(body) < length and (chunk := sock.recv(65536)):
        body += chunk
    return head + b"\r\n\r\n" + body


def chat_body(**fields: object) -> dict[str, object]:
    return {"model": "m", "messages": [{"role": "user", "content": "What is 1+1?"}], **fields}


def test_an_oversized_body_is_refused_with_413_whether_declared_or_streamed(
    client: httpx.Client,
) -> None:
    declared = client.post(CHAT, content=b"x" * (2 * BODY_LIMIT_BYTES), headers=JSON)
    streamed = client.post(CHAT, content=iter([b"y" * 65536] * 40), headers=JSON)
    for response in (declared, streamed):
        assert_openai_error(response, 413, f"larger than {BODY_LIMIT_BYTES} bytes")


@pytest.mark.parametrize(
    ("body", "fragments"),
    [
        (b"[" * 100_000, ("not valid JSON", "recursion limit")),
        (b'{"a": ' * 100_000, ("not valid JSON", "recursion limit")),
        (b'{"model": "m\xff\xfe", "messages": []}', ("not valid JSON", "unicode")),
        (b"\xff\xfe{\x00}\x00", ("not valid JSON",)),
        (b'{"model": "m", "messages": [{"role": "us', ("not valid JSON", "EOF")),
        (b"", ("not valid JSON", "EOF")),
        (b"[1, 2, 3]", ("must be a JSON object",)),
        (b'"a string"', ("must be a JSON object",)),
        (b"null", ("must be a JSON object",)),
        (json.dumps(chat_body()).encode()[:-1] + b', "seed": ' + b"9" * 5000 + b"}",
         ("not valid JSON", "number out of range")),
        (json.dumps(chat_body()).encode()[:-1] + b', "temperature": NaN}',
         ("temperature", "finite number")),
        (json.dumps(chat_body()).encode()[:-1] + b', "top_p": Infinity}',
         ("top_p", "finite number")),
        (json.dumps(chat_body()).encode()[:-1] + b', "max_tokens": 1e400}',
         ("max_tokens", "valid integer")),
        (b'{"model": "m\x00", "messages": []}', ("not valid JSON", "control character")),
        (b'{"model": "m", "messages": [{"role": "user", "content": "\\ud800"}]}',
         ("not valid JSON",)),
        (json.dumps(chat_body(messages=[{"role": "user", "content": "\u3000\x1f"}])).encode(),
         ("user message with text",)),
    ],
)  # fmt: skip
def test_a_malformed_body_is_refused_with_400_naming_the_problem(
    client: httpx.Client, body: bytes, fragments: tuple[str, ...]
) -> None:
    assert_openai_error(client.post(CHAT, content=body, headers=JSON), 400, *fragments)


def test_a_model_name_with_null_bytes_is_an_unknown_model(client: httpx.Client) -> None:
    body = json.dumps(chat_body(model="m\x00\x00")).encode()
    assert_openai_error(client.post(CHAT, content=body, headers=JSON), 404, "'m\\x00\\x00'")


@pytest.mark.parametrize(
    ("headers", "fragment"),
    [({}, "the request has none"), ({"content-type": "text/plain"}, "got 'text/plain'"),
     ({"content-type": "application/x-www-form-urlencoded"}, "x-www-form-urlencoded"),
     ({"content-type": "multipart/form-data; boundary=x"}, "multipart/form-data")],
)  # fmt: skip
def test_a_body_not_declared_json_is_refused_with_415_saying_what_is_expected(
    client: httpx.Client, headers: dict[str, str], fragment: str
) -> None:
    response = client.post(CHAT, content=json.dumps(chat_body()).encode(), headers=headers)
    assert_openai_error(response, 415, "Content-Type must be application/json", fragment)


@pytest.mark.parametrize(
    "request_bytes",
    [
        # thousands of headers, more than uvicorn buffers for one request head
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
        + b"".join(b"X-Flood-%d: %s\r\n" % (i, b"v" * 20) for i in range(20_000))
        + b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
        # thousands of small headers that fit: the request is read and refused for its body
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        + b"".join(b"X-H%d: v\r\n" % i for i in range(3000))
        + b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
        # one enormous header
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 4_000_000
        + b"\r\nContent-Length: 2\r\n\r\n{}",
        # an enormous URL
        b"GET /" + b"a" * 4_000_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        # lengths that are no lengths
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n{}",
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 1e99\r\n\r\n{}",
        # not HTTP at all
        b"\x00\x01\x02\xff\xfe\r\n\r\n",
    ],
    ids=["20k-headers", "3k-headers", "4MB-header", "4MB-url", "negative-length",
         "float-length", "binary"],
)  # fmt: skip
def test_a_header_flood_or_garbage_gets_a_4xx_or_a_closed_connection(
    router: RouterProcess, request_bytes: bytes
) -> None:
    answer = exchange(router, request_bytes)
    status = answer.split(b" ", 2)[1] if answer.startswith(b"HTTP/1.1 ") else None
    assert answer == b"" or (status is not None and status.startswith(b"4")), answer[:200]
    assert http_ok(router.url + "/healthz")


def test_slow_clients_holding_partial_bodies_get_408_and_others_are_served_meanwhile(
    router: RouterProcess, client: httpx.Client
) -> None:
    port = int(router.url.rsplit(":", 1)[1])
    head = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
            b"\r\nContent-Length: 100\r\n\r\n")  # fmt: skip
    slow = [socket.create_connection(("127.0.0.1", port), timeout=DEADLINE_SECONDS + 10)
            for _ in range(50)]  # fmt: skip
    try:
        started = time.monotonic()
        for sock in slow:
            sock.sendall(head + b'{"model": "m", ')
        assert client.get("/healthz").status_code == 200
        assert_openai_error(client.post(CHAT, json=chat_body(model="gpt-9")), 404, "'gpt-9'")
        assert time.monotonic() - started < 2, "others waited behind the slow clients"
        answers = [read_response(sock) for sock in slow]
        waited = time.monotonic() - started
    finally:
        for sock in slow:
            sock.close()
    assert all(a.startswith(b"HTTP/1.1 408 ") for a in answers), answers[0][:200]
    assert b"request body not received within 3 s" in answers[0]
    assert DEADLINE_SECONDS - 0.5 < waited < DEADLINE_SECONDS + 5


def test_after_all_of_it_the_router_is_alive_healthy_and_answers_normally(
    router: RouterProcess, client: httpx.Client
) -> None:
    port = int(router.url.rsplit(":", 1)[1])
    for _ in range(20):  # clients that leave half-way through their body
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
                         b"application/json\r\nContent-Length: 100\r\n\r\n{\"mo")  # fmt: skip
    for _ in range(10):  # warm-up: allocator pools reach their working size
        client.post(CHAT, content=b"x" * (2 * BODY_LIMIT_BYTES), headers=JSON)
    before = router.rss_bytes()
    for i in range(400):
        if i % 2:
            response = client.post(CHAT, content=b"x" * (2 * BODY_LIMIT_BYTES), headers=JSON)
        else:
            response = client.post(CHAT, content=iter([b"y" * 65536] * 20), headers=JSON)
        assert response.status_code == 413
    grown = router.rss_bytes() - before

    assert router.process.alive
    assert client.get("/healthz").json() == {"status": "ok"}
    unanswerable = client.post(CHAT, json=chat_body())
    assert unanswerable.status_code in (502, 503), unanswerable.text
    assert unanswerable.json()["error"]["type"] in ("upstream_error", "service_unavailable")
    assert grown < RSS_GROWTH_LIMIT_BYTES, f"RSS grew by {grown / 2**20:.1f} MiB"
    log = Path(router.process.log_path).read_text(errors="replace")
    assert "Traceback" not in log
    assert " ERROR " not in log
