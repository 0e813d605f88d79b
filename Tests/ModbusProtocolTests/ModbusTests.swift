import Testing
@testable import ModbusProtocol

@Suite struct ModbusTests {
    @Test func crcCatalogueValueAndKnownFrames() throws {
        #expect(ModbusCRC.checksum(Array("123456789".utf8)) == 0x4B37)
        // Widely published request frames (Modbus over Serial Line examples, libmodbus unit tests).
        #expect(ModbusADU(address: 0x01, pdu: ModbusRequest.readHoldingRegisters(address: 0, count: 10).pdu).encoded()
                == [0x01, 0x03, 0x00, 0x00, 0x00, 0x0A, 0xC5, 0xCD])
        #expect(ModbusADU(address: 0x11, pdu: ModbusRequest.readHoldingRegisters(address: 0x6B, count: 3).pdu)
                .encoded() == [0x11, 0x03, 0x00, 0x6B, 0x00, 0x03, 0x76, 0x87])
        let adu = try ModbusADU(frame: [0x11, 0x03, 0x00, 0x6B, 0x00, 0x03, 0x76, 0x87])
        #expect(adu.address == 0x11 && adu.pdu == [0x03, 0x00, 0x6B, 0x00, 0x03])
        #expect(throws: ModbusError.crcMismatch) { try ModbusADU(frame: [0x11, 0x03, 0x00, 0x6B, 0x00, 0x03, 0x76, 0x88]) }
        #expect(throws: ModbusError.tooShort(3)) { try ModbusADU(frame: [0x11, 0x03, 0x00]) }
    }

    static let requests: [ModbusRequest] = [
        .readCoils(address: 19, count: 19), .readDiscreteInputs(address: 196, count: 22),
        .readHoldingRegisters(address: 107, count: 3), .readInputRegisters(address: 8, count: 1),
        .writeSingleCoil(address: 172, on: true), .writeSingleCoil(address: 3, on: false),
        .writeSingleRegister(address: 1, value: 3),
        .writeMultipleCoils(address: 19, values: [true, false, true, true, false, false, true, true, true, false]),
        .writeMultipleRegisters(address: 1, values: [0x000A, 0x0102]),
        .readWriteMultipleRegisters(readAddress: 3, readCount: 6, writeAddress: 14, values: [0x00FF, 0x00FF, 0x00FF]),
        .readDeviceIdentification(code: 1, objectID: 0),
    ]

    /// The one-buffer encoder the bus master uses gives the same bytes as address + PDU + CRC built in steps.
    @Test func encodedADUMatchesTheStepwiseEncoding() {
        #expect(ModbusRequest.readHoldingRegisters(address: 0x6B, count: 3).encodedADU(address: 0x11)
                == [0x11, 0x03, 0x00, 0x6B, 0x00, 0x03, 0x76, 0x87])
        for request in Self.requests {
            for address: UInt8 in [1, 17, 247] {
                #expect(request.encodedADU(address: address)
                        == ModbusADU(address: address, pdu: request.pdu).encoded())
            }
        }
    }

    /// Every request survives encode -> a server's parse; the spec's example PDUs come out byte for byte.
    @Test func requestsRoundTripAndMatchTheSpec() throws {
        for request in Self.requests { #expect(try ModbusRequest(pdu: request.pdu) == request) }
        // MAP v1.1b3 §6.11 (0x0F) and §6.12 (0x10) examples.
        #expect(ModbusRequest.writeMultipleCoils(address: 19, values: [true, false, true, true, false, false, true, true,
                                                                       true, false]).pdu
                == [0x0F, 0x00, 0x13, 0x00, 0x0A, 0x02, 0xCD, 0x01])
        #expect(ModbusRequest.writeMultipleRegisters(address: 1, values: [0x000A, 0x0102]).pdu
                == [0x10, 0x00, 0x01, 0x00, 0x02, 0x04, 0x00, 0x0A, 0x01, 0x02])
    }

    @Test func responsesRoundTripAgainstTheirRequests() throws {
        let cases: [(ModbusRequest, ModbusResponse)] = [
            (.readCoils(address: 19, count: 19), .bits((0..<19).map { $0 % 3 == 0 })),
            (.readHoldingRegisters(address: 107, count: 3), .registers([0x022B, 0x0000, 0x0064])),
            (.writeSingleCoil(address: 172, on: true), .wroteSingleCoil(address: 172, on: true)),
            (.writeSingleRegister(address: 1, value: 3), .wroteSingleRegister(address: 1, value: 3)),
            (.writeMultipleRegisters(address: 1, values: [1, 2]), .wroteMultiple(address: 1, count: 2)),
            (.readDeviceIdentification(code: 1, objectID: 0),
             .deviceIdentification(code: 1, conformity: 0x81, moreFollows: false, nextObjectID: 0, objects: [
                .init(id: 0, value: Array("metergw".utf8)), .init(id: 1, value: Array("EM-1".utf8)),
                .init(id: 2, value: Array("1.0".utf8)),
             ])),
            (.readInputRegisters(address: 0, count: 2), .exception(function: 0x04, .illegalDataAddress)),
        ]
        for (request, response) in cases {
            #expect(try ModbusResponse(pdu: response.pdu(for: request), for: request) == response)
        }
        // MAP §6.3 example: holding registers 108-110 read as 0x022B, 0x0000, 0x0064.
        #expect(try ModbusResponse(pdu: [0x03, 0x06, 0x02, 0x2B, 0x00, 0x00, 0x00, 0x64],
                                   for: .readHoldingRegisters(address: 107, count: 3))
                == .registers([0x022B, 0x0000, 0x0064]))
        #expect(ModbusResponse.exception(function: 0x04, .illegalDataAddress).pdu(for: .readInputRegisters(address: 0, count: 2))
                == [0x84, 0x02])
    }

    @Test func badPDUsAreTypedErrors() {
        #expect(throws: ModbusError.unknownFunction(0x41)) { try ModbusRequest(pdu: [0x41, 0, 0]) }
        #expect(throws: ModbusError.self) { try ModbusRequest(pdu: [0x03, 0, 0, 0, 126]) }  // > 125 registers
        #expect(throws: ModbusError.self) { try ModbusRequest(pdu: [0x05, 0, 1, 0x12, 0x34]) }  // coil value
        #expect(throws: ModbusError.self) { try ModbusRequest(pdu: [0x03, 0, 0, 0, 1, 0]) }  // trailing byte
        #expect(throws: ModbusError.functionMismatch(expected: 3, got: 4)) {
            try ModbusResponse(pdu: [0x04, 0x02, 0, 1], for: .readHoldingRegisters(address: 0, count: 1))
        }
        #expect(throws: ModbusError.self) {
            try ModbusResponse(pdu: [0x03, 0x04, 0, 1], for: .readHoldingRegisters(address: 0, count: 2))
        }
        #expect(throws: ModbusError.unknownException(0x07)) {
            try ModbusResponse(pdu: [0x83, 0x07], for: .readHoldingRegisters(address: 0, count: 1))
        }
    }

    @Test func timingFollowsTheSerialLineSpec() {
        // 9600 baud, 11 bits: 1.146 ms a character, t3.5 = 4.01 ms, t1.5 = 1.72 ms.
        #expect(ModbusTiming.frameSilenceMicros(baud: 9_600) == 4_011)
        #expect(ModbusTiming.characterGapMicros(baud: 9_600) == 1_719)
        #expect(ModbusTiming.frameSilenceMicros(baud: 38_400) == 1_750)
        #expect(ModbusTiming.characterGapMicros(baud: 115_200) == 750)
    }
}
