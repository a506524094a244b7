"""bench_codec: the term codec (vm/codec.py) against pickle protocol 5, encode and decode.

Every value that crosses between OS processes (schedulers, the device process) is encoded with
vm/codec.py since issue 12; before, it was pickled. This measures both on the same values in the
same run (seconds per value; codec / pickle ratios of medians, so below 1.0x the codec is faster):
- msg: one cross-scheduler event as the transport queues it, ("ev", pid, key, seq, "m", MSG) with
  MSG = ("m", pid, pid, seq, (list 'b 42)): the hot path of every message between schedulers;
- ints: (list/range 10000), a Lisp list of 10,000 integers;
- strs: a Lisp list of 1,000 strings of about 20 characters;
- proc: a process as it migrates: 20 frames deep in a recursion, 6 registers each, closures with
  a shared box, 8 messages in its mailbox;
- batch: 100 msg events as one wake-up of a busy link writes and reads them: the codec encodes
  each event as a frame when it is queued (so that `send` can refuse one too large) and the
  reader splits and decodes them; pickle, as the transport did before, pickles the list of 100
  with a length prefix and unpickles it.
pickle's numbers include the Python-level __reduce__ of the Lisp values (Cons, Pid, Closure...):
that is what the transport paid.

On a shared, loaded machine pyperf's benchmarks, run one after the other, see the load change
between the codec's and pickle's turns. `--interleaved ROUNDS` measures instead without pyperf:
each round times the codec then pickle on the same value, and the table gives
the median and quartiles of the per-round ratios, which a slow drift of the load leaves alone.

Usage: python perf/bench_codec.py [--fast] [-o result.json]
       python perf/bench_codec.py --interleaved 41
"""

from __future__ import annotations

import pickle
import time
from typing import Any

from common import REPO, Ratio, Suite

WORKLOADS = ("msg", "ints", "strs", "proc", "batch")

PROGRAM = """
(def walk (n acc) (if (== n 0) acc (+ 1 (walk (- n 1) (cons n acc)))))
(def counter () (let ((n 0)) (fn () (set n (+ n 1)) n)))
"""


def _values() -> dict[str, Any]:
    """The four workloads (built in each pyperf worker: prototypes travel by module key)."""
    import sys

    sys.path.insert(0, str(REPO / "tests"))  # (support.compile_text: source to .lbc)
    from lispvm.vm import lbc
    from lispvm.vm.process import Process
    from lispvm.vm.values import Box, Closure, Pid, from_list, intern
    from support import compile_text

    module = lbc.load(compile_text(PROGRAM, "bench_codec.lisp"))
    lbc.register(module)
    walk = next(p for p in module.protos if p.name == "walk")
    counter = next(p for p in module.protos if p.name == "counter")
    msg = ("m", Pid(0, 1), Pid(1, 2), 1234, from_list([intern("b"), 42]))
    box = Box(7)
    cl = Closure(walk, (), "walk")
    proc = Process(Pid(1, 77), cl, [3, from_list(list(range(10))), None, "tag", Closure(counter, (box,), "c"), 2.5])
    for depth in range(20):
        proc.frames.append((Closure(counter, (box,), "c") if depth % 5 == 0 else cl, None, 7,
                            [depth, from_list([depth, depth + 1]), None, intern("k"), "s", 1.5], 0))
    proc.mailbox = [("m", Pid(0, i), i, from_list([intern("x"), i, "payload"])) for i in range(8)]
    proc.links = {Pid(0, 1)}
    proc.seqs = {Pid(0, 1).key: 12}
    return {
        "msg": ("ev", Pid(0, 2), Pid(0, 1).key, 17, "m", msg),
        "ints": from_list(list(range(10_000))),
        "strs": from_list([f"string number {i:06d}" for i in range(1000)]),
        "proc": proc,
        "batch": [("ev", Pid(0, 2), Pid(0, 1).key, seq, "m", ("m", Pid(0, 1), Pid(1, 2), seq, msg[4]))
                  for seq in range(100)],
    }


