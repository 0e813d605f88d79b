import ArgumentParser
import Foundation
import Gateway
import MeterBus
import MeterProtocol
import Prepaid

/// What the signed meter commands share: the bus, the meter, the key file.
struct SignedCommandOptions: ParsableArguments {
    @OptionGroup var bus: BusOptions

    @Option(help: "The meter: bus address, serial, or ADDRESS:SERIAL.")
    var meter: MeterSelector

    @Option(help: "The metergw key file (default: $XDG_CONFIG_HOME/metergw/keys).")
    var keys: String?

    func run<T>(_ body: (NativeDriver, KeyFileSigner) throws(BusError) -> T) throws -> T {
        try Self.run(bus: self.bus, meter: self.meter.address, keys: self.keys, body)
    }

    /// Opens the bus, loads the keys, signs with the counter after the meter's last, runs `body`.
    static func run<T>(bus: BusOptions, meter: MeterAddress, keys path: String?,
                       _ body: (NativeDriver, KeyFileSigner) throws(BusError) -> T) throws -> T {
        guard meter.station == nil else {
            throw ValidationError("\(meter) is a DL/T 645 address: add --protocol dlt645")
        }
        let keys = try KeyFileOption.load(path)
        let session = try bus.session()
        defer { session.close() }
        let driver = NativeDriver(session: session)
        let signer = try KeyFileSigner.next(for: meter, driver: driver, keys: keys)
        return try BusFailure.map { () throws(BusError) in try body(driver, signer) }
    }
}

/// `metergw relay`: cut or restore supply.
struct Relay: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Open (cut supply) or close (restore supply) a meter's relay or valve; signed with the key file.",
        discussion: "Closing is refused by a meter whose credit is exhausted: only credit restores supply.")

    enum Position: String, ExpressibleByArgument, CaseIterable { case open, close }

    @Argument(help: "open or close.")
    var position: Position

    @OptionGroup var options: SignedCommandOptions

    @OptionGroup var wire: ProtocolOptions

    func run() throws {
        let target: RelayState = self.position == .open ? .open : .closed
        let outcome: RelayOutcome
        var name = self.options.meter.description
        if self.wire.wire == .native {
            outcome = try self.options.run { driver, signer throws(BusError) in
                try driver.setRelay(self.options.meter.address, to: target, signer: signer)
            }
        } else {
            // Modbus (a coil in the map) and DL/T 645 (0x1C with its password) carry no native MAC: no keys.
            let meter = try self.wire.meter(self.options.meter)
            name = meter.description
            let session = try self.options.bus.session()
            defer { session.close() }
            let driver = try self.wire.driver(session)
            outcome = try BusFailure.map { () throws(BusError) in
                try driver.setRelay(meter, to: target, signer: UnsignedRequests())
            }
        }
        if self.options.bus.json {
            Output.line(JSONValue.object([("relay", .string(outcome.relay.name)),
                                          ("reason", .string(outcome.reason.name))]).rendered())
        } else {
            Output.line("\(name): relay \(outcome.relay.name)"
                        + (outcome.reason == .none ? "" : " (\(outcome.reason.name))"))
        }
    }
}

/// `metergw thresholds`: the low-credit alarm and cutoff levels.
struct ThresholdsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "thresholds",
        abstract: "Set a meter's low-credit alarm and cutoff thresholds (in Wh or L); signed with the key file.",
        discussion: "Modbus meters take them where the register map marks alarmThreshold and cutoffThreshold "
            + "writable (mgwpm1; no authentication, no keys); DL/T 645 has no such command.")

    @OptionGroup var options: SignedCommandOptions

    @OptionGroup var wire: ProtocolOptions

    @Option(help: "Credit at which the meter warns (beeps), in the meter's unit.")
    var alarm: UInt32

    @Option(help: "Credit at which the meter cuts supply until a card is inserted; at most --alarm.")
    var cutoff: UInt32

    func validate() throws {
        guard self.alarm >= self.cutoff else { throw ValidationError("--alarm must be at least --cutoff") }
    }

    func run() throws {
        let outcome: ThresholdsOutcome
        if self.wire.wire == .native {
            outcome = try self.options.run { driver, signer throws(BusError) in
                try driver.setThresholds(self.options.meter.address, alarm: self.alarm, cutoff: self.cutoff,
                                         signer: signer)
            }
        } else {
            // The driver says whether the meter's map (or protocol) has writable thresholds: a typed error if not.
            let meter = try self.wire.meter(self.options.meter)
            let session = try self.options.bus.session()
            defer { session.close() }
            let driver = try self.wire.driver(session)
            outcome = try BusFailure.map { () throws(BusError) in
                try driver.setThresholds(meter, alarm: self.alarm, cutoff: self.cutoff, signer: UnsignedRequests())
            }
        }
        if self.options.bus.json {
            Output.line(JSONValue.object([("alarm", .uint(UInt64(outcome.alarm))),
                                          ("cutoff", .uint(UInt64(outcome.cutoff)))]).rendered())
        } else {
            Output.line("\(self.options.meter): alarm at \(outcome.alarm), cutoff at \(outcome.cutoff) (meter units)")
        }
    }
}

