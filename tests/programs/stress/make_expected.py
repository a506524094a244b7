"""Write the expected output (NAME.out) of each stress program from an independent computation in
Python, never from a lispvm run: `python tests/programs/stress/make_expected.py`.

Only what does not depend on scheduling is printed by the programs, so each answer here follows
from the program's parameters alone."""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent


def counting_actor(n: int) -> str:
    """N increments 0..N-1, all in order."""
    return f"(sent {n})\n(count {n} sum {n * (n - 1) // 2} out-of-order 0)\n"


def ping_pong(n: int) -> str:
    """N round trips, each answered by the ponger."""
    return f"(round-trips {n})\n(served {n})\n"


def thread_ring(r: int = 128, h: int = 10000) -> str:
    """The token starts at node 0 with H; node k passes it whenever it arrives above 0."""
    passed = [0] * r
    node, token = 0, h
    while token > 0:
        passed[node] += 1
        node, token = (node + 1) % r, token - 1
    counts = " ".join(map(str, passed))
    return f"(ended-at {node})\nhops {sum(passed)}\n({counts})\n"


def big(n: int = 64, m: int = 100) -> str:
    """Each actor's pings follow its own generator, so who receives what is fixed."""

    def rand(x: int) -> int:
        return (x * 1103515245 + 12345) % 2147483648

    def pick(i: int, seed: int) -> int:
        t = (seed // 65536) % n
        return (t + 1) % n if t == i else t

    got, checksum = [0] * n, [0] * n
    for i in range(n):
        s = rand(1 + 7919 * i)
        for seq in range(m):
            if seq:
                s = rand(s)
            target = pick(i, s)
            got[target] += 1
            checksum[target] += (i + 1) * (seq + 1)
    return f"all-done\npings {sum(got)}\nchecksum {sum(checksum)}\n({' '.join(map(str, got))})\n"


def chameneos(n: int = 5000) -> str:
    """The mall's count, 2N meetings among the creatures, none with itself, the colour sum kept."""
    colours = "blue red yellow red yellow blue red red blue yellow red blue".split()
    before = sum({"blue": 0, "red": 1, "yellow": 2}[c] for c in colours) % 3
    return (f"(meetings {n})\ncreature-meetings {2 * n}\nself-meetings 0\n"
            f"colour-sum-mod-3 before {before} after {before}\n")


def fork_join(jobs: int = 2000, workers: int = 8, per: int = 5000) -> str:
    """Create: the sum of every job's value; throughput: each worker's ordered fold."""
    total = sum(sum(k * k for k in range(i % 50)) for i in range(jobs))
    acc = 0
    for j in range(per):
        acc = (acc * 31 + j) % 1000000007
    ws = " ".join(f"({per} {acc})" for _ in range(workers))
    return f"(joined {total} {jobs * (jobs - 1) // 2})\nfed\n({ws})\n"


def ordering(senders: int = 8, per: int = 2000) -> str:
    """Every sender's messages, all in order, then every sender's `fin`."""
    counts = " ".join([str(per)] * senders)
    return f"received ({counts})\nout-of-order 0\nfinished ({' '.join(map(str, range(senders)))})\n"


def cross_list() -> str:
    """The 100,000-element list arrives whole, four times."""
    return "(" + " ".join([f"(100000 {sum(range(100000))} true)"] * 4) + ")\n"


def cross_string() -> str:
    """8192 chunks of 63 characters, each followed by a separator: 512 KiB."""
    return f"{8192 * 64} 63 true\n"


def cross_print() -> str:
    """Every one of the 10,000 lines, then the main process's line."""
    pad = "." * 88
    return "".join(f"line {100000 + i} {pad}\n" for i in range(10000)) + "(printer-ended normal)\n"


EXPECTED = {
    "counting_actor.out": counting_actor(200000),
    "counting_actor.1000000.out": counting_actor(1000000),
    "ping_pong.out": ping_pong(10000),
    "thread_ring.out": thread_ring(),
    "big.out": big(),
    "chameneos.out": chameneos(),
    "fork_join.out": fork_join(),
    "ordering.out": ordering(),
    "cross_list.out": cross_list(),
    "cross_string.out": cross_string(),
    "cross_print.out": cross_print(),
}

if __name__ == "__main__":
    for name, text in EXPECTED.items():
        (HERE / name).write_text(text)
        print("wrote", name)
