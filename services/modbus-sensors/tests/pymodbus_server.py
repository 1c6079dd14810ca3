#!/usr/bin/env python3
"""An independent Modbus peer for the modbus-sensors tests (pymodbus 3.16.1).

Serves a datastore of known values, packed here with Python's struct module, over TCP or
over a serial line (RTU), and answers a line-based control port so that the Rust test can
read back, from the server side, what a write left in the registers:

    python3 pymodbus_server.py --tcp PORT --control PORT
    python3 pymodbus_server.py --serial /dev/pts/N --baud 19200 --ids 1,2 --control PORT

Control commands (one per line, answer is one JSON line):
    GET <fc> <address> <count>   -> [values]   (fc 1 coils, 2 discrete, 3 holding, 4 input)
    PING                         -> "pong"

Layout (0-based wire addresses), the same for every unit id:
    holding, per byte order o in ABCD, CDAB, BADC, DCBA at base 32*o:
        +0 u16 48879, +1 i16 -12345, +2 u32 3000000001, +4 i32 -2000000001,
        +6 u64 9007199254740981, +10 i64 -9007199254740985, +14 f32 1234.5625, +16 f64 -98765.4321
    holding 200..207: "Hello, Modbus!" ABCD (8 registers, NUL padded); 210..217 the same BADC
    holding 300: 2155 (scaled test); 301: 0b1010000000000101 (bits 0, 2, 13, 15)
    holding 400..419: 0 (write area)
    input 0..1: i32 -7 ABCD; input 2: the unit id
    coils 0..7: 1 0 1 1 0 0 0 1; discrete 0..3: 0 1 1 0
Anything else is undefined and answered with exception 2 (illegal data address).
"""

import argparse
import asyncio
import json
import struct
import sys

from pymodbus.exceptions import NoSuchIdException
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

ORDERS = ["ABCD", "CDAB", "BADC", "DCBA"]
TYPES = [  # (offset, struct format, value)
    (0, ">H", 48879),
    (1, ">h", -12345),
    (2, ">I", 3000000001),
    (4, ">i", -2000000001),
    (6, ">Q", 9007199254740981),
    (10, ">q", -9007199254740985),
    (14, ">f", 1234.5625),
    (16, ">d", -98765.4321),
]


def words(data: bytes, order: str) -> list:
    """Registers holding big-endian bytes `data` in a Telegraf byte order."""
    if order in ("BADC", "DCBA"):
        data = b"".join(data[i + 1 : i + 2] + data[i : i + 1] for i in range(0, len(data), 2))
    regs = [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
    if order in ("CDAB", "DCBA"):
        regs.reverse()
    return regs


def holding(unit: int) -> list:
    regs = [0] * 420
    for o, order in enumerate(ORDERS):
        for off, fmt, value in TYPES:
            w = words(struct.pack(fmt, value), order)
            regs[32 * o + off : 32 * o + off + len(w)] = w
    text = b"Hello, Modbus!".ljust(16, b"\0")
    regs[200:208] = words(text, "ABCD")
    regs[210:218] = words(text, "BADC")
    regs[300] = 2155
    regs[301] = 0b1010000000000101
    return regs


def device(unit: int) -> SimDevice:
    coils = [True, False, True, True, False, False, False, True]
    discrete = [False, True, True, False]
    inputs = words(struct.pack(">i", -7), "ABCD") + [unit]
    return SimDevice(
        id=unit,
        simdata=(
            [SimData(0, values=coils, datatype=DataType.BITS)],
            [SimData(0, values=discrete, datatype=DataType.BITS)],
            [SimData(0, values=holding(unit), datatype=DataType.REGISTERS)],
            [SimData(0, values=inputs, datatype=DataType.REGISTERS)],
        ),
    )


async def control(server, port: int, unit: int) -> None:
    async def handle(reader, writer):
        while line := await reader.readline():
            parts = line.decode().split()
            try:
                if parts[0] == "PING":
                    answer = "pong"
                else:
                    _, fc, address, count = parts
                    values = await server.async_getValues(unit, int(fc), int(address), int(count))
                    answer = [int(v) for v in values]
            except Exception as e:  # noqa: BLE001 - the test sees the error text
                answer = {"error": repr(e)}
            writer.write((json.dumps(answer) + "\n").encode())
            await writer.drain()
        writer.close()

    srv = await asyncio.start_server(handle, "127.0.0.1", port)
    async with srv:
        await srv.serve_forever()


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--tcp", type=int)
    p.add_argument("--serial")
    p.add_argument("--baud", type=int, default=19200)
    p.add_argument("--ids", default="0")
    p.add_argument("--control", type=int, required=True)
    a = p.parse_args()
    ids = [int(x) for x in a.ids.split(",")]
    devices = [device(i) for i in ids]
    if a.tcp:
        server = ModbusTcpServer(devices, address=("127.0.0.1", a.tcp))
    else:
        # A unit that is not on the line stays silent, as on a real RS-485 bus.
        server = ModbusSerialServer(devices, port=a.serial, baudrate=a.baud, ignore_missing_devices=True)
        # pymodbus 3.16.1's SimCore raises KeyError (answered as "server device failure")
        # instead of NoSuchIdException for an unknown unit, so ignore_missing_devices has no
        # effect; map the one to the other.
        core = server.context
        lookup = core._SimCore__get_device

        def get_device(device_id):
            try:
                return lookup(device_id)
            except KeyError:
                raise NoSuchIdException(f"no unit {device_id}") from None

        core._SimCore__get_device = get_device
    print("ready", flush=True)
    await asyncio.gather(server.serve_forever(), control(server, a.control, ids[0]))


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
