import BillingStore
import Foundation
import GRDB
import Testing

/// What the gateway writes: one transaction per poll cycle, readings idempotent, alarm and relay episodes once,
/// purchases confirmed by the meter's last applied sequence, and a sequence this store never sold reported.
@Suite struct GatewayStoreTests {
    static func observation(_ time: Int64, register: Int64, alarms: Int64 = 0, relay: String = "closed",
                            reason: Int64 = 0, applied: Int64 = 0) -> MeterObservation {
        MeterObservation(meterID: 1, time: time, register: register, credit: 10_000 - register, alarms: alarms,
                         relay: relay, relayReason: reason, lastAppliedSequence: applied)
    }

    @Test func alarmAndRelayEpisodesAreRecordedOnceHoweverOftenPolled() throws {
        let store = try makeStore()
        var polls: [MeterObservation] = []
        for t in 0..<10 {  // normal, then low credit and cut off for five polls, then restored
            let low = (3..<8).contains(t)
            polls.append(Self.observation(now + Int64(t) * 60, register: Int64(t) * 10, alarms: low ? 3 : 0,
                                          relay: low ? "open" : "closed", reason: low ? 1 : 0))
        }
        for p in polls { _ = try store.recordPoll([p], by: desk) }
        #expect(try store.alarmChanges(meterID: 1).map(\.alarms) == [3, 0])
        #expect(try store.relayChanges(meterID: 1).map(\.relay) == ["open", "closed"])
        #expect(try store.readings(meterID: 1).count == 10)
        // The same cycle written again (a crash between commit and the poller's bookkeeping) adds nothing.
        let again = try store.recordPoll(polls, by: desk)
        #expect(again.readingsInserted == 0 && again.alarmChanges.isEmpty && again.relayChanges.isEmpty)
        #expect(try store.readings(meterID: 1).count == 10)
        #expect(try store.check(full: true).isEmpty)
    }

    @Test func theMetersLastAppliedSequenceConfirmsPurchasesAndAForeignOneIsOnlyReported() throws {
        let store = try makeStore()
        let sale = try store.sell(account: "1", amount: try Amount.parse("10.00", currency: .cny), requestID: "g1",
                                  mode: .remote, by: desk)
        #expect(try store.queuedCounts() == [1: 1])
        let confirmed = try store.recordPoll([Self.observation(now, register: 5, applied: 1)], by: desk)
        #expect(confirmed.confirmed.map(\.id) == [sale.purchase.id])
        #expect(try store.purchase(sale.purchase.id!).appliedSource == "reading")
        #expect(try store.queuedCounts().isEmpty)
        // Sequence 7 was never sold here: the readings are kept, the sequence is reported, nothing is confirmed.
        let foreign = try store.recordPoll([Self.observation(now + 60, register: 6, applied: 7)], by: desk)
        #expect(foreign.readingsInserted == 1 && foreign.foreignSequences == [1: 7])
        #expect(try store.meter("20251125").lastAppliedSequence == 1)
        #expect(try store.check().isEmpty)
    }
}
