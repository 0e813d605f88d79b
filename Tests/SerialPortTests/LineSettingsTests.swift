import Testing

@testable import SerialPort

@Suite("LineSettings parsing and character time")
struct LineSettingsTests {
    @Test(arguments: [
        ("9600:8E1", LineSettings(baudRate: 9600, parity: .even)),
        ("115200:8N1", LineSettings(baudRate: 115200)),
        ("2400:8E1", LineSettings(baudRate: 2400, parity: .even)),
        ("9600:7O2", LineSettings(baudRate: 9600, dataBits: .seven, parity: .odd, stopBits: .two)),
        ("1200:5M1", LineSettings(baudRate: 1200, dataBits: .five, parity: .mark)),
        ("300:6S2", LineSettings(baudRate: 300, dataBits: .six, parity: .space, stopBits: .two)),
        ("9600:8N1:rtscts", LineSettings(baudRate: 9600, flowControl: .rtsCts)),
        ("19200:8N1:xonxoff", LineSettings(baudRate: 19200, flowControl: .xonXoff)),
        ("250000:8N1", LineSettings(baudRate: 250000)),
    ])
    func parsesValidForms(text: String, expected: LineSettings) throws {
        let parsed = try LineSettings(parsing: text)
        #expect(parsed == expected)
        #expect(parsed.description == text)
        #expect(try LineSettings(parsing: parsed.description) == parsed)
    }

    @Test func acceptsLowercaseAndExplicitNoFlow() throws {
        #expect(try LineSettings(parsing: "9600:8e1") == LineSettings(baudRate: 9600, parity: .even))
        let explicit = try LineSettings(parsing: "9600:8N1:none")
        #expect(explicit == LineSettings(baudRate: 9600))
        #expect(explicit.description == "9600:8N1")
        #expect(try LineSettings(parsing: "9600:8N1:RTSCTS").flowControl == .rtsCts)
    }

    @Test(arguments: [
        ("", LineSettings.ParseError.Field.form),
        ("9600", .form),
        ("9600:8N1:rtscts:extra", .form),
        ("fast:8N1", .baudRate),
        ("0:8N1", .baudRate),
        ("-9600:8N1", .baudRate),
        (":8N1", .baudRate),
        ("9600:8N", .frame),
        ("9600:8N1X", .frame),
        ("9600:9N1", .dataBits),
        ("9600:4N1", .dataBits),
        ("9600:8X1", .parity),
        ("9600:8N3", .stopBits),
        ("9600:8N0", .stopBits),
        ("9600:8N1:dtrdsr", .flowControl),
    ])
    func rejectsInvalidForms(text: String, field: LineSettings.ParseError.Field) {
        #expect(throws: LineSettings.ParseError.self) { try LineSettings(parsing: text) }
        do {
            _ = try LineSettings(parsing: text)
        } catch {
            #expect(error.field == field)
            #expect(error.input == text)
            #expect(error.description.contains("expected"))
        }
    }

    @Test func parseErrorSaysWhatWasExpected() {
        do {
            _ = try LineSettings(parsing: "9600:8X1")
            Issue.record("parsed an invalid parity")
        } catch {
            #expect(error.found == "X")
            #expect(error.description.contains("N (none), E (even), O (odd), M (mark) or S (space)"))
        }
    }

    @Test func characterTime() {
        let modbus = LineSettings(baudRate: 9600)
        #expect(modbus.bitsPerCharacter == 10)
        // 10 bits / 9600 bit/s = 1.041666... ms
        #expect(modbus.characterTime > .microseconds(1041) && modbus.characterTime < .microseconds(1042))

        let meter = LineSettings(baudRate: 2400, parity: .even)
        #expect(meter.bitsPerCharacter == 11)
        // 11 bits / 2400 bit/s = 4.58333... ms
        #expect(meter.characterTime > .microseconds(4583) && meter.characterTime < .microseconds(4584))

        let long = LineSettings(baudRate: 9600, dataBits: .seven, parity: .odd, stopBits: .two)
        #expect(long.bitsPerCharacter == 11)
        #expect(LineSettings(baudRate: 31250).characterTime == .microseconds(320))
    }

    @Test func silenceGapHasAOneMillisecondFloor() {
        let fast = LineSettings(baudRate: 115200).characterTime
        #expect(SerialPort.silenceGap(characterTimes: 3.5, characterTime: fast) == .milliseconds(1))
        let slow = LineSettings(baudRate: 9600).characterTime
        let gap = SerialPort.silenceGap(characterTimes: 3.5, characterTime: slow)
        #expect(gap > .microseconds(3645) && gap < .microseconds(3647))
    }
}

@Suite("Baud rate tolerance")
struct BaudRateToleranceTests {
    @Test func approximatedRatesWithinTwoPercentCountAsApplied() {
        #expect(SerialPort.baudRateMatches(requested: 250_000, applied: 250_000))
        #expect(SerialPort.baudRateMatches(requested: 250_000, applied: 246_000))
        #expect(SerialPort.baudRateMatches(requested: 115_200, applied: 115_384))
        #expect(!SerialPort.baudRateMatches(requested: 250_000, applied: 38400))
        #expect(!SerialPort.baudRateMatches(requested: 9600, applied: 9800))
    }
}
