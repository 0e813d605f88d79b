import ArgumentParser
import MeterBus
import MeterProtocol
import ModbusProtocol

/// `metergw modbus`: raw register access for technicians, through the same bus master (timing, retries, echo,
/// typed errors) as the meter commands.
struct ModbusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "modbus",
        abstract: "Read and write Modbus RTU registers and coils directly.",
        discussion: """
            Addresses are zero-based protocol addresses (a manual's 40001 is holding register 0, 30001 input \
            register 0). An exception answer exits 76 with its code and meaning; no answer exits 69.
            """,
        subcommands: [ReadHolding.self, ReadInput.self, ReadCoils.self, WriteRegister.self, WriteRegisters.self])

    /// What every raw command shares: the bus and the server's address.
    struct Target: ParsableArguments {
        @OptionGroup var bus: BusOptions

        @Option(name: [.customLong("address"), .customShort("a")], help: "The server's address, 1-247.")
        var address: UInt8

        func validate() throws {
            guard (1...247).contains(self.address) else { throw ValidationError("--address must be 1-247") }
        }

        func run(_ request: ModbusRequest) throws -> ModbusResponse {
            let session = try self.bus.session()
            defer { session.close() }
            let driver = ModbusDriver(session: session, map: RegisterMap(name: "raw", description: "", source: "",
                                                                         defaultLine: nil, registers: []))
            return try BusFailure.map { () throws(BusError) in
                try driver.request(request, to: self.address, timeout: self.bus.timeoutDuration)
            }
        }

        func print(_ start: UInt16, _ response: ModbusResponse, kind: String) {
            switch response {
            case .registers(let values):
                if self.bus.json {
                    Output.line(JSONValue.object([
                        ("address", .uint(UInt64(self.address))), ("table", .string(kind)),
                        ("start", .uint(UInt64(start))), ("registers", .array(values.map { .uint(UInt64($0)) })),
                    ]).rendered())
                } else {
                    for (i, v) in values.enumerated() {
                        Output.line("\(kind) \(Int(start) + i): \(v) (0x\(String(v, radix: 16, uppercase: true)), "
                                    + "signed \(Int16(bitPattern: v)))")
                    }
                }
            case .bits(let bits):
                if self.bus.json {
                    Output.line(JSONValue.object([
                        ("address", .uint(UInt64(self.address))), ("table", .string(kind)),
                        ("start", .uint(UInt64(start))), ("bits", .array(bits.map { .bool($0) })),
                    ]).rendered())
                } else {
                    for (i, b) in bits.enumerated() { Output.line("\(kind) \(Int(start) + i): \(b ? 1 : 0)") }
                }
            case .wroteSingleRegister(let a, let v):
                self.wrote(a, 1, "wrote register \(a) = \(v)")
            case .wroteMultiple(let a, let n):
                self.wrote(a, n, "wrote \(n) register(s) from \(a)")
            default:
                Output.line("\(response)")
            }
        }

        private func wrote(_ start: UInt16, _ count: UInt16, _ text: String) {
            if self.bus.json {
                Output.line(JSONValue.object([("address", .uint(UInt64(self.address))),
                                              ("start", .uint(UInt64(start))),
                                              ("count", .uint(UInt64(count)))]).rendered())
            } else {
                Output.line(text)
            }
        }
    }

    struct ReadHolding: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Read holding registers (function 03).")
        @OptionGroup var target: Target
        @Option(help: "First register (zero-based).") var register: UInt16
        @Option(help: "How many, 1-125.") var count: UInt16 = 1

        func validate() throws { guard (1...125).contains(self.count) else { throw ValidationError("--count is 1-125") } }

        func run() throws {
            let r = try self.target.run(.readHoldingRegisters(address: self.register, count: self.count))
            self.target.print(self.register, r, kind: "holding")
        }
    }

    struct ReadInput: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Read input registers (function 04).")
        @OptionGroup var target: Target
        @Option(help: "First register (zero-based).") var register: UInt16
        @Option(help: "How many, 1-125.") var count: UInt16 = 1

        func validate() throws { guard (1...125).contains(self.count) else { throw ValidationError("--count is 1-125") } }

        func run() throws {
            let r = try self.target.run(.readInputRegisters(address: self.register, count: self.count))
            self.target.print(self.register, r, kind: "input")
        }
    }

    struct ReadCoils: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Read coils (function 01).")
        @OptionGroup var target: Target
        @Option(help: "First coil (zero-based).") var coil: UInt16
        @Option(help: "How many, 1-2000.") var count: UInt16 = 1

        func validate() throws { guard (1...2000).contains(self.count) else { throw ValidationError("--count is 1-2000") } }

        func run() throws {
            let r = try self.target.run(.readCoils(address: self.coil, count: self.count))
            self.target.print(self.coil, r, kind: "coil")
        }
    }

    struct WriteRegister: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Write one holding register (function 06).")
        @OptionGroup var target: Target
        @Option(help: "The register (zero-based).") var register: UInt16
        @Argument(help: "The value, 0-65535.") var value: UInt16

        func run() throws {
            let r = try self.target.run(.writeSingleRegister(address: self.register, value: self.value))
            self.target.print(self.register, r, kind: "holding")
        }
    }

    struct WriteRegisters: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Write consecutive holding registers (function 16).")
        @OptionGroup var target: Target
        @Option(help: "The first register (zero-based).") var register: UInt16
        @Argument(help: "The values, 0-65535 each, 1-123 of them.") var values: [UInt16]

        func validate() throws {
            guard (1...123).contains(self.values.count) else { throw ValidationError("give 1-123 values") }
        }

        func run() throws {
            let r = try self.target.run(.writeMultipleRegisters(address: self.register, values: self.values))
            self.target.print(self.register, r, kind: "holding")
        }
    }
}
