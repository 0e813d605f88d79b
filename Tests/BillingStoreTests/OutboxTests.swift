import BillingStore
import GRDB
import Prepaid
import Testing

/// The gateway's side of store-and-forward sync: entries written with the rows, batches, acknowledgement, pruning.
@Suite struct OutboxTests {
    @Test func everyStoredReadingAndAlarmGetsOneEntryInItsTransaction() throws {
        let store = try makeStore()
        let meter = try store.meter("20251125").id!
        try store.insertReadings([
            ReadingInput(meterID: meter, time: 1000, register: 10, credit: 500),
            ReadingInput(meterID: meter, time: 1900, register: 12),
        ], by: desk)
        // Re-polling the same reading stores nothing new and adds no entry.
        try store.insertReadings([ReadingInput(meterID: meter, time: 1000, register: 10, credit: 500)], by: desk)
        try store.recordAlarms(AlarmInput(meterID: meter, time: 1900, alarms: 1), by: desk)
        // The same alarm bits again are no change: no row, no entry.
        try store.recordAlarms(AlarmInput(meterID: meter, time: 2800, alarms: 1), by: desk)
        #expect(try store.count("SELECT count(*) FROM outbox") == 3)

        let batch = try #require(try store.outboxBatch(after: 0, limit: 100))
        #expect(batch.fromSequence == 1 && batch.toSequence == 3)
        #expect(batch.readings == [
            .init(meterSerial: 20_251_125, time: 1000, register: 10, credit: 500, source: "poll"),
            .init(meterSerial: 20_251_125, time: 1900, register: 12, credit: nil, source: "poll"),
        ])
        #expect(batch.alarms == [.init(meterSerial: 20_251_125, time: 1900, alarms: 1, source: "poll")])
        let state = try store.syncState()
        #expect(state.ackedSequence == 0 && state.backlog == 3 && state.oldestPendingTime == 1000)
    }

    @Test func batchesAreBoundedAndAcknowledgementPrunesWithoutGoingBack() throws {
        let store = try makeStore()
        let meter = try store.meter("20251125").id!
        let readings = (0..<10).map { ReadingInput(meterID: meter, time: Int64($0) * 900, register: Int64($0)) }
        try store.insertReadings(readings, by: desk)
        let first = try #require(try store.outboxBatch(after: 0, limit: 4))
        #expect(first.fromSequence == 1 && first.toSequence == 4 && first.readings.map(\.register) == [0, 1, 2, 3])
        try store.acknowledgeOutbox(upTo: 4, now: 50)
        #expect(try store.count("SELECT count(*) FROM outbox") == 6)
        let state = try store.syncState()
        #expect(state.ackedSequence == 4 && state.backlog == 6 && state.lastSentAt == 50)
        // A late, lower acknowledgement (an old answer) does not move it back.
        try store.acknowledgeOutbox(upTo: 2, now: 60)
        #expect(try store.syncState().ackedSequence == 4)
        // The centre may be ahead of this store (it committed, then the gateway crashed before recording): the
        // next batch starts where the centre says.
        let next = try #require(try store.outboxBatch(after: 6, limit: 100))
        #expect(next.fromSequence == 7 && next.toSequence == 10 && next.readings.map(\.register) == [6, 7, 8, 9])
        try store.acknowledgeOutbox(upTo: 10, now: 70)
        #expect(try store.outboxBatch(after: 10, limit: 100) == nil)
        #expect(try store.syncState().backlog == 0)
        // Numbers are never reused after pruning.
        try store.insertReadings([ReadingInput(meterID: meter, time: 99_000, register: 99)], by: desk)
        #expect(try store.outboxBatch(after: 10, limit: 100)?.toSequence == 11)
    }

    @Test func theAcknowledgementNeverGoesBackEvenByHand() throws {
        let store = try makeStore()
        try store.acknowledgeOutbox(upTo: 5, now: 1)
        #expect(throws: (any Error).self) {
            try store.writer.write { try $0.execute(sql: "UPDATE syncState SET ackedSequence = 1") }
        }
    }

    @Test func eventsRelayChangesAndPurchaseStatesGetEntriesWithTheirRows() throws {
        let store = try makeStore()
        let meter = try store.meter("20251125").id!
        try store.insertEvents([EventInput(meterID: meter, index: 7, time: 1000, code: 3, value: 42)], by: desk)
        // The same event again (a re-read of the meter's log) is no new row and no new entry.
        try store.insertEvents([EventInput(meterID: meter, index: 7, time: 1000, code: 3, value: 42)], by: desk)
        _ = try store.recordPoll([MeterObservation(meterID: meter, time: 1100, register: 5, credit: 0, alarms: 0,
                                                   relay: "open", relayReason: 1, lastAppliedSequence: 0)], by: desk)
        let sale = try store.sell(account: "1", amount: .fen(10_000), requestID: "r-1", mode: .remote, by: desk)
        _ = try store.markApplied(meter: "20251125", upTo: UInt32(sale.purchase.sequence), source: "remote", by: desk)

        let batch = try #require(try store.outboxBatch(after: 0, limit: 100))
        #expect(batch.events == [.init(meterSerial: 20_251_125, index: 7, time: 1000, code: 3, value: 42)])
        #expect(batch.relayChanges == [.init(meterSerial: 20_251_125, time: 1100, relay: "open", reason: 1,
                                             source: "poll")])
        #expect(batch.readings.map(\.time) == [1100])
        // The purchase once per state it passed through, each with the state it had then.
        #expect(batch.purchases.map(\.state) == ["queued", "applied"])
        #expect(batch.purchases.allSatisfy { $0.purchase.id == sale.purchase.id && $0.centralOrderID == nil })
        #expect(batch.toSequence == 5 && batch.rowCount == 5 && batch.backlogAfter == 0)
    }

    @Test func aCentralOrderIsQueuedOnceAndAnUnknownMeterIsRefusedUpstream() throws {
        let store = try makeStore()
        let order = CentralOrderInput(orderID: 31, requestID: "centre-1", meterSerial: 20_251_125, units: 5_000,
                                      unitKind: 1, amountMinor: 2_500, currency: "CNY", soldAt: 10)
        guard case .queued(let purchase) = try store.receive(order, by: desk) else {
            Issue.record("the order was not queued")
            return
        }
        #expect(purchase.state == .queued && purchase.mode == .remote && purchase.units == 5_000
                && purchase.sequence == 1 && purchase.paidMinor == 2_500)
        // Fetched again after a lost answer: nothing new.
        #expect(try store.receive(order, by: desk) == .alreadyReceived)
        #expect(try store.queuedPurchases().count == 1)
        // Paid at the centre: the local account's balance does not move, and the store's invariants hold.
        #expect(try store.account("1").account.balanceMinor == 0)
        #expect(try store.check().isEmpty)
        // A later desk sale takes the next sequence of the meter.
        let sale = try store.sell(account: "1", amount: .fen(10_000), requestID: "r-2", mode: .remote, by: desk)
        #expect(sale.purchase.sequence == 2)

        var moved = order
        moved.orderID = 32
        moved.meterSerial = 99
        #expect(try store.receive(moved, by: desk) == .refused("unknown-meter"))
        let batch = try #require(try store.outboxBatch(after: 0, limit: 100))
        #expect(batch.purchases.first?.centralOrderID == 31)
        #expect(batch.orderRefusals == [.init(orderID: 32, meterSerial: 99, refusal: "unknown-meter", time: desk.now)])

        // No tariff in force when the order arrives (the gateway's clock is behind the tariff's start): refused,
        // never left to fail every round and block the orders behind it.
        let later = try Tariff.flat(name: "later", currency: .cny, unitKind: .wattHours,
                                    price: Price(majorPerThousandUnits: "0.5000", currency: .cny)!)
        let tomorrow = Actor("desk", now: desk.now + 86_400)
        _ = try store.addTariff(later, validFrom: tomorrow.now, by: tomorrow)
        _ = try store.addMeter(serial: 4_242, kind: .electricity, tariff: "later", by: tomorrow)
        let account = try store.openAccount(name: "Zhao Lei", by: tomorrow)
        _ = try store.assignMeter("4242", to: String(account.account.id!), by: tomorrow)
        var early = order
        early.orderID = 33
        early.meterSerial = 4_242
        #expect(try store.receive(early, by: desk) == .refused("no-tariff"))
    }

    @Test func theMigrationKeepsEntriesAndNeverReusesANumber() throws {
        let path = temporaryPath()
        let queue = try DatabaseQueue(path: path)
        try BillingDatabase.migrator.migrate(queue, upTo: "v4-outbox")
        try queue.write { db in
            for t in 1...5 { try db.execute(sql: "INSERT INTO outbox (kind, meterId, time) VALUES ('reading', 1, ?)",
                                            arguments: [t]) }
            // The centre acknowledged all five; they were pruned.
            try db.execute(sql: "UPDATE syncState SET ackedSequence = 5")
            try db.execute(sql: "DELETE FROM outbox")
            try db.execute(sql: "INSERT INTO outbox (kind, meterId, time) VALUES ('alarm', 1, 6)")
        }
        try queue.close()
        let store = try BillingDatabase.open(path: path)
        #expect(try store.count("SELECT sequence FROM outbox") == 6)
        _ = try store.addTariff(Tariffs.flat, validFrom: 0, by: desk)
        _ = try store.addMeter(serial: 77, kind: .electricity, tariff: "flat", by: desk)
        try store.insertReadings([ReadingInput(meterID: try store.meter("77").id!, time: 9, register: 1)], by: desk)
        #expect(try store.count("SELECT max(sequence) FROM outbox") == 7)
        try store.acknowledgeOutbox(upTo: 7, now: 1)
        try store.insertEvents([EventInput(meterID: try store.meter("77").id!, index: 0, time: 9, code: 1, value: 0)],
                               by: desk)
        #expect(try store.count("SELECT max(sequence) FROM outbox") == 8)
    }
}
