"""A pymodbus RTU server on a serial port simulating an Eastron SDM630-class meter (input registers, float32,
high word first), for metergw's interop tests. Prints "ready" once it serves; runs until stdin closes.

    modbus_server.py --port /dev/pts/N --device-id 3 [--capture frames.json]
"""

import argparse
import asyncio
import json
import struct
import sys
import threading

import wire_log
from pymodbus.datastore import ModbusDeviceContext, ModbusSequentialDataBlock, ModbusServerContext
from pymodbus.server import ModbusSerialServer

# Register (zero-based protocol address) -> value, as the SDM630 manual lists them (30001 is 0).
FLOATS = {0: 230.1, 2: 231.2, 4: 229.8, 6: 5.123, 8: 0.0, 10: 1.5, 52: 1234.5, 70: 50.0, 72: 12345.678,
          74: 0.25, 342: 12345.928}


def registers():
    words = [0] * 400
    for address, value in FLOATS.items():
        high, low = struct.unpack(">HH", struct.pack(">f", value))
        words[address], words[address + 1] = high, low
    return words


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", required=True)
    parser.add_argument("--device-id", type=int, default=1)
    parser.add_argument("--capture")
    args = parser.parse_args()
    # pymodbus 3.16's ModbusSequentialDataBlock starts at 1 for protocol address 0.
    device = ModbusDeviceContext(ir=ModbusSequentialDataBlock(1, registers()),
                                 hr=ModbusSequentialDataBlock(1, [0] * 20))
    context = ModbusServerContext(devices={args.device_id: device})

    async def serve():
        # Parity none: a pseudo-terminal refuses PARENB alone (it ignores parity anyway).
        server = ModbusSerialServer(context, port=args.port, baudrate=9600, parity="N",
                                    ignore_missing_devices=True)
        loop = asyncio.get_running_loop()
        stop = loop.create_future()
        threading.Thread(target=lambda: (sys.stdin.read(), loop.call_soon_threadsafe(stop.set_result, None)),
                         daemon=True).start()
        task = asyncio.create_task(server.serve_forever())
        await asyncio.sleep(0.3)
        print("ready", flush=True)
        await stop
        await server.shutdown()
        task.cancel()

    asyncio.run(serve())
    wire_log.dump(args.capture)


if __name__ == "__main__":
    main()
