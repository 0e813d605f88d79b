import Foundation
import Testing
@testable import ModbusProtocol

/// Frames captured from pymodbus and minimalmodbus (Tests/InteropTests, METERGW_REGENERATE_FIXTURES=1): every
/// request decodes and our encoder produces it byte for byte; every answer decodes against its request.
@Suite struct PeerFixtureTests {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures/peers")

    static func frames(_ name: String) throws -> [(String, [UInt8])] {
        let data = try Data(contentsOf: folder.appendingPathComponent(name + ".json"))
        let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let list = try #require(object["frames"] as? [[String: String]])
        return list.compactMap { entry in
            entry.first.map { ($0.key, $0.value.split(separator: " ").compactMap { UInt8($0, radix: 16) }) }
        }
    }

    /// Pairs (request, answer) from a capture: `requests` is the direction the peer's requests go ("tx" for a
    /// client, "rx" for a server); a request without an answer pairs with nil.
    static func exchanges(_ name: String, requests: String) throws -> [([UInt8], [UInt8]?)] {
        var out: [([UInt8], [UInt8]?)] = []
        for (direction, bytes) in try frames(name) {
            if direction == requests {
                // Requests read back to back arrive as one chunk: split them by their function's length.
                var rest = bytes[...]
                while let length = ModbusRTUFramer.requestLength(Array(rest)), length <= rest.count {
                    out.append((Array(rest.prefix(length)), nil))
                    rest = rest.dropFirst(length)
                }
                #expect(rest.isEmpty, "\(name): \(rest.count) bytes left after the requests")
            } else {
                #expect(!out.isEmpty && out[out.count - 1].1 == nil, "\(name): an answer without a request")
                if !out.isEmpty { out[out.count - 1].1 = bytes }
            }
        }
        return out
    }

    func check(_ name: String, requests: String) throws -> [(ModbusRequest, ModbusResponse?)] {
        var decoded: [(ModbusRequest, ModbusResponse?)] = []
        for (requestBytes, answerBytes) in try Self.exchanges(name, requests: requests) {
            let adu = try ModbusADU(frame: requestBytes)
            let request = try ModbusRequest(pdu: adu.pdu)
            #expect(ModbusADU(address: adu.address, pdu: request.pdu).encoded() == requestBytes)
            guard let answerBytes else {
                decoded.append((request, nil))
                continue
            }
            let answer = try ModbusADU(frame: answerBytes)
            #expect(answer.address == adu.address)
            let response = try ModbusResponse(pdu: answer.pdu, for: request)
            #expect(response.pdu(for: request) == answer.pdu)
            if case .exception = response {} else if let length = request.expectedAnswerLength {
                #expect(answerBytes.count == length)
            }
            decoded.append((request, response))
        }
        #expect(!decoded.isEmpty)
        return decoded
    }

    @Test func pymodbusClientFrames() throws {
        let decoded = try self.check("pymodbus-client", requests: "tx")
        #expect(decoded.first?.0 == .readHoldingRegisters(address: 0, count: 14))
        #expect(decoded.contains { $0.0 == .writeMultipleRegisters(address: 10, values: [0, 30_000, 0, 3_000]) })
        #expect(decoded.contains { $0.1 == .exception(function: 3, .illegalDataAddress) })
        #expect(decoded.contains { $0.1 == .exception(function: 6, .illegalDataAddress) })
    }

    @Test func minimalmodbusClientFrames() throws {
        let decoded = try self.check("minimalmodbus-client", requests: "tx")
        #expect(decoded.first?.0 == .readHoldingRegisters(address: 0, count: 2))
        #expect(decoded.first?.1 == .registers([0x12, 0xD680]))
        #expect(decoded.contains { $0.0 == .writeSingleCoil(address: 0, on: false) })
    }

    @Test func pymodbusServerFrames() throws {
        let decoded = try self.check("pymodbus-server", requests: "rx")
        // The SDM630 simulation: 230.1 V as float32 is 0x4366199A, high word first.
        guard case .registers(let words)? = decoded.first?.1 else {
            Issue.record("no register answer first")
            return
        }
        #expect(Array(words.prefix(2)) == [0x4366, 0x199A])
        #expect(decoded.contains { $0.1 == .exception(function: 4, .illegalDataAddress) })
    }
}
