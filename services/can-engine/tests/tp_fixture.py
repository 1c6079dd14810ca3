#!/usr/bin/env python3
"""Independent encoder for can-engine's J1939 transport protocol test: cantools (PyPI, pinned
in requirements-test.txt) encodes a 20-byte message of tests/fixtures/tp_test.dbc, and this
script sends it the way SAE J1939-21 lays it out: as a BAM (TP.CM control 32 to 0xFF, then
TP.DT packets 1..3, 7 bytes each, the last padded with 0xFF) or in an RTS/CTS session to node
0x17 (RTS 16, CTS 17 from 0x17, TP.DT, end of message 19). Some sessions are broken on purpose
(a packet missing, an abort); their messages must not be published. It also sends the
24-byte CAN FD message FDLONG as FD frames (candump's `##` syntax), which are decoded as they
come, and an FD frame too short for it, which is counted.

Usage: tp_fixture.py DBC OUT_LOG OUT_JSON
"""
import json
import random
import sys

import cantools

dbc_path, log_path, json_path = sys.argv[1:4]
db = cantools.database.load_file(dbc_path)
msg = db.get_message_by_name("LONG")
pgn = (msg.frame_id >> 8) & 0x3FFFF

rng = random.Random(21)
lines, expected = [], []
counts = {"complete": 0, "out_of_order": 0, "aborted": 0}
t_us = 1_700_000_000_000_000


def emit(ident, data, gap_us=2_000):
    global t_us
    t_us += gap_us
    lines.append(f"({t_us // 1_000_000}.{t_us % 1_000_000:06d}) can0 {ident:08X}#{bytes(data).hex().upper()}")


def cm(control, src, dst, b1_4):
    return 0x1CEC0000 | (dst << 8) | src, [control] + b1_4 + list(pgn.to_bytes(3, "little"))


def packets(data):
    out = []
    for k in range(0, len(data), 7):
        chunk = list(data[k:k + 7])
        out.append([k // 7 + 1] + chunk + [0xFF] * (7 - len(chunk)))
    return out


size = msg.length
for i in range(60):
    values = {
        "Counter": i % 256,
        "Pressure": rng.randint(0, 65535) * 0.1,
        "Far": rng.randint(0, 4095) * 0.5 - 100,
        "Moto": rng.randint(0, 65535) * 0.25,
        "Last": rng.randint(0, 65535),
    }
    data = msg.encode(values, scaling=True, strict=False)
    decoded = msg.decode(data)
    src = [0x00, 0x03][i % 2]
    pk = packets(data)
    kind = i % 6
    if kind in (0, 1, 2):  # BAM, 50 ms or (real buses) 1 ms between packets
        ident, d = cm(32, src, 0xFF, [size & 0xFF, size >> 8, len(pk), 0xFF])
        emit(ident, d)
        for p in pk:
            emit(0x1CEBFF00 | src, p, 50_000 if kind == 0 else 1_000)
        complete_t = t_us
        complete = True
    elif kind == 3:  # RTS/CTS session to 0x17, two packets per CTS
        ident, d = cm(16, src, 0x17, [size & 0xFF, size >> 8, len(pk), 2])
        emit(ident, d)
        for first in range(1, len(pk) + 1, 2):
            ident, d = cm(17, 0x17, src, [min(2, len(pk) - first + 1), first, 0xFF, 0xFF])
            emit(ident, d)
            for p in pk[first - 1:first + 1]:
                emit(0x1CEB1700 | src, p)
        # The packet that completes the message is the last TP.DT, before the acknowledgement.
        complete_t = t_us
        ident, d = cm(19, 0x17, src, [size & 0xFF, size >> 8, len(pk), 0xFF])
        emit(ident, d)
        complete = True
    elif kind == 4:  # BAM with packet 2 missing
        ident, d = cm(32, src, 0xFF, [size & 0xFF, size >> 8, len(pk), 0xFF])
        emit(ident, d)
        for p in [pk[0], pk[2]]:
            emit(0x1CEBFF00 | src, p)
        counts["out_of_order"] += 1
        complete = False
    else:  # RTS/CTS aborted by the receiver after the first packet
        ident, d = cm(16, src, 0x17, [size & 0xFF, size >> 8, len(pk), 1])
        emit(ident, d)
        ident, d = cm(17, 0x17, src, [1, 1, 0xFF, 0xFF])
        emit(ident, d)
        emit(0x1CEB1700 | src, pk[0])
        ident, d = cm(255, 0x17, src, [3, 0xFF, 0xFF, 0xFF])
        emit(ident, d)
        counts["aborted"] += 1
        complete = False
    if complete:
        counts["complete"] += 1
        # The message is published at the time of the packet that completed it.
        for name, value in decoded.items():
            expected.append({"t": complete_t / 1e6, "metric": f"LONG:{name}", "value": value})

fd = db.get_message_by_name("FDLONG")
for i in range(20):
    data = fd.encode({"FdFirst": rng.randint(0, 65535), "FdLast": rng.randint(0, 65535) * 0.5 - 10},
                     scaling=True, strict=False)
    emit_t = t_us + 2_000
    lines.append(f"({emit_t // 1_000_000}.{emit_t % 1_000_000:06d}) can0 {fd.frame_id:03X}##1{data.hex().upper()}")
    t_us = emit_t
    for name, value in fd.decode(data).items():
        expected.append({"t": t_us / 1e6, "metric": f"FDLONG:{name}", "value": value})
# An FD frame of 12 bytes: too short for FDLONG's last signal.
t_us += 2_000
lines.append(f"({t_us // 1_000_000}.{t_us % 1_000_000:06d}) can0 {fd.frame_id:03X}##1{'00' * 12}")
counts["short_fd_frames"] = 1
counts["fd_frames"] = 21

with open(log_path, "w") as f:
    f.write("\n".join(lines) + "\n")
with open(json_path, "w") as f:
    json.dump({"expected": expected, "counts": counts}, f)
