"""A pymodbus client reading the same holding registers in a loop for N seconds, for metergw-bench modbus.
Prints one JSON object: transactions, errors, wall seconds and this process's CPU seconds.

    modbus_loop.py --port LINK --device-id 1 --count 14 --seconds 10
"""

import argparse
import json
import resource
import time

from pymodbus.client import ModbusSerialClient


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", required=True)
    parser.add_argument("--device-id", type=int, default=1)
    parser.add_argument("--count", type=int, default=14)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--baud", type=int, default=9600)
    args = parser.parse_args()
    client = ModbusSerialClient(port=args.port, baudrate=args.baud, parity="N", timeout=1, retries=0)
    if not client.connect():
        raise SystemExit(f"pymodbus could not open {args.port}")
    for _ in range(5):  # warm-up
        client.read_holding_registers(0, count=args.count, device_id=args.device_id)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu0 = usage.ru_utime + usage.ru_stime
    start = time.monotonic()
    done = errors = 0
    while time.monotonic() - start < args.seconds:
        response = client.read_holding_registers(0, count=args.count, device_id=args.device_id)
        if response.isError():
            errors += 1
        else:
            done += 1
    wall = time.monotonic() - start
    usage = resource.getrusage(resource.RUSAGE_SELF)
    client.close()
    print(json.dumps({"transactions": done, "errors": errors, "seconds": wall,
                      "cpuSeconds": usage.ru_utime + usage.ru_stime - cpu0}))


if __name__ == "__main__":
    main()
