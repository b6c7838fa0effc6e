"""An idempotent Kafka producer keeps writing while its partition leader is SIGKILLed.

Run by tests/kafka/run with SKEIN_NODE_BIN set: starts three skein-node processes on free ports
(replication factor 3), produces RECORDS numbered values to one partition with confluent-kafka
(librdkafka, enable.idempotence=true, acks=all), SIGKILLs the partition's leader once a third of
them is acknowledged, restarts it after two thirds, then reads the partition back from the
beginning. Invariant: every record acknowledged, each value exactly once, in order (no
duplicates, no gaps). Exits non-zero with the first violation.
"""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

NODE_BIN = os.environ["SKEIN_NODE_BIN"]
RECORDS = 30_000
TOPIC = "idempotence"
DEADLINE_S = 60
IN_FLIGHT = 2_000


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


class Cluster:
    """Three skein-node processes; node i listens on self.ports[i] = (client, peer, http, kafka)."""

    def __init__(self, work):
        self.work = work
        flat = free_ports(12)
        self.ports = {i + 1: flat[4 * i:4 * i + 4] for i in range(3)}
        self.peers = ",".join(f"{i}=127.0.0.1:{p[1]}" for i, p in self.ports.items())
        self.procs = {}

    def bootstrap(self):
        return ",".join(f"127.0.0.1:{p[3]}" for p in self.ports.values())

    def start(self, i):
        client, peer, http, kafka = self.ports[i]
        log = open(os.path.join(self.work, f"node{i}.log"), "ab")
        self.procs[i] = subprocess.Popen(
            [NODE_BIN, "--node-id", str(i), "--data-dir", os.path.join(self.work, f"d{i}"),
             "--client-addr", f"127.0.0.1:{client}", "--peer-addr", f"127.0.0.1:{peer}",
             "--http-addr", f"127.0.0.1:{http}", "--kafka-addr", f"127.0.0.1:{kafka}",
             "--peers", self.peers],
            stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")})

    def wait_ready(self, i):
        deadline = time.time() + DEADLINE_S
        url = f"http://127.0.0.1:{self.ports[i][2]}/readyz"
        while True:
            try:
                urllib.request.urlopen(url, timeout=1)
                return
            except OSError:
                if self.procs[i].poll() is not None:
                    raise SystemExit(f"node {i} exited; see {self.work}/node{i}.log")
                if time.time() > deadline:
                    raise SystemExit(f"node {i} not ready within {DEADLINE_S} s")
                time.sleep(0.2)

    def kill(self, i):
        self.procs[i].send_signal(signal.SIGKILL)
        self.procs[i].wait()

    def stop_all(self):
        for p in self.procs.values():
            if p.poll() is None:
                p.terminate()
        for p in self.procs.values():
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


def create_topic(bootstrap):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.time() + DEADLINE_S
    while True:
        f = admin.create_topics([NewTopic(TOPIC, 1, 3)])[TOPIC]
        try:
            f.result(10)
            return
        except Exception as e:  # the cluster may still be electing its metadata leader
            if "already exists" in str(e).lower():
                return
            if time.time() > deadline:
                raise
            time.sleep(0.5)


def leader_of(producer):
    deadline = time.time() + DEADLINE_S
    while time.time() < deadline:
        md = producer.list_topics(TOPIC, timeout=5)
        p = md.topics[TOPIC].partitions.get(0)
        if p is not None and p.leader > 0:
            return p.leader
        time.sleep(0.2)
    raise SystemExit("partition 0 has no leader")


def produce(cluster):
    """Produces RECORDS values; kills the leader at 1/3 acknowledged, restarts it at 2/3."""
    acked, errors = [], []

    def report(err, msg):
        (errors if err else acked).append(err or msg.offset())

    p = Producer({"bootstrap.servers": cluster.bootstrap(), "enable.idempotence": True,
                  "acks": "all", "linger.ms": 5, "message.timeout.ms": 120_000})
    victim = None
    for n in range(RECORDS):
        # At most IN_FLIGHT unacknowledged, so that the kill lands in the middle of the run.
        while n - len(acked) - len(errors) > IN_FLIGHT:
            p.poll(0.05)
        while True:
            try:
                p.produce(TOPIC, value=b"%08d" % n, partition=0, on_delivery=report)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
        if victim is None and len(acked) >= RECORDS // 3:
            victim = leader_of(p)
            print(f"SIGKILL node {victim}, the leader, after {len(acked)} acknowledged", flush=True)
            cluster.kill(victim)
        elif victim is not None and n == 2 * RECORDS // 3 and cluster.procs[victim].poll() is not None:
            print(f"restart node {victim}", flush=True)
            cluster.start(victim)
    left = p.flush(DEADLINE_S * 2)
    if victim is None:
        raise SystemExit("the run ended before the leader was killed; raise RECORDS")
    if left or errors or len(acked) != RECORDS:
        raise SystemExit(f"not all acknowledged: {len(acked)} acked, {left} pending, errors {errors[:3]}")


def read_back(bootstrap):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "idempotence-check",
                  "enable.auto.commit": False})
    c.assign([TopicPartition(TOPIC, 0, OFFSET_BEGINNING)])
    values, deadline = [], time.time() + DEADLINE_S
    while len(values) < RECORDS and time.time() < deadline:
        m = c.poll(1.0)
        if m is None or m.error():
            continue
        values.append(int(m.value()))
    c.close()
    return values


def check(values):
    for i, v in enumerate(values):
        if v != i:
            kind = "duplicate" if v < i else "gap"
            raise SystemExit(f"{kind} at offset {i}: value {v}, expected {i}")
    if len(values) != RECORDS:
        raise SystemExit(f"read {len(values)} of {RECORDS} records")


def main():
    with tempfile.TemporaryDirectory(prefix="skein-idempotence.") as work:
        cluster = Cluster(work)
        try:
            for i in (1, 2, 3):
                cluster.start(i)
            for i in (1, 2, 3):
                cluster.wait_ready(i)
            create_topic(cluster.bootstrap())
            produce(cluster)
            check(read_back(cluster.bootstrap()))
        except BaseException:
            for i in (1, 2, 3):
                path = os.path.join(work, f"node{i}.log")
                if os.path.exists(path):
                    tail = open(path, "rb").read()[-3000:].decode("utf-8", "replace")
                    print(f"--- node {i} log (tail) ---\n{tail}", file=sys.stderr)
            raise
        finally:
            cluster.stop_all()
    print(f"ok: idempotent producer, leader SIGKILLed mid-run: {RECORDS} records, each once, in order")


if __name__ == "__main__":
    main()