/// `metergw clock sync`: set a meter's clock, or nudge every meter's.
struct Clock: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Set meter clocks to this computer's time.",
        subcommands: [Sync.self])

    struct Sync: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Set one meter's clock (signed), or broadcast the time to every meter (--all).",
            discussion: """
                --all broadcasts BROADCAST_TIME: no keys, no answers; each meter adopts it only if it is within \
                300 s of its own clock and at most once a day (docs/PROTOCOL.md §4.2). Larger errors need --meter. \
                DL/T 645: --meter writes the date and time (write data 0x14) with --dlt645-password, in the \
                meter's local time (--utc-offset-hours).
                """)

        @OptionGroup var bus: BusOptions

        @OptionGroup var wire: ProtocolOptions

        @Option(help: "The meter: bus address, serial, or ADDRESS:SERIAL.")
        var meter: MeterSelector?

        @Flag(help: "Broadcast the time to every meter on the bus.")
        var all = false

        @Option(help: "The metergw key file (default: $XDG_CONFIG_HOME/metergw/keys).")
        var keys: String?

        func validate() throws {
            guard (self.meter == nil) == self.all else { throw ValidationError("give --meter M or --all") }
        }

        func run() throws {
            let now = UInt32(Date().timeIntervalSince1970)
            if self.all {
                let session = try self.bus.session()
                defer { session.close() }
                let driver = try self.wire.driver(session)
                try BusFailure.map { () throws(BusError) in try driver.broadcastTime(now) }
                if self.bus.json {
                    Output.line(JSONValue.object([("broadcast", .string(UTCTime.iso8601(now))),
                                                  ("protocol", .string(driver.protocolName))]).rendered())
                } else {
                    let rule = self.wire.wire == .dlt645 ? "meters adopt it by their own rules (DL/T 645: within "
                        + "5 minutes, once a day)" : "meters within 300 s adopt it"
                    Output.line("broadcast \(UTCTime.iso8601(now)) (\(driver.protocolName)): \(rule) (no answers)")
                }
                return
            }
            let meter = self.meter!
            let outcome: ClockOutcome
            if self.wire.wire != .native {
                // Modbus and DL/T 645 drivers say whether their meters take a clock setting (a typed error if not).
                let address = try self.wire.meter(meter)
                let session = try self.bus.session()
                defer { session.close() }
                let driver = try self.wire.driver(session)
                outcome = try BusFailure.map { () throws(BusError) in
                    try driver.setClock(address, to: now, signer: UnsignedRequests())
                }
            } else {
                outcome = try SignedCommandOptions.run(bus: self.bus, meter: meter.address, keys: self.keys) {
                    driver, signer throws(BusError) in try driver.setClock(meter.address, to: now, signer: signer)
                }
            }
            let drift = Int64(outcome.previous) - Int64(now)
            if self.bus.json {
                Output.line(JSONValue.object([("previous", .string(UTCTime.iso8601(outcome.previous))),
                                              ("new", .string(UTCTime.iso8601(outcome.new))),
                                              ("driftSeconds", .int(drift))]).rendered())
            } else {
                Output.line("\(meter): clock set to \(UTCTime.iso8601(outcome.new)); it was " + Read.driftText(drift))
            }
        }
    }
}

/// `metergw alarms ack`: clear latched alarms.
struct AlarmsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "alarms", abstract: "Acknowledge a meter's alarms.", subcommands: [Ack.self])

    struct Ack: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Clear latched alarms (tamper, magnetic field, ...); conditions that persist stay set.")

        @OptionGroup var options: SignedCommandOptions

        @Option(help: "Alarms to clear, comma-separated names (default: all).")
        var only: String?

        func run() throws {
            var mask = Alarms(rawValue: 0xFFFF)
            if let only {
                mask = []
                for name in only.split(separator: ",") {
                    guard let bit = (0..<16).map({ Alarms(rawValue: 1 << $0) }).first(where: { $0.names == [String(name)] })
                    else { throw ValidationError("unknown alarm \"\(name)\"") }
                    mask.insert(bit)
                }
            }
            let remaining = try self.options.run { driver, signer throws(BusError) in
                try driver.acknowledgeAlarms(self.options.meter.address, mask, signer: signer)
            }
            if self.options.bus.json {
                Output.line(JSONValue.object([("alarms", .array(remaining.names.map { .string($0) }))]).rendered())
            } else {
                Output.line("\(self.options.meter): alarms still set: "
                            + (remaining.names.isEmpty ? "none" : remaining.names.joined(separator: ", ")))
            }
        }
    }
}

