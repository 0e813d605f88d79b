import ArgumentParser
import BillingStore
import MeterProtocol
import Prepaid

/// `metergw meter`: meters in the billing store (not on the bus: `metergw scan` finds those).
struct MeterCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "meter",
        abstract: "Register meters, list and show them, assign them to accounts, change their tariff.",
        subcommands: [Add.self, List.self, Show.self, Assign.self, SetTariff.self])

    static func human(_ m: Meter) -> [String] {
        ["meter \(m.serial) (\(m.kind))"] + StoreCLI.table([
            ("unit", UnitKind(rawValue: UInt8(m.unitKind))?.symbol ?? "?"),
            ("tariff", "\(m.tariffId)"),
            ("account", m.accountId.map(String.init) ?? "none"),
            ("bus", m.bus.map { "\($0) address \(m.address.map(String.init) ?? "?")" } ?? "none"),
            ("key revision", "\(m.keyRevision)"),
            ("last applied sequence", "\(m.lastAppliedSequence)"),
        ])
    }

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Register a meter with its tariff.")
        @OptionGroup var desk: DeskOptions
        @Argument(help: "The meter's serial (1...4294967294).") var serial: UInt32
        @Option(help: "electricity, water or heat.") var kind: String = "electricity"
        @Option(help: "The tariff's name.") var tariff: String
        @Option(help: "The bus (port or name) it is on.") var bus: String?
        @Option(help: "Its bus address (1...247).") var address: UInt8?
        @Option(help: "Its key revision.") var keyRevision: UInt8 = 1
        @Option(help: "Its last applied purchase sequence when commissioned.") var lastApplied: UInt32 = 0
        @Flag(help: "Print one JSON object.") var json = false

        func validate() throws {
            guard ["electricity", "water", "heat"].contains(self.kind) else {
                throw ValidationError("--kind is electricity, water or heat")
            }
        }

        func run() throws {
            let kind = DeviceKind.allCases.first { $0.name == self.kind }!
            let (serial, tariff, bus, address) = (self.serial, self.tariff, self.bus, self.address)
            let (keyRevision, lastApplied, actor) = (self.keyRevision, self.lastApplied, self.desk.actor)
            let meter = try self.desk.run { db in
                try await db.addMeter(serial: serial, kind: kind, tariff: tariff, bus: bus, address: address,
                                      keyRevision: keyRevision, lastApplied: lastApplied, by: actor)
            }
            StoreCLI.emit(json: self.json, StoreCLI.meterJSON(meter)) { ["added " + MeterCommand.human(meter)[0]] }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List every meter.")
        @OptionGroup var desk: DeskOptions
        @Flag(help: "Print one JSON array.") var json = false

        func run() throws {
            let all = try self.desk.run { try await $0.meters() }
            StoreCLI.emit(json: self.json, .array(all.map(StoreCLI.meterJSON))) {
                ["serial      kind         unit  account  last applied"] + all.map { m in
                    func pad(_ s: String, _ n: Int) -> String { s + String(repeating: " ", count: max(1, n - s.count)) }
                    return pad("\(m.serial)", 12) + pad(m.kind, 13) + pad(m.units.symbol, 6)
                        + pad(m.accountId.map(String.init) ?? "-", 9) + "\(m.lastAppliedSequence)"
                }
            }
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show a meter and its pending credit.")
        @OptionGroup var desk: DeskOptions
        @Argument(help: "The meter's serial.") var serial: String
        @Flag(help: "Print one JSON object.") var json = false

        func run() throws {
            let serial = self.serial
            let (meter, pending) = try self.desk.run { db in
                (try await db.meter(serial), try await db.pendingCreditBlock(meter: serial))
            }
            var object = StoreCLI.meterJSON(meter)
            if case .object(var members) = object {
                members.append(("pendingCredit", pending.map { p in
                    .object([("firstSequence", .int(p.firstSequence)), ("lastSequence", .int(p.lastSequence)),
                             ("units", .int(p.units)), ("purchases", .array(p.purchaseIDs.map { .int($0) }))])
                } ?? .null))
                object = .object(members)
            }
            StoreCLI.emit(json: self.json, object) {
                MeterCommand.human(meter) + StoreCLI.table([("pending credit", pending.map {
                    "sequences \($0.firstSequence)...\($0.lastSequence), " + Amount.units($0.units, meter.unitKind)
                } ?? "none")])
            }
        }
    }

    struct Assign: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Assign a meter to an account (one each).")
        @OptionGroup var desk: DeskOptions
        @Argument(help: "The meter's serial.") var serial: String
        @Option(help: "Account id, or #number.") var account: String
        @Flag(help: "Print one JSON object.") var json = false

        func run() throws {
            let (serial, account, actor) = (self.serial, self.account, self.desk.actor)
            let meter = try self.desk.run { try await $0.assignMeter(serial, to: account, by: actor) }
            StoreCLI.emit(json: self.json, StoreCLI.meterJSON(meter)) {
                ["meter \(meter.serial) assigned to account \(meter.accountId!)"]
            }
        }
    }

    struct SetTariff: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "set-tariff",
            abstract: "Change a meter's tariff for its next sales (the tariff must sell the meter's unit).")
        @OptionGroup var desk: DeskOptions
        @Argument(help: "The meter's serial.") var serial: String
        @Option(help: "The tariff's name.") var tariff: String
        @Flag(help: "Print one JSON object.") var json = false

        func run() throws {
            let (serial, tariff, actor) = (self.serial, self.tariff, self.desk.actor)
            let meter = try self.desk.run { try await $0.setTariff(serial, tariff: tariff, by: actor) }
            StoreCLI.emit(json: self.json, StoreCLI.meterJSON(meter)) {
                ["meter \(meter.serial) now sells at tariff \(tariff) (id \(meter.tariffId)) from its next sale"]
            }
        }
    }
}
