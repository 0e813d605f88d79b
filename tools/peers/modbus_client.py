"""Reads and writes a Modbus RTU server with pymodbus or minimalmodbus and prints one JSON object with what it got,
exceptions included, for metergw's interop tests against meter-emulator --protocol modbus --map mgwpm1.

    modbus_client.py --port LINK --client pymodbus|minimalmodbus --device-id 1 [--capture frames.json]
"""

import argparse
import json

import wire_log


def with_pymodbus(port, device_id):
    from pymodbus.client import ModbusSerialClient
    from pymodbus.exceptions import ModbusIOException

    client = ModbusSerialClient(port=port, baudrate=9600, parity="N", timeout=2, retries=1)
    if not client.connect():
        raise SystemExit(f"pymodbus could not open {port}")
    out = {}

    def result(name, response):
        if response.isError():
            out[name] = {"exception": response.exception_code}
        elif hasattr(response, "registers") and response.function_code in (3, 4):
            out[name] = {"registers": list(response.registers)}
        elif hasattr(response, "bits") and response.function_code in (1, 2):
            out[name] = {"bits": [int(b) for b in response.bits[:1]]}
        else:
            out[name] = {"ok": True}

    result("holding", client.read_holding_registers(0, count=14, device_id=device_id))
    result("input", client.read_input_registers(0, count=2, device_id=device_id))
    result("coil", client.read_coils(0, count=1, device_id=device_id))
    result("writeThresholds", client.write_registers(10, [0, 30000, 0, 3000], device_id=device_id))
    result("writeRelay", client.write_coil(0, False, device_id=device_id))
    result("holdingAfter", client.read_holding_registers(10, count=4, device_id=device_id))
    result("coilAfter", client.read_coils(0, count=1, device_id=device_id))
    result("unmapped", client.read_holding_registers(100, count=1, device_id=device_id))
    result("readOnly", client.write_register(0, 1, device_id=device_id))
    client.close()
    return out


def with_minimalmodbus(port, device_id):
    import minimalmodbus

    instrument = minimalmodbus.Instrument(port, device_id)
    instrument.serial.baudrate = 9600
    instrument.serial.timeout = 2
    instrument.close_port_after_each_call = False
    out = {}

    def attempt(name, call):
        try:
            value = call()
            out[name] = {"value": value} if value is not None else {"ok": True}
        except minimalmodbus.IllegalRequestError as error:
            out[name] = {"exception": 2, "text": str(error)}
        except minimalmodbus.SlaveReportedException as error:
            out[name] = {"exception": -1, "text": str(error)}

    attempt("register", lambda: instrument.read_long(0, functioncode=3, signed=False))
    attempt("credit", lambda: instrument.read_long(2, functioncode=3, signed=True))
    attempt("alarmThreshold", lambda: instrument.read_long(10, functioncode=3))
    attempt("voltage", lambda: instrument.read_register(0, functioncode=4))
    attempt("relay", lambda: instrument.read_bit(0, functioncode=1))
    attempt("writeAlarm", lambda: instrument.write_long(10, 40000))
    attempt("alarmAfter", lambda: instrument.read_long(10, functioncode=3))
    attempt("writeRelay", lambda: instrument.write_bit(0, 0, functioncode=5))
    attempt("relayAfter", lambda: instrument.read_bit(0, functioncode=1))
    attempt("unmapped", lambda: instrument.read_register(100, functioncode=3))
    attempt("readOnly", lambda: instrument.write_register(0, 1, functioncode=6))
    instrument.serial.close()
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", required=True)
    parser.add_argument("--client", choices=["pymodbus", "minimalmodbus"], required=True)
    parser.add_argument("--device-id", type=int, default=1)
    parser.add_argument("--capture")
    args = parser.parse_args()
    run = with_pymodbus if args.client == "pymodbus" else with_minimalmodbus
    print(json.dumps(run(args.port, args.device_id)), flush=True)
    wire_log.dump(args.capture)


if __name__ == "__main__":
    main()
