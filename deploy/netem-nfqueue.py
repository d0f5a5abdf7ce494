#!/usr/bin/env python3
"""netem in user space, for kernels built without sch_netem (CONFIG_NET_SCH_NETEM unset).

deploy/testnet.sh runs one of these inside each node's network namespace, behind

    iptables -A OUTPUT -o eth0 -j NFQUEUE --queue-num 0

so every packet the node sends is handed to this process, which drops it with probability LOSS and
otherwise gives it back to the kernel (verdict ACCEPT) after DELAY +/- JITTER milliseconds, drawn
uniformly like `tc qdisc add dev eth0 root netem delay DELAY JITTER loss LOSS%`. Verdicts are
independent, so jitter reorders packets as netem does. Only packet metadata is copied to user space.

It speaks nfnetlink_queue over a raw netlink socket: no library beyond Python's standard one.
Usage: netem-nfqueue.py --delay-ms 50 --jitter-ms 10 --loss-pct 0.1 [--queue 0] [--seed N]
"""

import argparse
import errno
import heapq
import random
import select
import signal
import socket
import struct
import sys
import time

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET = 0
NFQNL_MSG_VERDICT = 1
NFQNL_MSG_CONFIG = 2
NLM_F_REQUEST = 1
NLM_F_ACK = 4
NLMSG_ERROR = 2
NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NFQA_CFG_CMD = 1
NFQA_CFG_PARAMS = 2
NFQA_CFG_QUEUE_MAXLEN = 3
NFQNL_CFG_CMD_BIND = 1
NFQNL_COPY_META = 1
NF_DROP = 0
NF_ACCEPT = 1


def attr(kind, payload):
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * ((4 - length % 4) % 4)


class Queue:
    def __init__(self, num):
        self.num = num
        self.seq = 0
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        for opt in (33, socket.SO_RCVBUF):  # SO_RCVBUFFORCE (root), else what we may have
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, opt, 8 << 20)
                break
            except OSError:
                continue
        self.sock.bind((0, 0))

    def send(self, msg, attrs, flags=NLM_F_REQUEST):
        self.seq += 1
        body = struct.pack("!BBH", socket.AF_UNSPEC, 0, self.num) + b"".join(attrs)
        kind = (NFNL_SUBSYS_QUEUE << 8) | msg
        self.sock.send(struct.pack("=IHHII", 16 + len(body), kind, flags, self.seq, 0) + body)

    def configure(self, maxlen):
        self.send(NFQNL_MSG_CONFIG, [attr(NFQA_CFG_CMD, struct.pack("!BxH", NFQNL_CFG_CMD_BIND, 0))],
                  NLM_F_REQUEST | NLM_F_ACK)
        self.expect_ack("bind queue %d" % self.num)
        self.send(NFQNL_MSG_CONFIG, [attr(NFQA_CFG_PARAMS, struct.pack("!IB", 0, NFQNL_COPY_META))],
                  NLM_F_REQUEST | NLM_F_ACK)
        self.expect_ack("set copy mode")
        self.send(NFQNL_MSG_CONFIG, [attr(NFQA_CFG_QUEUE_MAXLEN, struct.pack("!I", maxlen))],
                  NLM_F_REQUEST | NLM_F_ACK)
        self.expect_ack("set queue length")

    def expect_ack(self, what):
        data = self.sock.recv(65536)
        _, kind = struct.unpack_from("=IH", data)
        if kind == NLMSG_ERROR:
            (err,) = struct.unpack_from("=i", data, 16)
            if err != 0:
                sys.exit("netem-nfqueue: %s: %s" % (what, errno.errorcode.get(-err, err)))

    def verdict(self, packet_id, verdict):
        self.send(NFQNL_MSG_VERDICT, [attr(NFQA_VERDICT_HDR, struct.pack("!II", verdict, packet_id))])

    def packets(self, data):
        """Yields the packet ids of the PACKET messages in one recv buffer."""
        off = 0
        while off + 16 <= len(data):
            length, kind = struct.unpack_from("=IH", data, off)
            if length < 16:
                break
            if kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
                a = off + 20  # nlmsghdr (16) + nfgenmsg (4)
                while a + 4 <= off + length:
                    alen, atype = struct.unpack_from("=HH", data, a)
                    if alen < 4:
                        break
                    if atype & 0x7FFF == NFQA_PACKET_HDR:
                        yield struct.unpack_from("!I", data, a + 4)[0]
                        break
                    a += (alen + 3) & ~3
            off += (length + 3) & ~3


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--delay-ms", type=float, default=50.0)
    p.add_argument("--jitter-ms", type=float, default=10.0)
    p.add_argument("--loss-pct", type=float, default=0.1)
    p.add_argument("--queue", type=int, default=0)
    p.add_argument("--maxlen", type=int, default=65536)
    p.add_argument("--seed", type=int, default=None)
    a = p.parse_args()
    rng = random.Random(a.seed)
    q = Queue(a.queue)
    q.configure(a.maxlen)
    held = []  # (release time, packet id)
    passed = dropped = 0

    def stop(*_):
        print("netem-nfqueue: stopped: passed %d dropped %d" % (passed, dropped), flush=True)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print("netem-nfqueue: queue %d: delay %.1f ms +/- %.1f ms, loss %.3f %%"
          % (a.queue, a.delay_ms, a.jitter_ms, a.loss_pct), flush=True)
    last_report = time.monotonic()
    while True:
        now = time.monotonic()
        while held and held[0][0] <= now:
            q.verdict(heapq.heappop(held)[1], NF_ACCEPT)
            passed += 1
        timeout = max(0.0, held[0][0] - now) if held else 1.0
        ready, _, _ = select.select([q.sock], [], [], timeout)
        if ready:
            try:
                data = q.sock.recv(1 << 20)
            except OSError as e:
                if e.errno == errno.ENOBUFS:  # the kernel dropped notifications; go on
                    print("netem-nfqueue: ENOBUFS", flush=True)
                    continue
                raise
            now = time.monotonic()
            for pid in q.packets(data):
                if rng.random() * 100.0 < a.loss_pct:
                    q.verdict(pid, NF_DROP)
                    dropped += 1
                else:
                    delay = a.delay_ms + rng.uniform(-a.jitter_ms, a.jitter_ms)
                    heapq.heappush(held, (now + max(0.0, delay) / 1000.0, pid))
        if now - last_report >= 60:
            print("netem-nfqueue: passed %d dropped %d held %d" % (passed, dropped, len(held)),
                  flush=True)
            last_report = now


if __name__ == "__main__":
    main()
