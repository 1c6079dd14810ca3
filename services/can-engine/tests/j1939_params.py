#!/usr/bin/env python3
"""Independent encoder for can-engine's built-in J1939 parameters: cantools (PyPI, pinned in
requirements-test.txt) encodes frames from tests/fixtures/j1939_params.dbc, which places and
scales each parameter as SAE J1939-71 does, and writes a candump -L log plus the physical
values cantools decodes back, as JSON.

Usage: j1939_params.py DBC OUT_LOG OUT_JSON

Every message is sent from source address 0x00, and also with its parameters' bytes all 0xFF
(not available) or 0xFE (error): those must not be published, and their count is in the JSON.
"""
import json
import random
import sys

import cantools

dbc_path, log_path, json_path = sys.argv[1:4]
db = cantools.database.load_file(dbc_path)

# metric name in can-engine -> (message, signal, factor from the DBC's unit to the metric's)
PARAMS = {
    "engine:coolant_temp": ("ET1", "EngineCoolantTemp", 1.0),
    "engine:oil_pressure": ("EFL_P1", "EngineOilPressure", 1000.0),  # kPa -> Pa
    "engine:fuel_rate": ("LFE", "EngineFuelRate", 1.0),
    "vehicle:speed": ("CCVS", "WheelBasedVehicleSpeed", 1.0),
    "engine:accelerator_pedal": ("EEC2", "AccelPedalPos1", 1.0),
    "engine:load": ("EEC2", "EngPercentLoadAtCurrentSpd", 1.0),
    "engine:total_hours": ("HOURS", "EngineTotalHours", 1.0),
    "electrical:battery_voltage": ("VEP1", "BatteryPotential", 1.0),
    "ambient:air_temp": ("AMB", "AmbientAirTemp", 1.0),
}

rng = random.Random(8)
lines, expected = [], []
counts = {"not_available": 0, "frames": 0}
t_us = 1_700_000_000_000_000


def emit(frame_id, data):
    global t_us
    t_us += 10_000
    lines.append(f"({t_us // 1_000_000}.{t_us % 1_000_000:06d}) can0 {frame_id:08X}#{data.hex().upper()}")
    counts["frames"] += 1


messages = {}
for metric, (msg, sig, factor) in PARAMS.items():
    messages.setdefault(msg, []).append((metric, sig, factor))

for i in range(60):
    for name, params in messages.items():
        m = db.get_message_by_name(name)
        values = {}
        for _, sig, _ in params:
            s = m.get_signal_by_name(sig)
            # A raw value in the valid range: 0 .. 0xFA, 0xFAFF or 0xFAFFFFFF (J1939-71).
            top = (0xFB << (s.length - 8)) - 1
            raw = [0, top, rng.randint(0, top)][i % 3] if i < 3 else rng.randint(0, top)
            values[sig] = raw * s.scale + s.offset
        data = m.encode(values, scaling=True, strict=False)
        decoded = m.decode(data)
        emit(m.frame_id, data)
        for metric, sig, factor in params:
            expected.append({"t": t_us / 1e6, "metric": metric, "value": decoded[sig] * factor})
        # The same message with its parameters not available (0xFF...) or in error (0xFE...).
        raw_data = bytearray(data)
        fill = 0xFF if i % 2 == 0 else 0xFE
        for _, sig, _ in params:
            s = m.get_signal_by_name(sig)
            for b in range(s.start // 8, (s.start + s.length) // 8):
                raw_data[b] = fill
            counts["not_available"] += 1
        emit(m.frame_id, bytes(raw_data))

with open(log_path, "w") as f:
    f.write("\n".join(lines) + "\n")
with open(json_path, "w") as f:
    json.dump({"expected": expected, "counts": counts}, f)
