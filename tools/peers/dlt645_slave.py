"""A dlt645 (PyPI) RTU slave on a serial port, for metergw's interop tests. Prints "ready" once it serves; runs
until stdin closes. dlt645 3.2.0 keeps its address high byte first on the wire (docs/INTEROP.md).

    dlt645_slave.py --port /dev/pts/N --address 000012345678 [--capture frames.json]
"""

import argparse
import sys

import wire_log
from dlt645 import MeterServerService


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", required=True)
    parser.add_argument("--address", required=True)
    parser.add_argument("--capture")
    args = parser.parse_args()
    # Parity none: a pseudo-terminal refuses PARENB alone (it ignores parity anyway).
    service = MeterServerService.new_rtu_server(port=args.port, data_bits=8, stop_bits=1, baud_rate=9600,
                                                parity="N", timeout=1.0)
    service.set_address(args.address)
    service.set_00(0x00010000, 1234.56)   # forward active energy, total: 1234.56 kWh
    service.set_00(0x00020000, 7.89)      # reverse active energy, total
    service.set_02(0x02010100, 230.1)     # voltage, phase A
    service.set_02(0x02020100, 5.123)     # current, phase A
    service.set_02(0x02030000, 1.2345)    # active power, total: 1.2345 kW
    if not service.start():
        raise SystemExit(f"dlt645 could not serve {args.port}")
    print("ready", flush=True)
    sys.stdin.read()
    service.stop()
    wire_log.dump(args.capture)


if __name__ == "__main__":
    main()
