import MetergwTestSupport
import Testing
@testable import MeterProtocol

@Suite struct PropertyTests {
    static func randomFrame(using rng: inout SeededGenerator) -> Frame {
        let payloadLength = Bool.random(using: &rng) ? Int.random(in: 0...40, using: &rng)
            : Int.random(in: 0...Frame.maxPayloadLength, using: &rng)
        return Frame(
            flags: Frame.Flags(rawValue: [0x00, 0x80, 0xC0].randomElement(using: &rng)!),
            address: UInt8.random(in: 0...255, using: &rng),
            serial: UInt32.random(in: 0...UInt32.max, using: &rng),
            sequence: UInt8.random(in: 0...255, using: &rng),
            command: UInt8.random(in: 0...255, using: &rng),
            payload: (0..<payloadLength).map { _ in UInt8.random(in: 0...255, using: &rng) })
    }

    /// Random frames survive encode -> decode unchanged, alone and back to back.
    @Test func randomFramesRoundTrip() {
        var rng = SeededGenerator(seed: 42)
        var stream: [UInt8] = []
        var expected: [DecodedItem] = []
        for _ in 0..<2000 {
            let frame = Self.randomFrame(using: &rng)
            let bytes = frame.encoded()
            #expect(bytes.count == frame.encodedLength)
            #expect(FrameDecoder.decodeAll(bytes) == [.frame(frame, offset: 0)])
            expected.append(.frame(frame, offset: stream.count))
            stream += bytes
        }
        #expect(FrameDecoder.decodeAll(stream) == expected)
    }

    /// Any change of one byte, to any other value, is detected: no frame comes out of the corrupted copy.
    @Test func everySingleByteCorruptionIsDetected() {
        var rng = SeededGenerator(seed: 4242)
        var checked = 0
        for example in ProtocolExamples.all {
            let bytes = example.frame.encoded()
            for position in bytes.indices {
                for delta in 1...255 where delta % 17 == 1 || position < Frame.headerLength {
                    var corrupted = bytes
                    corrupted[position] &+= UInt8(delta)
                    let frames = FrameDecoder.decodeAll(corrupted).filter { if case .frame = $0 { true } else { false } }
                    #expect(frames.isEmpty, "\(example.name): byte \(position) +\(delta) went undetected")
                    checked += 1
                }
            }
        }
        for _ in 0..<300 {
            let bytes = Self.randomFrame(using: &rng).encoded()
            var corrupted = bytes
            let position = Int.random(in: 0..<bytes.count, using: &rng)
            corrupted[position] &+= UInt8.random(in: 1...255, using: &rng)
            let items = FrameDecoder.decodeAll(corrupted)
            #expect(!items.contains { if case .frame = $0 { true } else { false } }, "random frame byte \(position)")
            checked += 1
        }
        #expect(checked > 10_000)
    }

    /// Typed messages: encoding then decoding the frame gives back an equal message.
    @Test func typedMessagesRoundTrip() {
        for example in ProtocolExamples.all {
            let decoded = FrameDecoder.decodeAll(example.frame.encoded())
            guard case .frame(let frame, _) = decoded.first else {
                Issue.record("\(example.name) did not decode")
                continue
            }
            switch frame.decodeMessage() {
            case .message(let m): #expect(m.payload == example.frame.payload, "\(example.name)")
            case .nak(let n): #expect(n.payload == example.frame.payload, "\(example.name)")
            case .invalid(let e): Issue.record("\(example.name): \(e.explanation)")
            }
        }
    }

    @Test func randomStatusAndCreditMessagesRoundTrip() throws {
        var rng = SeededGenerator(seed: 9)
        for _ in 0..<500 {
            let status = MeterStatus(
                kind: [.electricity, .water, .heat].randomElement(using: &rng)!,
                registerUnits: UInt64.random(in: 0...UInt64.max, using: &rng),
                creditUnits: Int64.random(in: Int64.min...Int64.max, using: &rng),
                demand: UInt32.random(in: 0...UInt32.max, using: &rng),
                meterTime: UInt32.random(in: 0...UInt32.max, using: &rng),
                lastAppliedSequence: UInt32.random(in: 0...UInt32.max, using: &rng),
                alarms: Alarms(rawValue: UInt16.random(in: 0...UInt16.max, using: &rng)),
                relay: RelayState.allCases.randomElement(using: &rng)!,
                relayReason: RelayReason.allCases.randomElement(using: &rng)!,
                alarmThresholdUnits: UInt32.random(in: 0...UInt32.max, using: &rng),
                cutoffThresholdUnits: UInt32.random(in: 0...UInt32.max, using: &rng))
            #expect(try MeterStatus(payload: status.payload) == status)
            let mac = (0..<8).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let credit = ApplyCreditRequest(
                purchaseSequence: UInt32.random(in: 0...UInt32.max, using: &rng),
                units: UInt32.random(in: 0...UInt32.max, using: &rng),
                auth: Authentication(counter: UInt32.random(in: 0...UInt32.max, using: &rng),
                                     keyRevision: UInt8.random(in: 0...255, using: &rng), mac: mac))
            #expect(try ApplyCreditRequest(payload: credit.payload) == credit)
        }
    }
}