/// `metergw topup`: a signed remote credit; low-level (`--meter --units --seq`) or from the store (`--remote`).
struct Topup: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Send a purchase's credit to a meter over the bus (signed); it is applied at most once.",
        discussion: """
            The purchase sequence is the meter's purchase number (docs/PROTOCOL.md §5.3): the meter applies it \
            only if it is the next one, answers "already applied" for one it has, and refuses a gap. A lost \
            answer is safe to retry: the same purchase is never applied twice.
            Low level: --meter M --units N --seq S sends one credit, nothing recorded.
            From the billing store: --remote --account A [--amount 100.00 --request-id R] sells a remote purchase \
            (or, without --amount, takes the account's queued ones), reads the meter's last applied sequence, \
            confirms what it already has, then sends every queued purchase of the meter in sequence order up to \
            this one and marks each applied on "applied" or "already applied". After a lost answer it reads the \
            last applied sequence again before deciding anything; run the same command again to finish. The meter \
            is addressed by --meter, else by the bus address recorded for it (meter add --address), else by serial.
            With --url (the central store) it delivers the centre's purchases of a meter that no gateway serves; \
            a meter a gateway serves is refused before anything is sold (its gateway delivers its credit).
            Exit status 0 applied or already applied; 76 refused (with the reason); 69 no answer (nothing lost: \
            the purchase stays queued).
            """)

    @OptionGroup var bus: BusOptions

    @Option(help: "The meter: bus address, serial, or ADDRESS:SERIAL.")
    var meter: MeterSelector?

    @Option(help: "The metergw key file (default: $XDG_CONFIG_HOME/metergw/keys).")
    var keys: String?

    @Option(help: "Credit in the meter's unit (Wh or L) (low level).")
    var units: UInt32?

    @Option(help: "The purchase's sequence number for this meter (low level).")
    var seq: UInt32?

    @Flag(help: "Deliver the account's remote purchase from the billing store.")
    var remote = false

    @Option(help: "Account id, or #number (with --remote).")
    var account: String?

    @Option(help: "Money brought, in major units: sell a remote purchase first (with --remote).")
    var amount: String?

    @Option(help: "Idempotency key of the sale (with --amount).")
    var requestId: String?

    @OptionGroup var desk: DeskOptions

    func validate() throws {
        if self.remote {
            guard self.account != nil else { throw ValidationError("--remote needs --account A") }
            guard self.units == nil, self.seq == nil else {
                throw ValidationError("--units and --seq are for the low-level form; --remote takes them from the store")
            }
            guard self.requestId == nil || self.amount != nil else { throw ValidationError("--request-id needs --amount") }
        } else {
            guard self.account == nil, self.amount == nil else { throw ValidationError("--account and --amount need --remote") }
            guard self.meter != nil, let units, let seq else {
                throw ValidationError("give --meter M --units N --seq S, or --remote --account A")
            }
            guard units > 0 else { throw ValidationError("--units must be positive") }
            guard seq > 0 else { throw ValidationError("--seq starts at 1") }
        }
    }

    func run() throws {
        if self.remote { return try RemoteTopup(command: self).run() }
        let meter = self.meter!
        let (units, seq) = (self.units!, self.seq!)
        let outcome = try SignedCommandOptions.run(bus: self.bus, meter: meter.address, keys: self.keys) {
            driver, signer throws(BusError) in
            try driver.applyCredit(meter.address, purchaseSequence: seq, units: units, signer: signer)
        }
        if self.bus.json {
            Output.line(JSONValue.object([
                ("outcome", .string(outcome.applied ? "applied" : "already-applied")),
                ("lastAppliedSequence", .uint(UInt64(outcome.lastAppliedSequence))), ("credit", .int(outcome.credit)),
            ]).rendered())
        } else if outcome.applied {
            Output.line("\(meter): purchase \(seq) applied, \(units) units; credit now \(outcome.credit)")
        } else {
            Output.line("\(meter): purchase \(seq) was already applied (last applied "
                        + "\(outcome.lastAppliedSequence)); nothing added; credit \(outcome.credit)")
        }
    }
}
