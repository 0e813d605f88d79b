import Testing
@testable import DLT645Protocol

@Suite struct DLT645Tests {
    /// The read-address frame every DL/T 645 tool sends first, as published: FE FE FE FE 68 AA..AA 68 13 00 DF 16.
    @Test func readAddressFrameIsByteExact() {
        let frame = DLT645Frame(address: .wildcard, function: .readAddress)
        #expect(frame.encoded() == [0xFE, 0xFE, 0xFE, 0xFE, 0x68, 0xAA, 0xAA, 0xAA, 0xAA, 0xAA, 0xAA, 0x68, 0x13,
                                    0x00, 0xDF, 0x16])
        #expect(frame.encoded(preamble: 0).first == 0x68)
    }

    @Test func addressesAreBCDLeastSignificantFirst() throws {
        let address = try #require(DLT645Address("000000123456"))
        #expect(address.bytes == [0x56, 0x34, 0x12, 0x00, 0x00, 0x00])
        #expect(address.description == "000000123456")
        #expect(DLT645Address("12345") == nil && DLT645Address("00000012345x") == nil)
        #expect(DLT645Address.wildcard.matches(address) && DLT645Address.broadcast.matches(address))
        #expect(!DLT645Address("000000123457")!.matches(address))
        #expect(DLT645Address(wire: [0x56, 0x34, 0xAA, 0xAA, 0xAA, 0xAA]).matches(address))
    }

    /// Data bytes carry +0x33 on the wire and the checksum is the byte sum from the first 68.
    @Test func readDataRequestOffsetAndChecksum() throws {
        let address = try #require(DLT645Address("000000123456"))
        let bytes = DLT645Read.request(.forwardActiveTotal, to: address).encoded(preamble: 0)
        // DI 00 01 00 00 goes DI0 first: 00 00 01 00, plus 33 each.
        #expect(Array(bytes[10..<14]) == [0x33, 0x33, 0x34, 0x33])
        #expect(bytes[8] == 0x11 && bytes[9] == 4)
        #expect(bytes[14] == bytes[0..<14].reduce(0, &+))
        #expect(bytes.last == 0x16)
    }

    @Test func answersDecodeToIntegerUnits() throws {
        let address = try #require(DLT645Address("000000123456"))
        let request = DLT645Read.request(.forwardActiveTotal, to: address)
        // 12345.67 kWh -> BCD 67 45 23 01 -> 12 345 670 Wh.
        let answer = DLT645Frame.response(to: request, from: address,
                                          data: DataIdentifier.forwardActiveTotal.bytes + [0x67, 0x45, 0x23, 0x01])
        let items = DLT645Decoder.decodeAll(answer.encoded())
        guard case .frame(let decoded, 4) = items.first, items.count == 1 else {
            Issue.record("expected one frame after the preamble: \(items)")
            return
        }
        #expect(decoded == answer && decoded.isResponse && !decoded.isAbnormal && decoded.control == 0x91)
        let (di, value) = try #require(DLT645Read.answer(decoded))
        #expect(di == .forwardActiveTotal)
        #expect(try BCD.value(value, format: try #require(DataFormat.of(di))) == 12_345_670)
        // Signed power: XX.XXXX kW with the sign in the top bit: -1.2345 kW = 45 23 81 -> -12345 dW.
        #expect(try BCD.value([0x45, 0x23, 0x81], format: .power) == -12_345)
        #expect(BCD.bytes(-12_345, format: .power) == [0x45, 0x23, 0x81])
        #expect(try BCD.value([0x05, 0x22], format: .voltage) == 2205)  // 220.5 V
        #expect(throws: BCD.Failure.notBCD(0x4A)) { try BCD.value([0x4A, 0x22], format: .voltage) }
        #expect(throws: BCD.Failure.wrongLength(expected: 4, got: 3)) { try BCD.value([1, 2, 3], format: .energy) }
    }

    @Test func abnormalAnswersCarryTheErrorWord() {
        let address = DLT645Address("000000000001")!
        let request = DLT645Read.request(DataIdentifier(0x0400_0999), to: address)
        let abnormal = DLT645Frame.abnormal(to: request, from: address, error: .noDataRequested)
        #expect(abnormal.control == 0xD1 && abnormal.isAbnormal)
        #expect(DLT645ErrorWord(rawValue: abnormal.data[0]).names == ["no such data"])
        #expect(DLT645Read.answer(abnormal) == nil)
    }

    @Test func decoderResyncsAfterNoiseAndCorruption() {
        let a = DLT645Frame(address: .wildcard, function: .readAddress).encoded()
        let b = DLT645Frame.response(to: DLT645Frame(address: .wildcard, function: .readAddress),
                                     from: DLT645Address("000000123456")!,
                                     data: DLT645Address("000000123456")!.bytes).encoded(preamble: 2)
        var corrupted = a
        corrupted[12] ^= 0x01  // control byte: checksum fails
        let stream = [0x00, 0x68, 0x12] + corrupted + b
        let items = DLT645Decoder.decodeAll(stream)
        let frames = items.compactMap { if case .frame(let f, _) = $0 { f } else { nil } }
        #expect(frames.count == 1 && frames.first?.function == .readAddress && frames.first?.isResponse == true)
        #expect(items.contains { if case .skipped = $0 { true } else { false } })
        // Byte by byte gives the same frames.
        var decoder = DLT645Decoder()
        var bytewise: [DLT645Frame] = []
        for byte in stream {
            decoder.append([byte])
            while let item = decoder.next() { if case .frame(let f, _) = item { bytewise.append(f) } }
        }
        decoder.finish()
        while let item = decoder.next() { if case .frame(let f, _) = item { bytewise.append(f) } }
        #expect(bytewise == frames)
    }

    /// Read follow-up (0x12): the DI and SEQ out; the answer's data ends with SEQ, and its follow-up bit says
    /// whether more comes (§7.3.2).
    @Test func followUpFramesCarryTheirSequenceNumber() throws {
        let address = try #require(DLT645Address("000000123456"))
        let request = DLT645Read.followUpRequest(.forwardActiveTotal, sequence: 2, to: address)
        let bytes = request.encoded(preamble: 0)
        #expect(bytes[8] == 0x12 && bytes[9] == 5)
        #expect(Array(bytes[10..<15]) == [0x33, 0x33, 0x34, 0x33, 0x35])
        let last = DLT645Frame.response(to: request, from: address,
                                        data: DataIdentifier.forwardActiveTotal.bytes + [0x45, 0x23, 0x02])
        #expect(last.control == 0x92 && !last.hasFollowUp)
        let decoded = try #require(DLT645Decoder.decodeAll(last.encoded()).compactMap { item -> DLT645Frame? in
            if case .frame(let f, _) = item { f } else { nil }
        }.first)
        let (di, value, seq) = try #require(DLT645Read.followUpAnswer(decoded))
        #expect(di == .forwardActiveTotal && Array(value) == [0x45, 0x23] && seq == 2)
        let more = DLT645Frame.response(to: request, from: address, data: DataIdentifier.forwardActiveTotal.bytes + [2],
                                        followUp: true)
        #expect(more.control == 0xB2 && more.hasFollowUp && DLT645Read.followUpAnswer(more)?.1.isEmpty == true)
        // A read answer is not a follow-up answer.
        #expect(DLT645Read.followUpAnswer(DLT645Frame.response(
            to: DLT645Read.request(.time, to: address), from: address, data: DataIdentifier.time.bytes + [1, 2, 3])) == nil)
    }

    /// Write data (0x14): DI, password, operator code, then the value; 2026-11-25 (Wednesday) 20:45:07.
    @Test func writeDataOfTheDateAndTimeIsBCDAfterThePassword() throws {
        let address = try #require(DLT645Address("000000123456"))
        let t = CivilTime(unixSeconds: CivilTime.unixSeconds(year: 2026, month: 11, day: 25, hour: 20, minute: 45,
                                                             second: 7))
        #expect(DLT645Read.dateValue(t) == [0x03, 0x25, 0x11, 0x26] && DLT645Read.timeValue(t) == [0x07, 0x45, 0x20])
        let frame = DLT645Read.write(.time, value: DLT645Read.timeValue(t), password: [0x02, 0x11, 0x22, 0x33],
                                     operatorCode: [0xC0, 0xC1, 0xC2, 0xC3], to: address)
        #expect(frame.function == .writeData)
        #expect(frame.data == DataIdentifier.time.bytes + [0x02, 0x11, 0x22, 0x33, 0xC0, 0xC1, 0xC2, 0xC3, 0x07, 0x45,
                                                           0x20])
        let bytes = frame.encoded(preamble: 0)
        #expect(bytes[8] == 0x14 && bytes[9] == 15 && bytes[14] == 0x02 &+ 0x33)
    }

    @Test func broadcastTimeIsBCDToTheBroadcastAddress() {
        let frame = DLT645Read.broadcastTime(year: 2026, month: 11, day: 25, hour: 8, minute: 30, second: 5)
        #expect(frame.address.isBroadcast && frame.control == 0x08)
        #expect(frame.data == [0x05, 0x30, 0x08, 0x25, 0x11, 0x26])
    }
}

@Suite struct CivilTimeTests {
    /// DL/T 645 carries local dates as BCD fields: the conversion to and from Unix seconds is exact.
    @Test func civilFieldsRoundTrip() {
        // 2026-11-25 18:00:05 UTC is a Wednesday.
        let t = CivilTime(unixSeconds: 1_795_629_605)
        #expect([t.year, t.month, t.day, t.hour, t.minute, t.second, t.weekday] == [2026, 11, 25, 18, 0, 5, 3])
        for seconds: Int64 in [0, 951_782_400, 1_709_164_799, 4_102_444_800, 1_795_629_605] {
            let c = CivilTime(unixSeconds: seconds)
            #expect(CivilTime.unixSeconds(year: c.year, month: c.month, day: c.day, hour: c.hour, minute: c.minute,
                                          second: c.second) == seconds)
        }
        #expect(CivilTime(unixSeconds: 0).weekday == 4)  // a Thursday
        #expect(CivilTime.bcd([59, 7, 23]) == [0x59, 0x07, 0x23])
        #expect(CivilTime.numbers([0x59, 0x07]) == [59, 7] && CivilTime.numbers([0x5A]) == nil)
    }
}