@Suite struct MessageTests {
    @Test func requestsMustBeExact() {
        var payload = ReadEventsRequest(fromIndex: 3, maxCount: 4).payload
        payload.append(0)
        #expect(throws: PayloadError.trailingBytes(count: 1)) { try ReadEventsRequest(payload: payload) }
    }

    @Test func responsesMayGrowAtTheEnd() throws {
        let status = RelayStatus(relay: .open, reason: .tamper)
        #expect(try RelayStatus(payload: status.payload + [0xAB]) == status)
    }

    @Test func truncatedPayloadNamesTheField() {
        let bytes = Array(ApplyCreditRequest(purchaseSequence: 1, units: 2,
                                             auth: ProtocolExamples.auth(3)).payload.prefix(6))
        #expect(throws: PayloadError.truncated(field: "units", needed: 2)) { try ApplyCreditRequest(payload: bytes) }
    }

    @Test func undefinedEnumValueIsRefused() {
        #expect(throws: PayloadError.invalidValue(field: "target", value: 7)) {
            try SetRelayRequest(payload: [7] + ProtocolExamples.auth(1).payloadBytes)
        }
    }

    @Test func unknownCommandAndNewerVersionAreTyped() {
        let unknown = Frame(address: 1, sequence: 0, command: 0x3F)
        #expect(unknown.decodeMessage() == .invalid(.unknownCommand(0x3F)))
        var newer = Frame(address: 1, sequence: 0, command: .identify)
        newer.version = 2
        #expect(newer.decodeMessage() == .invalid(.unsupportedVersion(2)))
    }

    @Test func nakCarriesCodeAndDetail() {
        let request = Frame(request: ApplyCreditRequest(purchaseSequence: 9, units: 1, auth: ProtocolExamples.auth(1)),
                            address: 3, sequence: 77)
        let nak = Frame(nak: Nak(.sequenceGap, detail: 7), to: request, address: 3, serial: 123)
        #expect(nak.isNak && nak.isResponse && nak.sequence == 77 && nak.command == Command.applyCredit.rawValue)
        #expect(nak.decodeMessage() == .nak(Nak(.sequenceGap, detail: 7)))
    }

    @Test func discoveryPrefixMatching() {
        let request = DiscoverRequest(prefixBits: 4, prefix: 0x1000_0000)
        #expect(request.matches(serial: 0x1FFF_FFFF))
        #expect(!request.matches(serial: 0x2000_0000))
        #expect(DiscoverRequest(prefixBits: 0, prefix: 0).matches(serial: 0xDEAD_BEEF))
        #expect(DiscoverRequest(prefixBits: 32, prefix: 5).matches(serial: 5))
        #expect(throws: PayloadError.invalidValue(field: "prefix", value: 1)) {
            try DiscoverRequest(payload: [4, 0, 0, 0, 1])
        }
    }

    @Test func macCoversCommandSerialAndPayload() {
        let request = ApplyCreditRequest(purchaseSequence: 42, units: 100, auth: ProtocolExamples.auth(5))
        let bytes = request.authenticatedBytes(serial: 0x01020304)
        #expect(bytes == Array("MGW1".utf8) + [0x07, 0x01, 0x02, 0x03, 0x04] + [0, 0, 0, 42, 0, 0, 0, 100]
                + [0, 0, 0, 5, 1])
    }

    @Test func hexParsing() {
        #expect(parseHex("7E 01 0a:ff-10") == [0x7E, 0x01, 0x0A, 0xFF, 0x10])
        #expect(parseHex("0x7E 0x01") == [0x7E, 0x01])
        #expect(parseHex("7E0") == nil)
        #expect(parseHex("zz") == nil)
    }

    @Test func utcTimeConversions() {
        #expect(UTCTime.iso8601(0) == "1970-01-01T00:00:00Z")
        #expect(UTCTime.iso8601(ProtocolExamples.time) == "2026-11-25T08:30:00Z")
        #expect(UTCTime.seconds(year: 2026, month: 11, day: 25, hour: 8, minute: 30) == Int64(ProtocolExamples.time))
        #expect(UTCTime.iso8601(951_782_400) == "2000-02-29T00:00:00Z")
        for s: UInt32 in stride(from: 0, to: UInt32.max - 100_000, by: 9_999_991) {
            let c = UTCTime.components(Int64(s))
            #expect(UTCTime.seconds(year: c.year, month: c.month, day: c.day, hour: c.hour, minute: c.minute,
                                    second: c.second) == Int64(s))
        }
    }
}

extension Authentication {
    var payloadBytes: [UInt8] {
        var w = ByteWriter()
        self.write(to: &w)
        return w.bytes
    }
}