def codec_batch_encode(events: list) -> bytes:
    from lispvm.vm.codec import encode_frame

    return b"".join([encode_frame(ev) for ev in events])


def codec_batch_decode(data: bytes) -> list:
    from lispvm.vm.codec import FrameReader, decode

    return [decode(p) for p in FrameReader().feed(data)]


def pickle_batch_encode(events: list) -> bytes:
    data = pickle.dumps(events, 5)
    return len(data).to_bytes(4, "little") + data


def pickle_batch_decode(data: bytes) -> list:
    return pickle.loads(data[4:])


def timed(loops: int, fn: Any, arg: Any) -> float:
    """pyperf time function: `loops` calls of fn(arg)."""
    t0 = time.perf_counter()
    for _ in range(loops):
        fn(arg)
    return time.perf_counter() - t0


def _functions(name: str) -> tuple[Any, Any, Any, Any]:
    """(codec encode, codec decode, pickle encode, pickle decode) for a workload."""
    from lispvm.vm import codec

    if name == "batch":
        return codec_batch_encode, codec_batch_decode, pickle_batch_encode, pickle_batch_decode
    return codec.encode, codec.decode, (lambda x: pickle.dumps(x, 5)), pickle.loads


def interleaved(rounds: int) -> None:
    """The ratios from alternating rounds (see the module's docstring), printed as a table."""
    import statistics

    values = _values()
    print(f"--- codec / pickle, median [quartiles] of {rounds} interleaved rounds ---")
    for name in WORKLOADS:
        v = values[name]
        enc_c, dec_c, enc_pk, dec_pk = _functions(name)
        data_c, data_p = enc_c(v), enc_pk(v)
        for op, fc, ac, fp, ap in (("encode", enc_c, v, enc_pk, v), ("decode", dec_c, data_c, dec_pk, data_p)):
            loops = 1
            while timed(loops, fp, ap) < 0.02:
                loops *= 2
            ratios, tc, tp = [], [], []
            for _ in range(rounds):
                c = timed(loops, fc, ac)
                p = timed(loops, fp, ap)
                ratios.append(c / p)
                tc.append(c / loops)
                tp.append(p / loops)
            q = statistics.quantiles(ratios, n=4)
            print(f"{op} {name:<5}  {statistics.median(ratios):5.2f}x [{q[0]:.2f} - {q[2]:.2f}]  "
                  f"(codec {statistics.median(tc) * 1e6:.1f} us, pickle {statistics.median(tp) * 1e6:.1f} us; "
                  f"{len(data_c)} and {len(data_p)} bytes)", flush=True)


def main() -> None:
    """Register the benchmarks, run them (pyperf), print the ratios."""
    import sys

    if len(sys.argv) == 3 and sys.argv[1] == "--interleaved":
        interleaved(int(sys.argv[2]))
        return
    suite = Suite("codec", {}, processes=10, values=3)
    suite.parse()

    values = _values()
    for name in WORKLOADS:
        v = values[name]
        enc_c, dec_c, enc_pk, dec_pk = _functions(name)
        data_c, data_p = enc_c(v), enc_pk(v)
        assert dec_c(data_c).__class__ is dec_pk(data_p).__class__
        meta = {"codec_bytes": len(data_c), "pickle_bytes": len(data_p)}
        if suite.is_manager:
            print(f"{name}: {len(data_c)} bytes encoded, pickle {len(data_p)}", flush=True)
        suite.time_func(f"encode-{name}-codec", timed, enc_c, v, metadata=meta)
        suite.time_func(f"encode-{name}-pickle", timed, enc_pk, v, metadata=meta)
        suite.time_func(f"decode-{name}-codec", timed, dec_c, data_c, metadata=meta)
        suite.time_func(f"decode-{name}-pickle", timed, dec_pk, data_p, metadata=meta)
    rows = []
    for name in WORKLOADS:
        for op in ("encode", "decode"):
            rows.append(Ratio(f"{op} {name}: codec / pickle", f"{op}-{name}-codec", f"{op}-{name}-pickle",
                              unit="value"))
    suite.report(rows)


if __name__ == "__main__":
    main()
