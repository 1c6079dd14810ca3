#!/usr/bin/python3
"""A simulated OBD-II engine ECU on a SocketCAN interface, for the system tests.

It answers ISO 15765-4 mode 01 requests (functional 0x7DF or physical 0x7E0) with single-frame
replies from 0x7E8, for the PIDs given on the command line as PID=HEXBYTES, e.g.
`obd_ecu.py vcan0 0C=1AF8 05=7B 0D=58` (SAE J1979: 0x0C is (256 A + B) / 4 rpm, 0x05 is
A - 40 degC, 0x0D is A km/h). Python's own AF_CAN socket, not the service's code.
"""
import socket
import struct
import sys

FRAME = "=IB3x8s"  # struct can_frame: can_id, len, pad, res0, res1, data[8]

iface = sys.argv[1]
values = {int(k, 16): bytes.fromhex(v) for k, v in (a.split("=") for a in sys.argv[2:])}
s = socket.socket(socket.AF_CAN, socket.SOCK_RAW, socket.CAN_RAW)
s.bind((iface,))
print(f"obd_ecu: answering PIDs {sorted(hex(p) for p in values)} on {iface}", flush=True)
while True:
    can_id, dlc, data = struct.unpack(FRAME, s.recv(16))
    if can_id not in (0x7DF, 0x7E0) or dlc < 3 or data[1] != 0x01 or data[2] not in values:
        continue
    pid = data[2]
    reply = bytes([2 + len(values[pid]), 0x41, pid]) + values[pid]
    s.send(struct.pack(FRAME, 0x7E8, 8, reply.ljust(8, b"\x55")))
