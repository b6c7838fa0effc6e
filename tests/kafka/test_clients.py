"""Real Kafka clients against one skein-node: kcat, confluent-kafka and kafka-python.

Run by tests/kafka/run, which starts the node and sets SKEIN_KAFKA_BOOTSTRAP (HOST:PORT) and
SKEIN_KAFKA_NODE_ID. Every check raises on failure; the script exits non-zero on the first one.

What it checks:
- `kcat -L` lists the broker by its advertised Kafka address;
- for every codec (none, gzip, snappy, lz4, zstd), records with keys, null values, headers and a
  1 MiB value round-trip byte-exact across clients: confluent-kafka (idempotent) -> kafka-python
  and kcat, kafka-python -> confluent-kafka, kcat -> confluent-kafka;
- ListOffsets by timestamp (confluent-kafka `offsets_for_times`, kafka-python too);
- topic creation (also validate-only), deletion and DescribeConfigs through both admin clients;
- commits outside group management (`assign()` consumers) and committed offsets through both
  clients; listing and deleting groups through confluent-kafka's admin client;
- consumer groups (Kafka's classic protocol, `subscribe()`): two confluent-kafka consumers of a
  4-partition topic rebalance when a third joins, when it closes, and when a member process is
  SIGKILLed without leaving (its partitions move after the session timeout); every produced
  record is consumed at least once; `skein group describe --output json` shows the members,
  their partitions and the lag (SKEIN_BIN, SKEIN_BROKERS);
- commit, restart, resume exactly after the commit: confluent-kafka, then kafka-python's
  KafkaConsumer with a group_id; `kcat -G` reads a topic as a group member.

`test_clients.py member GROUP TOPIC` is the member process that the group check SIGKILLs.
"""

import json
import os
import subprocess
import sys
import threading
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic
from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KTopicPartition
from kafka.admin import ConfigResource as KConfigResource
from kafka.admin import ConfigResourceType, KafkaAdminClient
from kafka.admin import NewTopic as KNewTopic

BOOTSTRAP = os.environ["SKEIN_KAFKA_BOOTSTRAP"]
NODE_ID = int(os.environ.get("SKEIN_KAFKA_NODE_ID", "1"))
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
DEADLINE_S = 30
BIG = 1 << 20
# A 1 MiB value plus framing is above both clients' default request size limits.
REQUEST_BYTES_MAX = 4 * BIG


def records(tag, null_header=True):
    """(key, value, headers) tuples: keys, a null value, headers (one with a null value, which
    kafka-python cannot send), an empty value, 1 MiB."""
    h2 = ("h2", None) if null_header else ("h2", b"")
    big = bytes((i * 7 + len(tag)) % 251 for i in range(BIG))
    return [
        (b"k1", f"{tag}-one".encode(), []),
        (b"k2", None, []),
        (None, f"{tag}-no-key".encode(), [("h1", b"v1"), h2, ("h1", b"again")]),
        (b"k4", b"", [("bin", bytes(range(256)))]),
        (b"big", big, [("size", str(BIG).encode())]),
        (b"\x00\xff", b"\x00binary\xff", []),
    ]


def norm_headers(headers):
    return [(k, v) for k, v in (headers or [])]


def create_topics(admin, names, partitions=1):
    futures = admin.create_topics([NewTopic(n, partitions, 1) for n in names])
    for name, f in futures.items():
        f.result(timeout=DEADLINE_S)


def confluent_produce(topic, codec, recs, idempotent=True):
    p = Producer(
        {
            "bootstrap.servers": BOOTSTRAP,
            "compression.type": codec,
            "enable.idempotence": idempotent,
            "message.max.bytes": REQUEST_BYTES_MAX,
            "linger.ms": 5,
        }
    )
    errors = []

    def report(err, _msg):
        if err is not None:
            errors.append(err)

    for k, v, h in recs:
        p.produce(topic, key=k, value=v, headers=h, partition=0, on_delivery=report)
    left = p.flush(DEADLINE_S)
    assert left == 0 and not errors, f"confluent produce to {topic}: {left} left, {errors}"


def kafka_python_produce(topic, codec, recs):
    p = KafkaProducer(
        bootstrap_servers=BOOTSTRAP,
        compression_type=None if codec == "none" else codec,
        max_request_size=REQUEST_BYTES_MAX,
        linger_ms=5,
    )
    futures = [p.send(topic, key=k, value=v, headers=h, partition=0) for k, v, h in recs]
    for f in futures:
        f.get(timeout=DEADLINE_S)
    p.close()


