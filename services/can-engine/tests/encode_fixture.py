#!/usr/bin/env python3
"""Independent encoder for can-engine's tests: cantools (PyPI, pinned in .ci/run) encodes
frames from tests/fixtures/engine_test.dbc and writes a candump -L log plus the expected
physical values, decoded back by cantools, as JSON.

Usage: encode_fixture.py DBC OUT_LOG OUT_JSON

The log also holds lines the service must skip and count: malformed lines, frames too short
for their message, other PGNs, CAN FD frames, remote frames and error frames. Their counts
are in the JSON, written here from what was injected, not from the decoder under test.
"""
import json
import math
import sys

import cantools

dbc_path, log_path, json_path = sys.argv[1:4]
db = cantools.database.load_file(dbc_path)
eec1 = db.get_message_by_name("EEC1")
et1 = db.get_message_by_name("ET1")
body = db.get_message_by_name("BodyStatus")

lines = []
expected = []  # {"t": seconds, "metric": name, "value": physical}
counts = {"malformed_lines": 0, "short_frames": 0, "fd_frames": 0, "remote_frames": 0,
          "error_frames": 0, "other_frames": 0, "frames": 0}
t_us = 1_700_000_000_000_000


def emit(frame_id, extended, data, metric_values):
    global t_us
    t_us += 10_000
    ident = f"{frame_id:08X}" if extended else f"{frame_id:03X}"
    lines.append(f"({t_us // 1_000_000}.{t_us % 1_000_000:06d}) can0 {ident}#{data.hex().upper()}")
    counts["frames"] += 1
    for metric, value in metric_values:
        expected.append({"t": t_us / 1e6, "metric": metric, "value": value})


for i in range(200):
    # EEC1 from varying source addresses: the DBC path matches by PGN.
    sa = [0x00, 0x01, 0xEE][i % 3]
    phys = {"DriversDemandTorque": -125 + (i * 7) % 250, "ActualTorque": -100 + (i * 3) % 220,
            "EngineSpeed": 600 + 12.375 * i}
    data = eec1.encode(phys)
    dec = eec1.decode(data)
    emit(0x0CF00400 | sa, True, data, [("EEC1:EngineSpeed", dec["EngineSpeed"]),
                                       ("EEC1:ActualTorque", dec["ActualTorque"])])
    if i % 5 == 0:
        phys = {"CoolantTemp": -40 + i % 250, "OilTemp": -20 + i * 1.7}
        data = et1.encode(phys)
        dec = et1.decode(data)
        emit(0x18FEEE00 | sa, True, data, [("ET1:CoolantTemp", dec["CoolantTemp"]),
                                           ("ET1:OilTemp", dec["OilTemp"])])
    if i % 4 == 0:
        phys = {"VehicleSpeed": (i * 3.17) % 650, "Slope": -200 + (i * 2.3) % 399, "Accel": -25 + (i * 0.37) % 50}
        data = body.encode(phys)
        dec = body.decode(data)
        emit(0x123, False, data, [("BodyStatus:VehicleSpeed", dec["VehicleSpeed"]),
                                  ("BodyStatus:Slope", dec["Slope"]),
                                  ("BodyStatus:Accel", dec["Accel"])])
    if i % 20 == 7:
        # Too short for its message: 3 bytes of EEC1, 4 bytes of BodyStatus.
        emit(0x0CF00400, True, bytes([0x7D, 0x7D, 0x7D]), [])
        emit(0x123, False, bytes(4), [])
        counts["short_frames"] += 2
    if i % 20 == 11:
        # Other PGN (EEC2 0xF003) and another standard id.
        emit(0x0CF00300, True, bytes(8), [])
        emit(0x124, False, bytes(8), [])
        counts["other_frames"] += 2
    if i % 25 == 3:
        t_us += 1000
        lines.append(f"({t_us // 1_000_000}.{t_us % 1_000_000:06d}) can0 123##1{'00' * 12}")
        lines.append(f"({t_us // 1_000_000}.{t_us % 1_000_000:06d}) can0 0CF00400#R")
        lines.append(f"({t_us // 1_000_000}.{t_us % 1_000_000:06d}) can0 20000004#0004000000000000")
        counts["fd_frames"] += 1
        counts["remote_frames"] += 1
        counts["error_frames"] += 1
        counts["frames"] += 2
    if i % 30 == 13:
        for bad in ["this is not a frame", "(17.0) can0", "(1700000000.5) can0 0CF0040#00",
                    "(1700000000.5) can0 123#0G", "(x.1) can0 123#00"]:
            lines.append(bad)
            counts["malformed_lines"] += 1

assert all(math.isfinite(e["value"]) for e in expected)
with open(log_path, "w") as f:
    f.write("\n".join(lines) + "\n")
with open(json_path, "w") as f:
    json.dump({"expected": expected, "counts": counts}, f)
