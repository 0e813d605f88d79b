import Testing
@testable import ModbusProtocol

/// Frames delimited by silence, with synthetic arrival times (microseconds): no clock in these tests.
@Suite struct RTUFramerTests {
    static let request = ModbusADU(address: 1, pdu: ModbusRequest.readHoldingRegisters(address: 0, count: 2).pdu)
        .encoded()
    static let answer = ModbusADU(address: 1, pdu: [0x03, 0x04, 0x00, 0x01, 0x00, 0x02]).encoded()

    @Test func standardTimingIsFixedAbove19200() {
        // 11 bits a character: 9600 baud → 1.146 ms; t3.5 = 4.01 ms, t1.5 = 1.72 ms.
        #expect(ModbusTiming.frameSilenceMicros(baud: 9600) == 4011)
        #expect(ModbusTiming.characterGapMicros(baud: 9600) == 1719)
        #expect(ModbusTiming.frameSilenceMicros(baud: 115_200) == 1750)
        #expect(ModbusTiming.characterGapMicros(baud: 38_400) == 750)
    }

    @Test func aFrameEndsAtThreePointFiveCharactersOfSilence() {
        var framer = ModbusRTUFramer(baud: 9600)
        framer.append(Array(Self.answer.prefix(4)), atMicros: 1_000)
        framer.append(Array(Self.answer.dropFirst(4)), atMicros: 1_000 + 5 * 1_146)
        #expect(framer.next(nowMicros: 8_000) == nil)  // silence not yet 3.5 characters
        #expect(framer.next(nowMicros: 1_000 + 5 * 1_146 + 4_011) == .frame(Self.answer))
        #expect(framer.bufferedByteCount == 0)
    }

    @Test func twoFramesSeparatedBySilenceAreTwoFrames() {
        var framer = ModbusRTUFramer(baud: 9600)
        framer.append(Self.request, atMicros: 0)
        framer.append(Self.answer, atMicros: 20_000)
        #expect(framer.next(nowMicros: 20_000) == .frame(Self.request))
        #expect(framer.next(nowMicros: 30_000) == .frame(Self.answer))
    }

    @Test func framesRunTogetherWithoutSilenceAreNotGuessedApart() {
        // No CRC scanning: two frames without the silence between them are one bad frame.
        var framer = ModbusRTUFramer(baud: 9600)
        framer.append(Self.request + Self.answer, atMicros: 0)
        #expect(framer.next(nowMicros: 10_000) == .skipped(Self.request + Self.answer, .crcMismatch))
    }

    @Test func aGapOverOnePointFiveCharactersBreaksTheFrame() {
        var framer = ModbusRTUFramer(baud: 9600)
        framer.append(Array(Self.answer.prefix(3)), atMicros: 0)
        // 2.5 ms of silence before one more byte: over t1.5 (1.72 ms), under t3.5.
        framer.append([Self.answer[3]], atMicros: 2_500 + 1_146)
        framer.append(Array(Self.answer.dropFirst(4)), atMicros: 3_646 + 5 * 1_146)
        #expect(framer.next(nowMicros: 30_000) == .skipped(Self.answer, .characterGap))
        // Without the check (an adapter that delivers in bursts) the same bytes are a frame.
        var lenient = ModbusRTUFramer(baud: 9600, checkCharacterGaps: false)
        lenient.append(Array(Self.answer.prefix(3)), atMicros: 0)
        lenient.append([Self.answer[3]], atMicros: 3_646)
        lenient.append(Array(Self.answer.dropFirst(4)), atMicros: 3_646 + 5 * 1_146)
        #expect(lenient.next(nowMicros: 30_000) == .frame(Self.answer))
    }

    @Test func aMasterCompletesAtTheLengthItsRequestImplies() throws {
        var framer = ModbusRTUFramer(baud: 9600, expectedLength: ModbusRequest.readHoldingRegisters(
            address: 0, count: 2).expectedAnswerLength)
        #expect(framer.expectedLength == 9)
        framer.append(Array(Self.answer.prefix(5)), atMicros: 0)
        #expect(framer.neededBytes == 4)
        framer.append(Array(Self.answer.dropFirst(5)), atMicros: 100)
        #expect(framer.next(nowMicros: 100) == .frame(Self.answer))  // no wait for the silence
        // An exception answer is 5 bytes whatever was asked.
        let exception = ModbusADU(address: 1, pdu: [0x83, 0x02]).encoded()
        framer.append(exception, atMicros: 20_000)
        #expect(framer.next(nowMicros: 20_000) == .frame(exception))
        // A damaged answer of the right length waits for the silence and is skipped.
        var damaged = Self.answer
        damaged[4] ^= 0x10
        framer.append(damaged, atMicros: 40_000)
        #expect(framer.next(nowMicros: 40_001) == nil)
        #expect(framer.next(nowMicros: 50_000) == .skipped(damaged, .crcMismatch))
    }

