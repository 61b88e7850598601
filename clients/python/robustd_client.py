#!/usr/bin/env python3
"""A small robustd client for monitoring agents: standard library only.

As a library:

    from robustd_client import RobustdClient
    with RobustdClient() as c:                      # $XDG_RUNTIME_DIR/robustd.sock by default
        print(c.call("daemon/status"))
        for update in c.subscribe(["expectedCostPer1000", "latencyP99Ms"], interval_ms=1000):
            print(update["values"])

As a command:

    robustd_client.py watch --metrics requestRate,expectedCostPer1000 --interval-ms 1000
    robustd_client.py watch --json --count 10 > updates.jsonl      # forward as JSON lines
    robustd_client.py call metrics/get '{"top": 5}'

Exit status: 0 on success, 1 on a JSON-RPC error, 2 when the daemon cannot be reached.
"""
import argparse
import json
import os
import socket
import sys


def default_socket():
    d = os.environ.get("XDG_RUNTIME_DIR", "")
    if d.startswith("/"):
        return os.path.join(d, "robustd.sock")
    return "/tmp/robustd-%d/robustd.sock" % os.getuid()


class RobustdError(Exception):
    """A JSON-RPC error answered by the daemon."""

    def __init__(self, error):
        self.code = error.get("code")
        self.message = error.get("message", "")
        self.data = error.get("data")
        super().__init__("%s: %s" % (self.code, self.message))


class RobustdClient:
    """One connection to robustd's Unix socket, newline-delimited JSON-RPC 2.0."""

    def __init__(self, path=None, timeout=None):
        self.path = path or default_socket()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(self.path)
        self.file = self.sock.makefile("rwb")
        self.next_id = 1
        self.pending = []  # notifications read while waiting for a response

    def close(self):
        try:
            self.file.close()
        finally:
            self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _read(self):
        line = self.file.readline()
        if not line:
            raise ConnectionError("robustd closed the connection")
        return json.loads(line)

    def call(self, method, params=None):
        """Sends a request and returns its result (raises RobustdError on an error answer)."""
        i = self.next_id
        self.next_id += 1
        msg = {"jsonrpc": "2.0", "id": i, "method": method}
        if params is not None:
            msg["params"] = params
        self.file.write((json.dumps(msg) + "\n").encode())
        self.file.flush()
        while True:
            m = self._read()
            if "id" in m and m["id"] == i and "method" not in m:
                if "error" in m:
                    raise RobustdError(m["error"])
                return m.get("result")
            if "method" in m:
                self.pending.append(m)

    def notifications(self):
        """Yields notifications (dicts with method and params) as they arrive."""
        while True:
            while self.pending:
                yield self.pending.pop(0)
            m = self._read()
            if "method" in m:
                yield m

    def subscribe(self, metrics=None, interval_ms=1000, on_change=False):
        """Subscribes and yields each metrics/update's params; unsubscribes when the caller stops."""
        params = {"intervalMs": interval_ms, "onChange": on_change}
        if metrics:
            params["metrics"] = list(metrics)
        sub = self.call("metrics/subscribe", params)["subscription"]
        try:
            for n in self.notifications():
                if n.get("method") == "metrics/update" and n.get("params", {}).get("subscription") == sub:
                    yield n["params"]
        finally:
            try:
                self.call("metrics/unsubscribe", {"subscription": sub})
            except (OSError, ConnectionError, RobustdError, ValueError):
                pass


def main(argv=None):
    ap = argparse.ArgumentParser(description="robustd monitoring client (standard library only)")
    ap.add_argument("--socket", default=None, help="the daemon's socket (default: %s)" % default_socket())
    sub = ap.add_subparsers(dest="command", required=True)
    w = sub.add_parser("watch", help="subscribe to live metrics and print (or forward) the updates")
    w.add_argument("--metrics", default="", help="comma-separated names or prefixes (default: all)")
    w.add_argument("--interval-ms", type=int, default=1000)
    w.add_argument("--on-change", action="store_true")
    w.add_argument("--count", type=int, default=0, help="stop after this many updates (0: never)")
    w.add_argument("--json", action="store_true", help="one JSON object per line (for forwarding)")
    c = sub.add_parser("call", help="call one method and print its result as JSON")
    c.add_argument("method")
    c.add_argument("params", nargs="?", default=None)
    args = ap.parse_args(argv)
    try:
        client = RobustdClient(args.socket)
    except OSError as e:
        print("robustd_client: cannot reach robustd at %s: %s (start it with: robustd --socket)" % (args.socket or default_socket(), e),
              file=sys.stderr)
        return 2
    try:
        if args.command == "call":
            params = json.loads(args.params) if args.params else None
            print(json.dumps(client.call(args.method, params)))
            return 0
        metrics = [m for m in args.metrics.split(",") if m]
        seen = 0
        for u in client.subscribe(metrics or None, args.interval_ms, args.on_change):
            if args.json:
                print(json.dumps(u), flush=True)
            else:
                vals = "  ".join("%s=%.4g" % (k, v) for k, v in sorted(u["values"].items()))
                print("%.3f  %s%s" % (u["at"], vals, "  (coalesced %d)" % u["coalesced"] if u["coalesced"] else ""), flush=True)
            seen += 1
            if args.count and seen >= args.count:
                break
        return 0
    except RobustdError as e:
        print("robustd_client: error %s: %s" % (e.code, e.message), file=sys.stderr)
        return 1
    except (ConnectionError, OSError) as e:
        print("robustd_client: %s" % e, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    finally:
        client.close()


if __name__ == "__main__":
    sys.exit(main())
