"""Records every byte a peer writes to and reads from its serial port (pyserial), for golden fixtures.

Imported by the peer scripts before they open a port: it wraps pyserial's POSIX Serial.read/write, so the
capture is what the peer library itself put on the wire and received, whatever its own tracing offers.
"""

import json
import serial.serialposix

_log = []
_read = serial.serialposix.Serial.read
_write = serial.serialposix.Serial.write


def _logged_read(self, size=1):
    data = _read(self, size)
    if data:
        if _log and _log[-1][0] == "rx":
            _log[-1][1].extend(data)
        else:
            _log.append(["rx", bytearray(data)])
    return data


def _logged_write(self, data):
    _log.append(["tx", bytearray(data)])
    return _write(self, data)


serial.serialposix.Serial.read = _logged_read
serial.serialposix.Serial.write = _logged_write


def frames():
    """[{"tx": "01 03 ..."}, {"rx": "..."}] in wire order."""
    return [{direction: bytes(data).hex(" ").upper()} for direction, data in _log]


def dump(path):
    if path:
        with open(path, "w") as f:
            json.dump(frames(), f, indent=1)