def kcat_produce(topic, codec, lines):
    data = "".join(f"{k}:{v}\n" for k, v in lines).encode()
    subprocess.run(
        ["kcat", "-b", BOOTSTRAP, "-P", "-t", topic, "-p", "0", "-K", ":", "-z", codec],
        input=data,
        check=True,
        timeout=DEADLINE_S,
    )


def confluent_consume(topic, count):
    c = Consumer(
        {
            "bootstrap.servers": BOOTSTRAP,
            # librdkafka insists on a group id; assign() with explicit offsets never uses it.
            "group.id": "skein-kafka-test-unused",
            "enable.auto.commit": False,
            "fetch.message.max.bytes": REQUEST_BYTES_MAX,
        }
    )
    c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    got = []
    deadline = time.time() + DEADLINE_S
    while len(got) < count and time.time() < deadline:
        m = c.poll(1.0)
        if m is None:
            continue
        assert m.error() is None, f"confluent consume {topic}: {m.error()}"
        got.append((m.offset(), m.key(), m.value(), norm_headers(m.headers())))
    c.close()
    assert len(got) == count, f"confluent consumed {len(got)} of {count} from {topic}"
    return got


def kafka_python_consume(topic, count):
    c = KafkaConsumer(
        bootstrap_servers=BOOTSTRAP,
        enable_auto_commit=False,
        max_partition_fetch_bytes=REQUEST_BYTES_MAX,
    )
    tp = KTopicPartition(topic, 0)
    c.assign([tp])
    c.seek_to_beginning(tp)
    got = []
    deadline = time.time() + DEADLINE_S
    while len(got) < count and time.time() < deadline:
        for msgs in c.poll(timeout_ms=1000).values():
            got.extend((m.offset, m.key, m.value, norm_headers(m.headers)) for m in msgs)
    c.close()
    assert len(got) == count, f"kafka-python consumed {len(got)} of {count} from {topic}"
    return got


def kcat_consume(topic):
    """(key, value) of every record, read with kcat; values must be text without newlines."""
    out = subprocess.run(
        ["kcat", "-b", BOOTSTRAP, "-C", "-t", topic, "-p", "0", "-o", "beginning", "-e",
         "-q", "-f", "%k\t%S\n"],
        check=True,
        capture_output=True,
        timeout=DEADLINE_S,
    ).stdout
    return [line.split(b"\t", 1) for line in out.splitlines()]


def expect(got, recs, what):
    want = [(i, k, v, h) for i, (k, v, h) in enumerate(recs)]
    for g, w in zip(got, want):
        assert g == w, f"{what}: record {w[0]} differs (key {g[1]!r} vs {w[1]!r})"
    assert len(got) == len(want), f"{what}: {len(got)} records, expected {len(want)}"


def check_kcat_lists_the_broker():
    out = subprocess.run(
        ["kcat", "-b", BOOTSTRAP, "-L"], check=True, capture_output=True, timeout=DEADLINE_S
    ).stdout.decode()
    want = f"broker {NODE_ID} at {BOOTSTRAP}"
    assert want in out, f"kcat -L does not list `{want}`:\n{out}"


def check_codecs_round_trip(admin):
    topics = [f"{codec}-{src}" for codec in CODECS for src in ("confluent", "kp", "kcat")]
    create_topics(admin, topics)
    for codec in CODECS:
        recs = records(codec)
        t = f"{codec}-confluent"
        confluent_produce(t, codec, recs)
        expect(kafka_python_consume(t, len(recs)), recs, f"{t} read by kafka-python")
        expect(confluent_consume(t, len(recs)), recs, f"{t} read by confluent-kafka")
        sizes = [int(size) for _, size in kcat_consume(t)]
        assert sizes == [-1 if v is None else len(v) for _, v, _ in recs], f"{t} sizes via kcat"

        t = f"{codec}-kp"
        recs = records(codec, null_header=False)
        kafka_python_produce(t, codec, recs)
        expect(confluent_consume(t, len(recs)), recs, f"{t} read by confluent-kafka")

        t = f"{codec}-kcat"
        lines = [(f"key{i}", f"{codec} line {i}") for i in range(20)]
        kcat_produce(t, codec, lines)
        got = confluent_consume(t, len(lines))
        assert [(k.decode(), v.decode()) for _, k, v, _ in got] == lines, f"{t} via kcat"
        print(f"ok: codec {codec}: confluent-kafka, kafka-python and kcat agree byte for byte")


