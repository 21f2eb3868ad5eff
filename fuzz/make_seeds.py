#!/usr/bin/env python3
"""Writes the seeds of the `client`, `agent` and `server` fuzz targets.

Their inputs are op lists decoded with `arbitrary` (libfuzzer-sys's
`fuzz_target!` with a typed input), so a seed is the byte string that decodes
to a chosen op list. This script encodes op lists the way `arbitrary` 1.x
decodes them: a derived enum reads a little-endian u32 `x` and takes variant
`(x * count) >> 32`; bool is a byte's low bit; integers are little-endian; a
`Vec` reads a "keep going" byte before each element; the last field of the
top-level struct takes the rest of the input. (Strings read their length from
the end of the input, so no seed uses the ops that carry one.)

The transcripts of real QEMU and qemu-ga sessions in tests/data/ are the raw
bytes of most seeds. Run from the repository root:

    python3 fuzz/make_seeds.py

Variant numbers below follow the enum declarations in fuzz_targets/; keep
them in step when an enum changes.
"""

import pathlib
import struct

ROOT = pathlib.Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
SEEDS = ROOT / "fuzz" / "corpus-seeds"


def variant(index, count):
    return struct.pack("<I", -(-(index << 32) // count))


def boolean(b):
    return b"\x01" if b else b"\x00"


def u8(n):
    return bytes([n])


def u16(n):
    return struct.pack("<H", n)


def u64(n):
    return struct.pack("<Q", n)


def raw(data):
    """A `Vec<u8>` that is not the last field."""
    return b"".join(b"\x01" + bytes([b]) for b in data) + b"\x00"


def write(message):
    return variant(0, 5) + message


def deliver(n=255):
    """Up to n + 1 bytes; 255: all."""
    return variant(1, 5) + u8(n)


def transmit(n=0xFFFF):
    return variant(2, 5) + u16(n)


def eof():
    return variant(3, 5)


def act(index, fields=b""):
    return variant(4, 5) + variant(index, 3) + fields


def ops(items):
    """The last field: a `Vec<Op>` that takes the rest."""
    return b"".join(b"\x01" + item for item in items)


def lines(path):
    return path.read_bytes().splitlines(keepends=True)


# ------------------------------------------------------------------ client
# common::IdChoice (8): Sent, Next, Number, Text, Negative, Float, Null, Absent
# common::ReplyShape (5): Return, Error(u8), Oversized, Empty, BadError
# client Message (7): Greeting{oob}, Reply, Event{name, data}, IdlessError,
#                     Sentinel, Deep(u8), Raw
# common::Op (5): Write, Deliver(u8), Transmit(u16), Eof, Act
# client Action (3): Send{name, arguments, oob}, Abandon(u8), AbandonAny(u64)


class Client:
    def greeting(oob):
        return write(variant(0, 7) + boolean(oob))

    def reply(shape, id_choice):
        return write(variant(1, 7) + shape + id_choice)

    def event(name, data):
        return write(variant(2, 7) + u8(name) + boolean(data))

    def idless_error():
        return write(variant(3, 7))

    def sentinel():
        return write(variant(4, 7))

    def deep(n):
        return write(variant(5, 7) + u8(n))

    def raw(data):
        return write(variant(6, 7) + raw(data))

    def send(name=0, arguments=0, oob=False):
        return act(0, u8(name) + u8(arguments) + boolean(oob))

    def abandon(n):
        return act(1, u8(n))

    def abandon_any(n):
        return act(2, u64(n))

    def input(items, fixed=False, oob=True):
        return boolean(fixed) + boolean(oob) + ops(items)


def sent(n):
    return variant(0, 8) + u8(n)


def next_id(n):
    return variant(1, 8) + u8(n)


def number(n):
    return variant(2, 8) + u64(n)


def text_id(n):
    return variant(3, 8) + u8(n)


ABSENT = variant(7, 8)
RETURN = variant(0, 5)
EMPTY = variant(3, 5)
OVERSIZED = variant(2, 5)
BAD_ERROR = variant(4, 5)


def error(cls):
    return variant(1, 5) + u8(cls)


def client_transcript(name, fixed=False, chunk=63):
    """The session of tests/data/NAME.rx: the greeting, the commands of
    NAME.tx (names by position), then the rest in chunks of `chunk + 1`."""
    rx = lines(DATA / f"{name}.rx")
    tx = lines(DATA / f"{name}.tx")
    items = [Client.raw(rx[0]), deliver()]
    for line in tx[1:]:
        oob = line.startswith(b'{"exec-oob"')
        items.append(Client.send(3 if oob else 0, 0, oob))
        items.append(transmit())
    items.append(Client.raw(b"".join(rx[1:])))
    rest = sum(len(l) for l in rx[1:])
    items += [deliver(chunk)] * (rest // (chunk + 1) + 1)
    items.append(eof())
    return Client.input(items, fixed=fixed, oob=b"oob" in tx[0])


def client_seeds():
    C = Client
    seeds = {
        "stop-cont": client_transcript("qmp-stop-cont"),
        "stop-cont-fixed": client_transcript("qmp-stop-cont", fixed=True, chunk=6),
        "oob": client_transcript("qmp-oob"),
        "parse-error": client_transcript("qmp-parse-error", chunk=0),
        # Tagged replies out of order, one for an abandoned command, one for
        # an id never sent, one as a string.
        "abandon": C.input(
            [
                C.greeting(True),
                deliver(),
                C.send(0),
                C.send(1),
                C.send(3, 0, True),
                C.reply(RETURN, number(0)),
                C.abandon(1),
                C.reply(RETURN, sent(2)),
                C.reply(error(1), sent(1)),
                C.reply(RETURN, next_id(0)),
                C.reply(RETURN, text_id(0)),
                deliver(9),
                deliver(),
                C.reply(RETURN, sent(0)),
                deliver(),
                transmit(),
                eof(),
            ]
        ),
        # Oversized replies, an event flood, an id-less error, a deep reply.
        "oversized": C.input(
            [
                C.greeting(False),
                C.reply(EMPTY, ABSENT),
                deliver(),
                C.send(0),
                C.send(2),
                C.send(1),
                C.event(0, True),
                C.event(3, False),
                C.reply(OVERSIZED, sent(0)),
                C.idless_error(),
                C.reply(OVERSIZED, next_id(5)),
                C.deep(40),
                deliver(200),
                deliver(),
                C.abandon(2),
                C.reply(BAD_ERROR, sent(2)),
                deliver(),
                transmit(5),
                            ],
            fixed=True,
        ),
        # A second greeting and a sentinel: protocol errors with commands in
        # flight.
        "second-greeting": C.input(
            [
                C.greeting(True),
                deliver(),
                C.reply(RETURN, number(0)),
                C.send(0),
                C.send(4),
                C.send(5),
                C.greeting(True),
                C.sentinel(),
                deliver(),
                C.send(0),
                C.abandon_any(1),
            ]
        ),
    }
    return seeds


# ------------------------------------------------------------------- agent
# agent NonceChoice (3): Current, Previous, Other(u64)
# agent Message (8): Sentinel, SyncReply, Sync, Reply, IdlessError, Event,
#                    Deep(u8), Raw
# agent Action (3): Send(u8), Abandon(u8), Resync
# The agent's names: guest-ping, guest-info, guest-get-time, guest-shutdown,
# guest-suspend-disk. Its nonces: 123456789, then 987654321, as in the
# transcripts.


class Agent:
    def sentinel():
        return write(variant(0, 8))

    def sync_reply(nonce):
        return write(variant(1, 8) + nonce)

    def sync(nonce):
        return write(variant(2, 8) + nonce)

    def reply(shape, id_choice):
        return write(variant(3, 8) + shape + id_choice)

    def idless_error():
        return write(variant(4, 8))

    def event():
        return write(variant(5, 8))

    def deep(n):
        return write(variant(6, 8) + u8(n))

    def raw(data):
        return write(variant(7, 8) + raw(data))

    def send(name):
        return act(0, u8(name))

    def abandon(n):
        return act(1, u8(n))

    def resync():
        return act(2)

    def input(items, fixed=False):
        return boolean(fixed) + ops(items)


CURRENT = variant(0, 3)
PREVIOUS = variant(1, 3)


def other(n):
    return variant(2, 3) + u64(n)


def agent_seeds():
    A = Agent
    sync_rx = (DATA / "qga-sync.rx").read_bytes()
    stale_rx = (DATA / "qga-stale.rx").read_bytes()
    return {
        # qemu-ga's answers to guest-info, guest-ping, guest-get-osinfo.
        "sync": A.input(
            [A.send(1), A.send(0), A.send(0), transmit(), A.raw(sync_rx)]
            + [deliver(99)] * (len(sync_rx) // 100 + 1)
            + [eof()]
        ),
        "sync-fixed": A.input(
            [A.send(1), A.send(0), A.send(0), A.raw(sync_rx), deliver()],
            fixed=True,
        ),
        # The stale bytes of an earlier session, then a resync (nonce
        # 987654321) and the reply to guest-ping.
        "stale": A.input(
            [
                A.send(0),
                transmit(30),
                A.resync(),
                A.send(0),
                A.raw(stale_rx),
                deliver(0),
                deliver(),
            ]
        ),
        # Stale sync replies, a sentinel inside a message, an abandon, the
        # commands that get no reply, tagged replies.
        "abandon": A.input(
            [
                A.send(0),
                A.send(3),
                A.send(1),
                A.sync_reply(CURRENT),
                A.reply(RETURN, sent(0)),
                A.sync(other(5)),
                A.sync(CURRENT),
                A.reply(RETURN, sent(1)),
                deliver(),
                A.abandon(0),
                A.send(2),
                A.sync(PREVIOUS),
                A.reply(RETURN, sent(2)),
                A.sentinel(),
                A.reply(error(0), sent(2)),
                A.sync(CURRENT),
                A.reply(error(0), sent(2)),
                A.idless_error(),
                A.event(),
                A.deep(50),
                A.reply(OVERSIZED, sent(2)),
                deliver(17),
                deliver(),
                transmit(7),
                eof(),
            ]
        ),
    }


# ------------------------------------------------------------------ server
# server IdChoice (6): Absent, Number(u64), Text(String), Long(u8), Object,
#                      Float
# server Message (7): Capabilities{oob, id}, Execute{oob, name, arguments,
#                     id}, Unexpected, NoExecute, Sentinel, Deep(u8), Raw
# server Action (3): Return{command, value}, Error{..}, Event{..}


class Server:
    def capabilities(oob, id_choice):
        return write(variant(0, 7) + boolean(oob) + id_choice)

    def execute(name, arguments, id_choice, oob=False):
        return write(
            variant(1, 7) + boolean(oob) + u8(name) + u8(arguments) + id_choice
        )

    def unexpected():
        return write(variant(2, 7))

    def no_execute():
        return write(variant(3, 7))

    def sentinel():
        return write(variant(4, 7))

    def deep(n):
        return write(variant(5, 7) + u8(n))

    def raw(data):
        return write(variant(6, 7) + raw(data))

    def reply(command, value):
        return act(0, u8(command) + u8(value))

    def input(items, fixed=False, oob=True):
        return boolean(fixed) + boolean(oob) + ops(items)


def server_transcript(name, fixed=False, chunk=31):
    """The bytes a client sent in tests/data/NAME.tx, each command answered."""
    S = Server
    tx = (DATA / f"{name}.tx").read_bytes()
    count = tx.count(b"\n")
    items = [S.raw(tx)]
    items += [deliver(chunk)] * (len(tx) // (chunk + 1) + 1)
    items += [S.reply(0, 0)] * count
    items.append(transmit())
    return S.input(items, fixed=fixed)


def server_seeds():
    S = Server
    num = variant(1, 6)
    return {
        "stop-cont": server_transcript("qmp-stop-cont"),
        "oob": server_transcript("qmp-oob", fixed=True, chunk=0),
        "queries": server_transcript("qmp-queries"),
        "parse-error": server_transcript("qmp-parse-error"),
        # Before negotiation, then every kind of bad command, long and odd ids.
        "bad-commands": S.input(
            [
                S.execute(0, 0, num + u64(1)),
                S.capabilities(True, variant(0, 6)),
                S.capabilities(False, variant(4, 6)),
                S.execute(5, 1, variant(5, 6)),
                S.execute(0, 3, variant(3, 6) + u8(63)),
                S.execute(2, 4, variant(3, 6) + u8(64)),
                S.execute(4, 5, num + u64(7), oob=True),
                S.unexpected(),
                S.no_execute(),
                S.sentinel(),
                S.deep(40),
                S.raw(b'{"execute": "stop"'),
                deliver(5),
                deliver(),
                S.reply(1, 1),
                S.reply(0, 4),
                S.reply(0, 3),
                transmit(100),
                eof(),
            ],
            oob=False,
        ),
    }


def main():
    for target, seeds in [
        ("client", client_seeds()),
        ("agent", agent_seeds()),
        ("server", server_seeds()),
    ]:
        folder = SEEDS / target
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in seeds.items():
            (folder / name).write_bytes(data)
            print(f"{folder / name}: {len(data)} bytes")


if __name__ == "__main__":
    main()
