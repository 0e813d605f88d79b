import ModbusMaps
import Testing
@testable import ModbusProtocol

@Suite struct RegisterMapTests {
    static func bits(_ f: Float) -> UInt32 { f.bitPattern }  // test-side only: makes IEEE inputs readable

    /// Float registers become exact integers without floating-point arithmetic on the way.
    @Test func float32ScalesExactly() {
        #expect(RegisterMap.scaledFloat32(bits: Self.bits(1234.5), multiply: 1000, divide: 1) == 1_234_500)
        #expect(RegisterMap.scaledFloat32(bits: Self.bits(230.1), multiply: 10, divide: 1) == 2301)
        #expect(RegisterMap.scaledFloat32(bits: Self.bits(-0.25), multiply: 1, divide: 1) == 0)  // -0.25 rounds to 0
        #expect(RegisterMap.scaledFloat32(bits: Self.bits(-0.5), multiply: 1, divide: 1) == -1)
        #expect(RegisterMap.scaledFloat32(bits: Self.bits(0), multiply: 1000, divide: 1) == 0)
        #expect(RegisterMap.scaledFloat32(bits: Self.bits(1e-30), multiply: 1000, divide: 1) == 0)
        #expect(RegisterMap.scaledFloat32(bits: Self.bits(16_777_216), multiply: 1000, divide: 1) == 16_777_216_000)
        #expect(RegisterMap.scaledFloat32(bits: Self.bits(.infinity), multiply: 1, divide: 1) == nil)
        #expect(RegisterMap.scaledFloat32(bits: Self.bits(.nan), multiply: 1, divide: 1) == nil)
        #expect(RegisterMap.scaledFloat32(bits: Self.bits(3e38), multiply: 1000, divide: 1) == nil)
        // Against the exact decimal value of every float in a sweep (the float's own value, scaled by 1000).
        var rng = UInt32(7)
        for _ in 0..<2000 {
            rng = rng &* 1_664_525 &+ 1_013_904_223
            let f = Float(rng % 10_000_000) / 100
            let expected = Int64((Double(f) * 1000).rounded(.toNearestOrAwayFromZero))
            #expect(RegisterMap.scaledFloat32(bits: f.bitPattern, multiply: 1000, divide: 1) == expected, "\(f)")
        }
    }

    @Test func integerTypesWordOrderAndBCD() throws {
        func entry(_ type: RegisterMap.ValueType, _ order: RegisterMap.WordOrder = .big, multiply: Int64 = 1,
                   divide: Int64 = 1) -> RegisterMap.Entry {
            RegisterMap.Entry(name: "x", reading: "register", table: .holding, address: 0, type: type, wordOrder: order,
                              multiply: multiply, divide: divide, unit: "Wh", reference: nil)
        }
        #expect(try RegisterMap.value(of: entry(.u32, multiply: 10), registers: [0x0001, 0x86A0]) == 1_000_000)
        #expect(try RegisterMap.value(of: entry(.u32, .little), registers: [0x86A0, 0x0001]) == 100_000)
        #expect(try RegisterMap.value(of: entry(.s16), registers: [0xFFFE]) == -2)
        #expect(try RegisterMap.value(of: entry(.s32), registers: [0xFFFF, 0xFFFF]) == -1)
        #expect(try RegisterMap.value(of: entry(.bcd32), registers: [0x0012, 0x3456]) == 123_456)
        #expect(try RegisterMap.value(of: entry(.u16, divide: 4), registers: [10]) == 3)  // 2.5 rounds to 3
        #expect(throws: RegisterMap.Failure.notBCD(entry: "x")) {
            try RegisterMap.value(of: entry(.bcd16), registers: [0x12A4])
        }
        #expect(throws: RegisterMap.Failure.wrongRegisterCount(entry: "x", expected: 2, got: 1)) {
            try RegisterMap.value(of: entry(.u32), registers: [1])
        }
        let float = entry(.float32, multiply: 1000)
        #expect(try RegisterMap.value(of: float, registers: [0x449A, 0x5000]) == 1_234_500)  // 1234.5 kWh
    }

    @Test func shippedMapsLoadAndValidate() throws {
        #expect(RegisterMaps.builtInNames == ["dds238", "mgwpm1", "sdm630"])
        let sdm = try RegisterMaps.load("sdm630")
        #expect(sdm.registers.first { $0.name == "importEnergy" }?.address == 72)
        #expect(sdm.registers.allSatisfy { $0.reference != nil })
        let dds = try RegisterMaps.load("dds238")
        #expect(dds.registers.first { $0.reading == "register" }?.type == .u32)
        #expect(throws: RegisterMaps.Failure.self) { try RegisterMaps.load("no-such-meter") }
    }
}