def check_offsets_for_times(admin):
    create_topics(admin, ["times"])
    p = Producer({"bootstrap.servers": BOOTSTRAP, "linger.ms": 0})
    base = 1_700_000_000_000
    for i in range(10):
        p.produce("times", value=f"t{i}".encode(), timestamp=base + 1000 * i, partition=0)
        p.flush(DEADLINE_S)
    c = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": "skein-kafka-test-unused"})
    for ts, want in [(base, 0), (base + 1, 1), (base + 4500, 5), (base + 9000, 9),
                     (base + 10_000, -1), (0, 0)]:
        [tp] = c.offsets_for_times([TopicPartition("times", 0, ts)], timeout=DEADLINE_S)
        assert tp.error is None and tp.offset == want, f"offsets_for_times({ts}): {tp}"
    c.close()
    k = KafkaConsumer(bootstrap_servers=BOOTSTRAP)
    tp = KTopicPartition("times", 0)
    found = k.offsets_for_times({tp: base + 2500})[tp]
    assert found is not None and (found.offset, found.timestamp) == (3, base + 3000), found
    assert k.offsets_for_times({tp: base + 99_999})[tp] is None
    k.close()
    print("ok: ListOffsets by timestamp (confluent-kafka and kafka-python)")


def check_admin_clients(admin):
    # confluent-kafka: validate-only, create with configs, describe, delete.
    f = admin.create_topics([NewTopic("adm", 2, 1)], validate_only=True)["adm"]
    f.result(timeout=DEADLINE_S)
    assert "adm" not in admin.list_topics(timeout=DEADLINE_S).topics, "validate-only created"
    topic = NewTopic("adm", 2, 1, config={"retention.ms": "7200000"})
    admin.create_topics([topic])["adm"].result(timeout=DEADLINE_S)
    res = ConfigResource(ConfigResource.Type.TOPIC, "adm")
    configs = admin.describe_configs([res])[res].result(timeout=DEADLINE_S)
    assert configs["retention.ms"].value == "7200000", configs["retention.ms"]
    assert configs["cleanup.policy"].value == "delete"
    assert int(configs["segment.bytes"].value) > 0
    broker = ConfigResource(ConfigResource.Type.BROKER, str(NODE_ID))
    bconf = admin.describe_configs([broker])[broker].result(timeout=DEADLINE_S)
    assert bconf["broker.id"].value == str(NODE_ID)
    admin.delete_topics(["adm"])["adm"].result(timeout=DEADLINE_S)
    deadline = time.time() + DEADLINE_S
    while "adm" in admin.list_topics(timeout=DEADLINE_S).topics:
        assert time.time() < deadline, "adm not deleted"

    # kafka-python's admin client.
    ka = KafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    ka.create_topics([KNewTopic("adm-kp", 3, 1, topic_configs={"retention.bytes": "1048576"})])
    assert "adm-kp" in ka.list_topics()
    desc = ka.describe_configs([KConfigResource(ConfigResourceType.TOPIC, "adm-kp")])
    text = repr(desc)
    assert "'retention.bytes': {'value': '1048576'" in text, text
    ka.delete_topics(["adm-kp"])
    deadline = time.time() + DEADLINE_S
    while "adm-kp" in ka.list_topics():
        assert time.time() < deadline, "adm-kp not deleted"
    ka.close()
    print("ok: create (validate-only too), describe configs and delete through both admin clients")


def check_standalone_commits(admin):
    """assign() consumers commit outside group management (generation -1): stored in
    __consumer_offsets by Skein's coordinator, read back by both clients, listed, deleted."""
    create_topics(admin, ["commits"], partitions=2)
    c = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": "kafka-commits",
                  "enable.auto.commit": False})
    c.commit(offsets=[TopicPartition("commits", 0, 3), TopicPartition("commits", 1, 4)],
             asynchronous=False)
    got = c.committed([TopicPartition("commits", 0), TopicPartition("commits", 1)],
                      timeout=DEADLINE_S)
    assert [(tp.partition, tp.offset) for tp in got] == [(0, 3), (1, 4)], got
    c.close()
    k = KafkaConsumer(bootstrap_servers=BOOTSTRAP, group_id="kafka-commits",
                      enable_auto_commit=False)
    tp = KTopicPartition("commits", 0)
    k.assign([tp])
    assert k.committed(tp) == 3, k.committed(tp)
    from kafka.structs import OffsetAndMetadata
    k.commit({tp: OffsetAndMetadata(6, "", -1)})
    assert k.committed(tp) == 6, k.committed(tp)
    k.close()
    listed = admin.list_consumer_groups().result(timeout=DEADLINE_S)
    assert "kafka-commits" in [g.group_id for g in listed.valid], listed.valid
    [f] = admin.delete_consumer_groups(["kafka-commits"]).values()
    f.result(timeout=DEADLINE_S)
    listed = admin.list_consumer_groups().result(timeout=DEADLINE_S)
    assert "kafka-commits" not in [g.group_id for g in listed.valid], listed.valid
    print("ok: standalone commits (confluent-kafka, kafka-python), list and delete groups")