    @Test func aServerCompletesRequestsByFunctionLength() {
        var framer = ModbusRTUFramer(baud: 9600)
        framer.readsRequests = true
        let write = ModbusADU(address: 3, pdu: ModbusRequest.writeMultipleRegisters(address: 10, values: [1, 2, 3]).pdu)
            .encoded()
        framer.append(Array(write.prefix(6)), atMicros: 0)
        #expect(framer.next(nowMicros: 1) == nil)
        framer.append(Array(write.dropFirst(6)), atMicros: 10)
        #expect(framer.next(nowMicros: 10) == .frame(write))
        #expect(ModbusRTUFramer.requestLength(Array(write.prefix(7))) == write.count)
    }

    @Test func shortAndOverlongRunsAreSkipped() {
        var framer = ModbusRTUFramer(baud: 9600)
        framer.append([0x01, 0x03], atMicros: 0)
        #expect(framer.next(nowMicros: 10_000) == .skipped([0x01, 0x03], .tooShort))
        framer.append([UInt8](repeating: 0x55, count: 300), atMicros: 20_000)
        #expect(framer.next(nowMicros: 20_001) == .skipped([UInt8](repeating: 0x55, count: 257), .tooLong))
    }
}

@Suite struct RegisterEncodingTests {
    func entry(_ type: RegisterMap.ValueType, multiply: Int64? = nil, divide: Int64? = nil,
               order: RegisterMap.WordOrder? = nil) -> RegisterMap.Entry {
        RegisterMap.Entry(name: "x", reading: "register", table: .holding, address: 0, type: type, wordOrder: order,
                          multiply: multiply, divide: divide, unit: "Wh", reference: nil, writable: nil)
    }

    /// What an emulator puts in the registers reads back as the same integer, for every type and word order.
    @Test func registersRoundTripThroughTheMap() throws {
        let cases: [(RegisterMap.Entry, Int64)] = [
            (entry(.u16), 4_321), (entry(.s16), -1_234), (entry(.u32, order: .little), 3_000_000_000),
            (entry(.s32), -2_000_000), (entry(.u64), 1 << 40), (entry(.bcd16), 9_876), (entry(.bcd32), 12_345_678),
            (entry(.u32, multiply: 10), 123_450), (entry(.float32, multiply: 1000), 12_345),
            (entry(.float32, multiply: 1000, order: .little), 987_654), (entry(.float32, multiply: 10), -2_301),
            (entry(.float32, multiply: 100), 0),
        ]
        for (entry, value) in cases {
            let words = try RegisterMap.registers(of: entry, value: value)
            #expect(words.count == Int(entry.registerCount))
            #expect(try RegisterMap.value(of: entry, registers: words) == value, "\(entry.type) \(value)")
        }
        #expect(throws: RegisterMap.Failure.overflow(entry: "x")) { try RegisterMap.registers(of: entry(.u16), value: 70_000) }
    }

    /// IEEE 754 bit patterns computed in integers: 12.345 is 0x4145851F, 230.1 is 0x4366199A (nearest).
    @Test func float32BitsAreTheNearestSingle() {
        #expect(RegisterMap.float32Bits(numerator: 12_345, times: 1, over: 1000) == 0x4145_851F)
        #expect(RegisterMap.float32Bits(numerator: 2_301, times: 1, over: 10) == 0x4366_199A)
        #expect(RegisterMap.float32Bits(numerator: 1, times: 1, over: 1) == 0x3F80_0000)
        #expect(RegisterMap.float32Bits(numerator: -2, times: 1, over: 1) == 0xC000_0000)
        #expect(RegisterMap.float32Bits(numerator: 0, times: 1, over: 1) == 0)
    }
}
