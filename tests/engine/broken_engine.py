"""A stand-in for a broken model server, run with a plain python3: healthy on GET /health, and a
POST answer that is not valid HTTP, chosen by its path. Raw sockets, because http.server cannot
be made to write a wrong answer.

POST /not-http: bytes with no status line (a TLS or gRPC port, a crashed writer), then close.
POST /bad-chunk: a 200 head with `Transfer-Encoding: chunked` and, in the same write, a chunk
size that is not hexadecimal.
POST /bad-chunk-later: the head and one good chunk, then (after --delay-s) a bad chunk size.
POST /bad-header: a status line, then a header line with a control character in its name.
Any other POST: a small valid 200.
"""

import argparse
import os
import socket
import sys
import threading
import time

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, required=True)
parser.add_argument("--delay-s", type=float, default=0.3)
args = parser.parse_args()

NOT_HTTP = b"\x15\x03\x01\x00\x02\x02\x46 this engine speaks no HTTP\n"
CHUNKED_HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n")
GOOD_CHUNK = b"data: one\n\n"
BAD_CHUNK = b"zz\r\nnot a chunk\r\n"


def read_request(conn: socket.socket) -> tuple[str, str]:
    data = b""
    while b"\r\n\r\n" not in data:
        more = conn.recv(65536)
        if not more:
            return "", ""
        data += more
    head, rest = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    method, path = lines[0].split(" ")[:2]
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    while len(rest) < length:
        more = conn.recv(65536)
        if not more:
            break
        rest += more
    return method, path.split("?", 1)[0]


def answer(conn: socket.socket) -> None:
    with conn:
        method, path = read_request(conn)
        if not method:
            return
        if method == "GET":
            body = b'{"status":"ok"}'
        elif path == "/not-http":
            conn.sendall(NOT_HTTP)
            return
        elif path == "/bad-chunk":
            conn.sendall(CHUNKED_HEAD + BAD_CHUNK)
            return
        elif path == "/bad-header":
            conn.sendall(b"HTTP/1.1 200 OK\r\nX-Bro\x01ken: yes\r\nContent-Length: 2\r\n\r\nok")
            return
        elif path == "/bad-chunk-later":
            conn.sendall(CHUNKED_HEAD + b"%x\r\n%s\r\n" % (len(GOOD_CHUNK), GOOD_CHUNK))
            time.sleep(args.delay_s)
            conn.sendall(BAD_CHUNK)
            return
        else:
            body = b'{"ok":true}'
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))


def main() -> None:
    server = socket.create_server(("127.0.0.1", args.port), backlog=128)
    print(f"broken stand-in engine listening pid={os.getpid()} port={args.port}", file=sys.stderr, flush=True)
    while True:
        conn, _ = server.accept()
        threading.Thread(target=answer, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