GROUP_SESSION_MS = 6000


def group_consumer(group, name, auto_commit=True):
    return Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": group, "client.id": name,
                     "auto.offset.reset": "earliest", "session.timeout.ms": GROUP_SESSION_MS,
                     "heartbeat.interval.ms": 500, "enable.auto.commit": auto_commit,
                     "auto.commit.interval.ms": 500})


class Member:
    """A subscribed confluent-kafka consumer polled by the test's one loop. librdkafka commits
    the positions of processed records every 500 ms and when partitions are revoked."""

    def __init__(self, name, group, topic):
        self.name = name
        self.assigned = set()
        self.seen = []
        self.c = group_consumer(group, name)
        self.c.subscribe([topic], on_assign=self._assign, on_revoke=self._revoke)

    def _assign(self, _c, parts):
        self.assigned = {p.partition for p in parts}

    def _revoke(self, _c, _parts):
        self.assigned = set()

    def poll(self):
        m = self.c.poll(0.05)
        if m is not None and m.error() is None:
            self.seen.append(m.value())


def poll_until(members, cond, what, timeout=DEADLINE_S):
    deadline = time.time() + timeout
    while not cond():
        state = {m.name: sorted(m.assigned) for m in members}
        assert time.time() < deadline, f"{what}: assignments {state}"
        for m in members:
            m.poll()


def balanced(members, partitions=4):
    got = sorted(p for m in members for p in m.assigned)
    return got == list(range(partitions)) and all(m.assigned for m in members)


def member_process(group, topic):
    """The member that is SIGKILLed: it never commits, so another member reads its records
    again from the last commit."""
    c = group_consumer(group, "doomed", auto_commit=False)
    c.subscribe([topic], on_assign=lambda _c, parts: print(f"assigned {len(parts)}", flush=True))
    while True:
        c.poll(0.1)


def produce_values(topic, first, count):
    values = [f"r{i}".encode() for i in range(first, first + count)]
    p = Producer({"bootstrap.servers": BOOTSTRAP, "linger.ms": 5})
    for i, v in enumerate(values):
        p.produce(topic, key=f"k{first + i}".encode(), value=v)
    assert p.flush(DEADLINE_S) == 0, "unflushed records"
    return values


def skein_describe(group):
    out = subprocess.run([os.environ["SKEIN_BIN"], "group", "describe", group, "--output", "json"],
                         capture_output=True, text=True, timeout=DEADLINE_S, check=True)
    return json.loads(out.stdout)


def check_group_describe(members, group, topic, produced):
    """`skein group describe` shows the Kafka client's group: members with their (decoded)
    partitions, committed offsets, end offsets and lag, down to 0 once all is committed."""
    deadline = time.time() + DEADLINE_S
    while True:
        d = skein_describe(group)
        if d["total_lag"] == 0 and d["state"] == "Stable":
            break
        assert time.time() < deadline, f"lag never reached 0: {d}"
        for _ in range(10):
            for m in members:
                m.poll()
    assert sorted(m["client_id"] for m in d["members"]) == ["c1", "c2"], d
    owned = sorted((a["topic"], a["partition"]) for m in d["members"] for a in m["assignment"])
    assert owned == [(topic, p) for p in range(4)], d
    assert sum(p["end_offset"] for p in d["partitions"]) == produced, d
    assert all(p["committed_offset"] == p["end_offset"] for p in d["partitions"]), d


def start_doomed(group, topic):
    proc = subprocess.Popen([sys.executable, __file__, "member", group, topic],
                            stdout=subprocess.PIPE, text=True)
    lines = []
    threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
    return proc, lines


