"""lockstep through PyPI's `etcd3` client (Debian: python3-etcd3), a non-Go,
non-Rust etcd v3 client. Run by node/tests/clients.rs against a 3-member
cluster of real `lockstep serve` processes:

    python3 python_etcd3.py LEADER_URL FOLLOWER_URL [FOLLOWER_URL ...]

Checks KV, txn, leases with keep-alive, and a watch that keeps delivering
across the leader's death: in the middle of the writes it prints
`KILL LEADER` and waits for a line on stdin (the test kills the leader
process, then answers). The watch is on a follower, so its stream survives;
every event must arrive exactly once and in order, compared with the history
replayed afterwards. Exit 0 and a last line `python etcd3: ok` on success.
"""

import sys
import threading
import time
from urllib.parse import urlparse

import etcd3


def client(url):
    u = urlparse(url)
    return etcd3.client(host=u.hostname, port=u.port, timeout=5)


def check(cond, what):
    if not cond:
        print(f"FAILED: {what}", flush=True)
        sys.exit(1)


def retry(f, what, seconds=15):
    """Calls f until it does not raise (a leader election makes calls fail for a moment)."""
    deadline = time.time() + seconds
    while True:
        try:
            return f()
        except Exception as e:  # noqa: BLE001 - any client error is retried
            if time.time() > deadline:
                print(f"FAILED: {what}: {e!r}", flush=True)
                sys.exit(1)
            time.sleep(0.1)


def kv_and_txn(c):
    c.put("py/a", "1")
    value, meta = c.get("py/a")
    check(value == b"1" and meta.version == 1, f"get after put: {value} {meta.version}")
    c.put("py/b", "2")
    keys = sorted(m.key for _, m in c.get_prefix("py/"))
    check(keys == [b"py/a", b"py/b"], f"get_prefix: {keys}")
    ok, _ = c.transaction(
        compare=[c.transactions.value("py/a") == "1"],
        success=[c.transactions.put("py/a", "swapped")],
        failure=[c.transactions.put("py/failed", "x")],
    )
    check(ok, "cas with the right value succeeds")
    ok, responses = c.transaction(
        compare=[c.transactions.value("py/a") == "1"],
        success=[c.transactions.put("py/a", "wrong")],
        failure=[c.transactions.get("py/a")],
    )
    check(not ok, "cas with a stale value fails")
    check(responses[0][0][0] == b"swapped", f"the failure branch reads the value: {responses}")
    check(c.get("py/failed")[0] is None, "the failure branch of the first txn did not run")
    check(c.delete("py/b"), "delete of an existing key")
    check(not c.delete("py/b"), "delete of a missing key")


def leases(c):
    lease = c.lease(4)
    c.put("py/leased", "v", lease=lease)
    check(lease.keys == [b"py/leased"], f"lease keys: {lease.keys}")
    # Keep it alive past its TTL.
    for _ in range(6):
        time.sleep(1)
        answers = list(lease.refresh())
        check(answers and answers[0].TTL == 4, f"keep-alive answer: {answers}")
    check(c.get("py/leased")[0] == b"v", "a kept-alive lease keeps its key")
    check(0 < lease.remaining_ttl <= 4, f"remaining ttl {lease.remaining_ttl}")
    lease.revoke()
    check(c.get("py/leased")[0] is None, "revoking the lease deletes its key")
    short = c.lease(2)
    c.put("py/expires", "v", lease=short)
    deadline = time.time() + 10
    while c.get("py/expires")[0] is not None:
        check(time.time() < deadline, "an unrenewed lease expires")
        time.sleep(0.2)


def watch_across_leader_kill(leader_url, follower_urls):
    writer = client(follower_urls[-1])
    watcher = client(follower_urls[0])
    start = writer.put("py/w/start", "0").header.revision + 1
    seen = []
    done = threading.Event()
    events, cancel = watcher.watch_prefix("py/w/", start_revision=start)

    def collect():
        for e in events:
            seen.append((e.mod_revision, e.key, e.value))
            if e.key == b"py/w/end":
                break
        done.set()

    threading.Thread(target=collect, daemon=True).start()
    for i in range(40):
        if i == 20:
            print("KILL LEADER", flush=True)
            check(sys.stdin.readline().strip() == "killed", "the test answers `killed`")
        retry(lambda: writer.put(f"py/w/{i:02}", str(i)), f"put py/w/{i:02}")
    retry(lambda: writer.put("py/w/end", "end"), "put py/w/end")
    check(done.wait(20), f"the watch saw the end key; saw {len(seen)} events")
    cancel()
    # The history as the store has it, from a fresh watch on another member.
    replay_events, replay_cancel = client(follower_urls[-1]).watch_prefix("py/w/", start_revision=start)
    history = []
    for e in replay_events:
        history.append((e.mod_revision, e.key, e.value))
        if e.key == b"py/w/end":
            break
    replay_cancel()
    revisions = [r for r, _, _ in seen]
    check(revisions == sorted(set(revisions)), "no duplicate or reordered event")
    check(seen == history, f"the live watch saw exactly the history: {len(seen)} vs {len(history)} events")
    written = {k for _, k, _ in seen}
    check(all(f"py/w/{i:02}".encode() in written for i in range(40)), "every acknowledged write was seen")
    print(f"watch across the leader's death: {len(seen)} events, none missed or repeated", flush=True)


def main():
    leader_url, follower_urls = sys.argv[1], sys.argv[2:]
    c = client(leader_url)
    members = c.members
    check(len(list(members)) == 3, "three members")
    kv_and_txn(c)
    kv_and_txn_follower = client(follower_urls[0])
    check(kv_and_txn_follower.get("py/a")[0] == b"swapped", "a follower reads the leader's write")
    leases(client(follower_urls[0]))
    watch_across_leader_kill(leader_url, follower_urls)
    print("python etcd3: ok", flush=True)


if __name__ == "__main__":
    main()
