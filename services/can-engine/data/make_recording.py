#!/usr/bin/env python3
"""Make data/engine.log: a SIMULATED engine recording in candump -L format, for demos and the
end-to-end test. Deterministic (no randomness beyond a fixed-seed generator), standard library
only. Regenerate with:

    python3 services/can-engine/data/make_recording.py > services/can-engine/data/engine.log

Content (60 s, timestamps from 1700000000.000000):
- EEC1 (PGN 61444, ID 0x0CF00400, source address 0x00) at 50 Hz: engine speed following
  idle (750 rpm, 0-10 s) -> rev to 3200 rpm and back (10-20 s) -> acceleration to cruise at
  1800 rpm (20-60 s), with +-10 rpm jitter; actual and demanded torque following the load.
- ET1 (PGN 65262, ID 0x18FEEE00) at 1 Hz: coolant temperature warming from 40 to 88 Cel.
- CCVS (PGN 65265, ID 0x18FEF100) at 10 Hz: wheel-based vehicle speed 0 -> 90 km/h from 20 s.
The layouts are J1939's, described for the DBC path by data/engine.dbc.

Options: --seconds N (default 60) and --eec1-hz N (default 50); bench/engine-100hz.log is
`--seconds 10 --eec1-hz 100` (a 100 Hz bus for the footprint benchmark, replayed in a loop).
"""
import argparse
import math
import random
import struct

T0_US = 1_700_000_000_000_000
rng = random.Random(1939)


def rpm_at(t):
    if t < 10:
        return 750.0
    if t < 20:  # rev: up to 3200 and back, a smooth bump
        return 750.0 + 2450.0 * math.sin(math.pi * (t - 10) / 10) ** 2
    # accelerate to cruise with a first-order response
    return 1800.0 - 1050.0 * math.exp(-(t - 20) / 4.0)


def line(t_us, ident, data):
    return f"({t_us // 1_000_000}.{t_us % 1_000_000:06d}) can0 {ident:08X}#{data.hex().upper()}"


ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("--seconds", type=int, default=60)
ap.add_argument("--eec1-hz", type=int, default=50)
args = ap.parse_args()
step_us = 1_000_000 // args.eec1_hz

events = []
for i in range(args.seconds * args.eec1_hz):
    t_us = i * step_us
    t = t_us / 1e6
    rpm = max(0.0, rpm_at(t) + rng.uniform(-10, 10))
    load = 10 + 60 * (rpm - 750) / 2450
    actual = int(round(load)) + 125
    demand = int(round(load + rng.uniform(-3, 3))) + 125
    raw_rpm = int(round(rpm / 0.125))
    data = bytes([0xF1, demand & 0xFF, actual & 0xFF]) + struct.pack("<H", raw_rpm) + bytes([0xFF, 0xF0, 0xFF])
    events.append((t_us, 0, line(T0_US + t_us, 0x0CF00400, data)))
for s in range(args.seconds):
    t_us = s * 1_000_000 + 5_000
    coolant = 40 + 48 * (1 - math.exp(-s / 20.0))
    data = bytes([int(round(coolant)) + 40, 0xFF]) + bytes([0xFF] * 6)
    events.append((t_us, 1, line(T0_US + t_us, 0x18FEEE00, data)))
for k in range(args.seconds * 10):
    t_us = k * 100_000 + 7_000
    t = t_us / 1e6
    speed = 0.0 if t < 20 else 90.0 * (1 - math.exp(-(t - 20) / 8.0))
    data = bytes([0xFF]) + struct.pack("<H", int(round(speed * 256))) + bytes([0xFF] * 5)
    events.append((t_us, 2, line(T0_US + t_us, 0x18FEF100, data)))

events.sort()
print("\n".join(e[2] for e in events))
