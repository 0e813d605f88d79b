"""Reads a DL/T 645 meter with the dlt645 (PyPI) master and prints one JSON object, for metergw's interop tests
against meter-emulator --protocol dlt645.

    dlt645_master.py --port LINK --address DIGITS [--capture frames.json]

dlt645 3.2.0 sends the address high byte first: pass the digits as it will put them on the wire.
"""

import argparse
import json

import wire_log
from dlt645 import MeterClientService


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", required=True)
    parser.add_argument("--address", required=True)
    parser.add_argument("--capture")
    args = parser.parse_args()
    client = MeterClientService.new_rtu_client(port=args.port, baudrate=9600, databits=8, stopbits=1, parity="N",
                                               timeout=1.0)
    client.set_address(args.address)
    out = {}

    def item(name, value):
        out[name] = None if value is None else {"value": value.value if not isinstance(value.value, bytes)
                                                else value.value.hex()}

    item("energy", client.read_00(0x00010000))
    item("reverseEnergy", client.read_00(0x00020000))
    item("voltage", client.read_02(0x02010100))
    item("current", client.read_02(0x02020100))
    item("power", client.read_02(0x02030000))
    item("address", client.read_address())
    item("missing", client.read_02(0x02010300))  # phase C voltage: a single-phase meter has none
    out["broadcastTime"] = client.broadcast_time_sync()
    print(json.dumps(out, default=str), flush=True)
    wire_log.dump(args.capture)


if __name__ == "__main__":
    main()
