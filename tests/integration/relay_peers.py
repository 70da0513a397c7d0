"""Small TCP peers for the relay tests, runnable as scripts (also inside namespaces).

    python relay_peers.py hash-server HOST PORT REPLY_BYTES
        For each connection: read until EOF while hashing, then send
        sha256(received) (32 bytes) + len(received) (8 bytes, big-endian),
        then REPLY_BYTES random bytes, then sha256 of those bytes.  Sending
        only after the client's EOF exercises half-close through the relay.
    python relay_peers.py hash-client HOST PORT SEND_BYTES REPLY_BYTES
        Send SEND_BYTES random bytes, shutdown(SHUT_WR), read to EOF, check
        both hashes; print one JSON line; exit 0 only when everything matched.
    python relay_peers.py echo-server HOST PORT
        Echo every connection, half-close after the client's EOF.
    python relay_peers.py slow-echo-client HOST PORT
        Echo 600,000 bytes to a reader slower than the writer (see
        slow_reader_echo); print one JSON line; exit 0 only when all came back.
    python relay_peers.py probe HOST PORT [SOURCE]
        Connect (from SOURCE if given), send a line, and print how the
        connection went within 3 s: refused, reset, eof, or data:<first line>.
    python relay_peers.py hold HOST PORT COUNT
        Open COUNT connections and echo once on each, then one more: print
        "held=N extra=<how the extra one went>" (eof/reset/data:...).
    python relay_peers.py stream HOST PORT
        Connect, echo once, print "streaming", then keep sending; print how
        the connection ended (reset/eof) and how long after "streaming".
    python relay_peers.py concurrent HOST PORT COUNT SIZE
        COUNT simultaneous echo round trips of SIZE bytes; print how many
        came back intact; exit 0 only when all did.

Each server prints "ready" on stdout once it listens.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
import threading

CHUNK = 1 << 16


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    print("ready", flush=True)
    return sock


def _serve(sock: socket.socket, handler: object) -> None:
    while True:
        conn, _ = sock.accept()
        threading.Thread(target=handler, args=(conn,), daemon=True).start()


def _random_stream(total: int, sink: socket.socket) -> bytes:
    digest = hashlib.sha256()
    left = total
    block = os.urandom(CHUNK)
    while left:
        # Vary the block cheaply so that a stuck or repeated chunk changes the hash.
        block = hashlib.sha256(block[:32]).digest() + block[32:]
        piece = block[: min(left, CHUNK)]
        digest.update(piece)
        sink.sendall(piece)
        left -= len(piece)
    return digest.digest()


def hash_handler(reply_bytes: int) -> object:
    def handle(conn: socket.socket) -> None:
        try:
            digest = hashlib.sha256()
            count = 0
            while True:
                data = conn.recv(CHUNK)
                if not data:
                    break
                digest.update(data)
                count += len(data)
            conn.sendall(digest.digest() + count.to_bytes(8, "big"))
            conn.sendall(_random_stream(reply_bytes, conn))
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        finally:
            conn.close()

    return handle


def echo_handler(conn: socket.socket) -> None:
    try:
        while True:
            data = conn.recv(CHUNK)
            if not data:
                break
            conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    finally:
        conn.close()


#: slow_reader_echo's traffic: 200 writes of 3,000 bytes, 2 ms apart (1.5 MB/s), and a
#: reader that takes 4,096 bytes every 5 ms (at most 0.8 MB/s).
SLOW_WRITES, SLOW_WRITE_SIZE, SLOW_WRITE_GAP = 200, 3000, 0.002
SLOW_READ_SIZE, SLOW_READ_GAP = 4096, 0.005


def slow_reader_echo(host: str, port: int, stall: float = 3.0) -> dict[str, object]:
    """Echo 600,000 bytes through host:port to a reader slower than the writer.

    This is the echo test of the namespaces (a sender thread, a reader) on a
    busy machine, made repeatable over loopback: the segment size of a veth
    link (TCP_MAXSEG 1448, so the far end's send buffer stays small as it does
    there), a small receive buffer, odd-sized writes paced so that the echo
    reads them one at a time, and a reader that falls behind.  The echo then
    holds data it cannot send back while more keeps arriving: an echo that
    blocks on a buffer of its own (socat PIPE writing into its own pipe) stops
    for good, a correct one only slows down.  Stops after ``stall`` seconds
    without data; returns what came back.
    """
    import time

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    payload = os.urandom(SLOW_WRITES * SLOW_WRITE_SIZE)
    sent: list[str] = []
    got = bytearray()
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # Both before connect(): the MSS is announced in the SYN, the window from the buffer.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 1448)
        sock.settimeout(stall)
        sock.connect((host, port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def send() -> None:
            try:
                for start in range(0, len(payload), SLOW_WRITE_SIZE):
                    sock.sendall(payload[start : start + SLOW_WRITE_SIZE])
                    time.sleep(SLOW_WRITE_GAP)  # the traffic's shape, not a wait for readiness
                sent.append("all")
            except OSError as exc:
                sent.append(repr(exc))

        sender = threading.Thread(target=send)
        sender.start()
        try:
            while len(got) < len(payload):
                data = sock.recv(SLOW_READ_SIZE)
                if not data:
                    break
                got += data
                time.sleep(SLOW_READ_GAP)  # the slow reader
        except OSError as exc:
            sent.append(f"reader: {exc!r}")
        sender.join()
    return {"sent": sent, "received": len(got), "ok": bytes(got) == payload}


def hash_client(host: str, port: int, send_bytes: int, reply_bytes: int) -> dict[str, object]:
    result: dict[str, object] = {"ok": False}
    with socket.create_connection((host, port), timeout=60) as sock:
        sent_digest = _random_stream(send_bytes, sock)
        sock.shutdown(socket.SHUT_WR)
        received = bytearray()
        while True:
            data = sock.recv(1 << 20)
            if not data:
                break
            received += data
    result["received"] = len(received)
    if len(received) < 40 + 32:
        result["error"] = "short reply"
        return result
    server_digest, count = bytes(received[:32]), int.from_bytes(received[32:40], "big")
    payload, trailer = bytes(received[40:-32]), bytes(received[-32:])
    result["upstream_ok"] = server_digest == sent_digest and count == send_bytes
    result["downstream_ok"] = (
        len(payload) == reply_bytes and hashlib.sha256(payload).digest() == trailer
    )
    result["ok"] = result["upstream_ok"] and result["downstream_ok"]
    return result


def probe(host: str, port: int, source: str | None) -> str:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(3)
    try:
        if source:
            sock.bind((source, 0))
        try:
            sock.connect((host, port))
        except ConnectionRefusedError:
            return "refused"
        except ConnectionResetError:
            # The relay may reset before connect() has even returned.
            return "reset"
        try:
            sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
            data = sock.recv(65536)
        except ConnectionResetError:
            return "reset"
        except TimeoutError:
            return "open"
        if not data:
            return "eof"
        return "data:" + data.decode(errors="replace").splitlines()[0]
    finally:
        sock.close()


def _echo_ok(sock: socket.socket) -> bool:
    sock.sendall(b"ping\n")
    got = b""
    while len(got) < 5:
        data = sock.recv(100)
        if not data:
            return False
        got += data
    return got == b"ping\n"


def hold(host: str, port: int, count: int) -> str:
    held = []
    for _ in range(count):
        sock = socket.create_connection((host, port), timeout=5)
        if _echo_ok(sock):
            held.append(sock)
    extra = socket.create_connection((host, port), timeout=5)
    extra.settimeout(3)
    try:
        outcome = "eof" if not extra.recv(100) else "data"
    except ConnectionResetError:
        outcome = "reset"
    except TimeoutError:
        outcome = "open"
    for sock in [*held, extra]:
        sock.close()
    return f"held={len(held)} extra={outcome}"


def stream(host: str, port: int) -> str:
    import time

    sock = socket.create_connection((host, port), timeout=5)
    if not _echo_ok(sock):
        return "no echo"
    print("streaming", flush=True)
    t0 = time.monotonic()
    sock.settimeout(0.2)
    block = os.urandom(CHUNK)
    while time.monotonic() - t0 < 30:
        try:
            sock.sendall(block)
            if not sock.recv(1 << 20):
                return f"eof after {time.monotonic() - t0:.1f}s"
        except TimeoutError:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return f"reset after {time.monotonic() - t0:.1f}s"
    return "still open"


def concurrent(host: str, port: int, count: int, size: int) -> int:
    import asyncio

    payload = os.urandom(size)

    async def one(i: int) -> bool:
        try:
            reader, writer = await asyncio.open_connection(host, port)
            tagged = payload + i.to_bytes(4, "big")
            writer.write(tagged)
            writer.write_eof()
            got = await reader.read()
            writer.close()
            return got == tagged
        except OSError:
            return False

    async def run() -> list[bool]:
        return await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(count))), 60)

    return sum(asyncio.run(run()))


def main(argv: list[str]) -> int:
    command, host, port = argv[0], argv[1], int(argv[2])
    if command == "hash-server":
        _serve(_listen(host, port), hash_handler(int(argv[3])))
    elif command == "echo-server":
        _serve(_listen(host, port), echo_handler)
    elif command == "hash-client":
        result = hash_client(host, port, int(argv[3]), int(argv[4]))
        print(json.dumps(result), flush=True)
        return 0 if result["ok"] else 1
    elif command == "slow-echo-client":
        result = slow_reader_echo(host, port)
        print(json.dumps(result), flush=True)
        return 0 if result["ok"] else 1
    elif command == "probe":
        print(probe(host, port, argv[3] if len(argv) > 3 else None), flush=True)
    elif command == "hold":
        print(hold(host, port, int(argv[3])), flush=True)
    elif command == "stream":
        print(stream(host, port), flush=True)
    elif command == "concurrent":
        count = int(argv[3])
        good = concurrent(host, port, count, int(argv[4]))
        print(good, flush=True)
        return 0 if good == count else 1
    else:
        print(f"unknown command {command!r}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
