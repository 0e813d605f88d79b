import BillingStore
import GRDB
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
}
