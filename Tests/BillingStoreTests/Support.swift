import BillingStore
import Foundation
import GRDB
import MeterProtocol
import Prepaid

/// 2026-11-25T08:30:00Z, the protocol examples' time.
let now: Int64 = 0x6B06_9C88
let desk = Actor("desk", now: now)

/// The published test key (docs/CARD.md §3.4). Never used for real meters.
enum TestKeys {
    static let issuer = IssuerKeys(systemKey: SystemKey(bytes: Array(0..<32))!, issuerID: 1)
    static let cardIssuer = CardIssuer(keys: issuer)
}

enum Tariffs {
    /// Flat 0.5283 yuan/kWh (docs/CARD.md §2.4).
    static let flat = try! Tariff.flat(name: "flat", currency: .cny, unitKind: .wattHours,
                                       price: Price(majorPerThousandUnits: "0.5283", currency: .cny)!)
    /// Three tiers 0.5283 / 0.5783 / 0.8283 yuan/kWh at 180 / 350 kWh per month.
    static let tiered = try! Tariff(
        name: "household", currency: .cny, unitKind: .wattHours, period: .monthly,
        tiers: [.init(upToUnits: 180_000, price: Price(microMinorPerUnit: 52830)),
                .init(upToUnits: 350_000, price: Price(microMinorPerUnit: 57830)),
                .init(upToUnits: nil, price: Price(microMinorPerUnit: 82830))])
    /// 3 fen per litre: a unit costs more than a fen, so sales leave remainders.
    static let water = try! Tariff.flat(name: "water", currency: .cny, unitKind: .litres,
                                        price: Price(microMinorPerUnit: 3_000_000), fixedChargePerPeriodMinor: 500)
}

/// A temporary folder removed when the test process ends is not needed: each test uses a fresh UUID path.
func temporaryPath(_ name: String = "billing.sqlite") -> String {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("metergw-store-\(UUID().uuidString)")
    try! FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    return dir.appendingPathComponent(name).path
}

/// A store with the flat tariff, meter 20251125 and account "Li Wei" (id 1) with that meter.
func makeStore(file: Bool = false, tariff: Tariff = Tariffs.flat, kind: DeviceKind = .electricity,
               lastApplied: UInt32 = 0) throws -> BillingDatabase {
    let store = file ? try BillingDatabase.open(path: temporaryPath()) : try BillingDatabase.inMemory()
    _ = try store.addTariff(tariff, validFrom: 0, by: desk)
    _ = try store.openAccount(name: "Li Wei", by: desk)
    _ = try store.addMeter(serial: 20_251_125, kind: kind, tariff: tariff.name, lastApplied: lastApplied, by: desk)
    _ = try store.assignMeter("20251125", to: "1", by: desk)
    return store
}

extension BillingDatabase {
    func count(_ sql: String) throws -> Int { try self.writer.read { try Int.fetchOne($0, sql: sql)! } }
}