def check_consumer_group_rebalances(admin):
    """Two members, a third joins, it closes; a fourth member process is SIGKILLed and its
    partitions move after the session timeout. Nothing is skipped."""
    topic, group = "grp", "kafka-group"
    create_topics(admin, [topic], partitions=4)
    produced = produce_values(topic, 0, 100)
    c1, c2 = Member("c1", group, topic), Member("c2", group, topic)
    poll_until([c1, c2], lambda: balanced([c1, c2]), "two members share 4 partitions")
    c3 = Member("c3", group, topic)
    produced += produce_values(topic, 100, 100)
    poll_until([c1, c2, c3], lambda: balanced([c1, c2, c3]), "a third member joins")
    c3.c.close()
    poll_until([c1, c2], lambda: balanced([c1, c2]), "the third member left")
    proc, lines = start_doomed(group, topic)
    try:
        poll_until([c1, c2], lambda: lines and len(c1.assigned) + len(c2.assigned) < 4,
                   "the member process joins")
        produced += produce_values(topic, 200, 100)
        proc.kill()
        proc.wait()
        started = time.time()
        poll_until([c1, c2], lambda: balanced([c1, c2]), "the killed member's partitions move")
        print(f"ok: partitions of the SIGKILLed member moved after {time.time() - started:.1f} s")
    finally:
        proc.kill()
    everyone = [c1, c2, c3]
    missing = lambda: set(produced) - {v for m in everyone for v in m.seen}
    poll_until([c1, c2], lambda: not missing(), "every record consumed")
    check_group_describe([c1, c2], group, topic, len(produced))
    c1.c.close()
    c2.c.close()
    print("ok: group rebalances (join, close, SIGKILL), nothing skipped, skein group describe")


def check_commit_restart_resume(admin):
    """Commit, close, start again: the next consumer of the group resumes right after the
    commit (confluent-kafka twice, then kafka-python's KafkaConsumer)."""
    topic, group = "resume", "kafka-resume"
    create_topics(admin, [topic], partitions=1)
    produce_values(topic, 0, 30)
    for first, upto in [(0, 10), (10, 20)]:
        c = group_consumer(group, f"resume-{first}", auto_commit=False)
        c.subscribe([topic])
        offsets, deadline = [], time.time() + DEADLINE_S
        while len(offsets) < upto - first:
            assert time.time() < deadline, f"consumed only {offsets}"
            m = c.poll(0.2)
            if m is not None and m.error() is None:
                offsets.append(m.offset())
                if len(offsets) == upto - first:
                    c.commit(message=m, asynchronous=False)
        assert offsets == list(range(first, upto)), offsets
        c.close()
    k = KafkaConsumer(bootstrap_servers=BOOTSTRAP, group_id=group, enable_auto_commit=False,
                      auto_offset_reset="earliest", session_timeout_ms=GROUP_SESSION_MS)
    k.subscribe([topic])
    got, deadline = [], time.time() + DEADLINE_S
    while not got:
        assert time.time() < deadline, "kafka-python consumed nothing"
        for recs in k.poll(timeout_ms=200).values():
            got.extend(r.offset for r in recs)
    assert got[0] == 20, got
    k.commit()
    k.close()
    c = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": group})
    [tp] = c.committed([TopicPartition(topic, 0)], timeout=DEADLINE_S)
    assert tp.offset == got[-1] + 1, tp
    c.close()
    print("ok: commit, restart, resume right after the commit (confluent-kafka, kafka-python)")


def check_kcat_group():
    """kcat -G: a librdkafka group member from the command line, exiting at the end."""
    out = subprocess.run(["kcat", "-b", BOOTSTRAP, "-G", "kcat-group", "-X",
                          "auto.offset.reset=earliest", "-e", "-q", "-f", "%o\n", "resume"],
                         capture_output=True, text=True, timeout=DEADLINE_S, check=True)
    assert sorted(int(o) for o in out.stdout.split()) == list(range(30)), out.stdout
    print("ok: kcat -G consumes as a group member")


def main():
    if sys.argv[1:2] == ["member"]:
        return member_process(sys.argv[2], sys.argv[3])
    check_kcat_lists_the_broker()
    print("ok: kcat -L lists the broker")
    admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
    check_admin_clients(admin)
    check_offsets_for_times(admin)
    check_standalone_commits(admin)
    check_commit_restart_resume(admin)
    check_kcat_group()
    check_consumer_group_rebalances(admin)
    check_codecs_round_trip(admin)
    print("all Kafka client checks passed")


if __name__ == "__main__":
    sys.exit(main())
