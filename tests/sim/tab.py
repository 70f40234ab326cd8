#!/usr/bin/env python3
"""A browser tab pressing Generate, as Gradio 3.41's page does it: a WebSocket to `/queue/join`
on loopback, its session hash and the function's index, then the call's data when the queue
asks. Here the data is the simulator's task scenario (fooocus_sim.py `queue_call`).

Usage: tab.py PORT FN_INDEX TASK_JSON [--session HASH] [--leave-after N]

Prints each queue message's `msg` on a line of its own as it comes; exits 0 at
`process_completed`, 1 if the connection ends before it. `--leave-after N` closes the tab
after N `process_generating` updates (the tab goes away mid-generation) and exits 0.
Standard library only.
"""
import argparse
import base64
import json
import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fooocus_sim import ws_accept_key, ws_recv_text, ws_send_text  # noqa: E402

# A queue message or a handshake is a few hundred bytes.
MAX_HEAD = 64 * 1024


def connect(port):
    sock = socket.create_connection(("127.0.0.1", port), timeout=120)
    key = base64.b64encode(os.urandom(16)).decode()
    host = "127.0.0.1:%d" % port
    sock.sendall(("GET /queue/join HTTP/1.1\r\nHost: %s\r\nOrigin: http://%s\r\nUpgrade: websocket\r\n"
                  "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
                  % (host, host, key)).encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        if not chunk or len(head) > MAX_HEAD:
            raise SystemExit("tab: no handshake answer: %r" % head[:200])
        head += chunk
    status = head.split(b"\r\n", 1)[0]
    if b" 101 " not in status + b" ":
        raise SystemExit("tab: refused: %s" % status.decode("latin-1"))
    if ws_accept_key(key).encode() not in head:
        raise SystemExit("tab: wrong Sec-WebSocket-Accept")
    return sock


def main(argv):
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("fn_index", type=int)
    ap.add_argument("task")
    ap.add_argument("--session", default="tab-" + os.urandom(4).hex())
    ap.add_argument("--leave-after", type=int)
    a = ap.parse_args(argv)
    task = json.loads(a.task)
    sock = connect(a.port)
    updates = 0
    while True:
        text = ws_recv_text(sock)
        if text is None:
            print("closed", flush=True)
            return 1
        msg = json.loads(text).get("msg")
        print(msg, flush=True)
        if msg == "send_hash":
            ws_send_text(sock, json.dumps({"fn_index": a.fn_index, "session_hash": a.session}), masked=True)
        elif msg == "send_data":
            ws_send_text(sock, json.dumps({"data": [task], "event_data": None, "fn_index": a.fn_index,
                                               "session_hash": a.session}), masked=True)
        elif msg == "process_generating":
            updates += 1
            if a.leave_after is not None and updates >= a.leave_after:
                sock.close()
                return 0
        elif msg == "process_completed":
            return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
