import MeterProtocol
import Testing
@testable import MeterEmulator

@Suite struct FaultPlanTests {
    @Test func parsesKindsRatesAddressesAndParameters() throws {
        let plan = try FaultPlan(parsing: "corrupt=0.05, meter3:mute=0.01@2s,echo,burst@16ms,noise=0.5@8,vanish=0.000001@0")
        #expect(plan.rules == [
            .init(kind: .corrupt, address: nil, ratePPM: 50_000, parameter: nil),
            .init(kind: .mute, address: 3, ratePPM: 10_000, parameter: 2000),
            .init(kind: .echo, address: nil, ratePPM: 1_000_000, parameter: nil),
            .init(kind: .burst, address: nil, ratePPM: 1_000_000, parameter: 16),
            .init(kind: .noise, address: nil, ratePPM: 500_000, parameter: 8),
            .init(kind: .vanish, address: nil, ratePPM: 1, parameter: 0),
        ])
        #expect(plan.rules(for: 3).count == 6)
        #expect(plan.rules(for: 4).count == 5)
    }

    @Test func badSpecsSayWhatIsExpected() {
        for spec in ["explode", "corrupt=2", "corrupt=0.1234567", "meter0:drop", "meter300:drop", "delay@soon"] {
            #expect(throws: FaultPlan.ParseError.self, "\(spec)") { try FaultPlan(parsing: spec) }
        }
        do {
            _ = try FaultPlan(parsing: "explode")
        } catch {
            #expect(error.description.contains("unknown fault kind \"explode\""))
            #expect(error.description.contains("corrupt=0.05"))
        }
    }

    static let request = Frame(request: ReadStatusRequest(), address: 5, serial: 7, sequence: 9)
    static let reply = Frame(response: LastSequence(lastAppliedSequence: 1, lastCommandCounter: 2, keyRevision: 3),
                             to: request, address: 5, serial: 7)

    /// The same seed gives the same faults; another seed gives others.
    @Test func sameSeedSameFaults() throws {
        let plan = try FaultPlan(parsing: "corrupt=0.3,drop=0.2,noise=0.2,truncate=0.1,split=0.1,echo=0.1")
        func run(_ seed: UInt64) -> [ShapedReply?] {
            var injector = FaultInjector(plan: plan, seed: seed)
            return (0..<300).map { i in
                injector.shape(Self.reply, request: Self.request.encoded(), from: 5, nowMs: Int64(i) * 100)
            }
        }
        #expect(run(42) == run(42))
        #expect(run(42) != run(43))
        let shaped = run(42)
        #expect(shaped.contains { $0 == nil })
        #expect(shaped.contains { $0?.applied.contains(.corrupt) == true })
        #expect(shaped.contains { $0?.applied == [] })
    }

    @Test func eachKindDoesWhatItSays() throws {
        let clean = Self.reply.encoded()
        func shape(_ spec: String, nowMs: Int64 = 0, injector: inout FaultInjector) -> ShapedReply? {
            injector.shape(Self.reply, request: Self.request.encoded(), from: 5, nowMs: nowMs)
        }
        func once(_ spec: String) throws -> ShapedReply? {
            var injector = FaultInjector(plan: try FaultPlan(parsing: spec), seed: 1)
            return shape(spec, injector: &injector)
        }
        #expect(try once("drop") == nil)
        let corrupted = try #require(try once("corrupt"))
        #expect(corrupted.bytes.count == clean.count && corrupted.bytes != clean)
        #expect(zip(corrupted.bytes, clean).map { ($0 ^ $1).nonzeroBitCount }.reduce(0, +) == 1)
        #expect(FrameDecoder.decodeAll(corrupted.bytes).allSatisfy { if case .frame = $0 { false } else { true } })
        let truncated = try #require(try once("truncate"))
        #expect(truncated.bytes.count < clean.count && clean.starts(with: truncated.bytes))
        let noisy = try #require(try once("noise@6"))
        #expect(noisy.bytes.count == clean.count + 6 && noisy.bytes.suffix(clean.count) == clean[...])
        let echoed = try #require(try once("echo"))
        #expect(echoed.bytes == Self.request.encoded() + clean)
        let delayed = try #require(try once("delay@700ms"))
        #expect(delayed.segments.first?.pauseMs == 700 && delayed.bytes == clean)
        let split = try #require(try once("split@40ms"))
        #expect(split.segments.count == 2 && split.segments[1].pauseMs == 40 && split.bytes == clean)
        let wrong = try #require(try once("wrong-address"))
        guard case .frame(let frame, _) = FrameDecoder.decodeAll(wrong.bytes).first else {
            Issue.record("wrong-address reply does not decode")
            return
        }
        #expect(frame.address == 6 && frame.sequence == Self.reply.sequence)
        #expect(try once("burst@16ms")?.burstMs == 16)
        #expect(try once("vanish@3s")?.vanishAfterMs == 3000)

        var muting = FaultInjector(plan: try FaultPlan(parsing: "mute=1@2s"), seed: 1)
        #expect(shape("", nowMs: 0, injector: &muting) == nil)
        #expect(muting.isMuted(5, nowMs: 1999))
        #expect(!muting.isMuted(5, nowMs: 2000))
        #expect(!muting.isMuted(6, nowMs: 10))
    }

    @Test func collisionsGarbleOverlappingFrames() {
        let a = Frame(response: DiscoverResponse(kind: .electricity, busAddress: 1), to: Self.request, address: 1,
                      serial: 0x1000_0001).encoded()
        let b = Frame(response: DiscoverResponse(kind: .water, busAddress: 2), to: Self.request, address: 2,
                      serial: 0x1000_0002).encoded()
        let garbled = collide([a, b])
        #expect(garbled.count == a.count)
        #expect(!FrameDecoder.decodeAll(garbled).contains { if case .frame = $0 { true } else { false } })
        #expect(collide([a]) == a)
    }
}

@Suite struct CardWriterTests {
    let writer = EmulatedCardWriter(busAddress: 100, serial: 90_000_001)

    func ask<M: NativeRequest>(_ m: M, seq: UInt8 = 1) -> Frame? {
        self.writer.handle(Frame(request: m, address: 100, sequence: seq), now: 0)
    }

    @Test func readWriteEraseWithInsertionGuard() throws {
        #expect(ask(CardPresenceRequest())?.decodeMessage()
                == .message(CardPresence(media: .none, capacity: 0, insertion: 0)))
        #expect(ask(ReadCardRequest(offset: 0, length: 4))?.decodeMessage() == .nak(Nak(.noCard)))
        self.writer.insert([UInt8](repeating: 0, count: 256))
        #expect(ask(CardPresenceRequest())?.decodeMessage()
                == .message(CardPresence(media: .memory256, capacity: 256, insertion: 1)))
        #expect(ask(WriteCardRequest(insertion: 1, offset: 10, data: [1, 2, 3]))?.decodeMessage()
                == .message(CardWritten(insertion: 1, offset: 10, length: 3)))
        #expect(ask(ReadCardRequest(offset: 9, length: 5))?.decodeMessage()
                == .message(CardData(insertion: 1, offset: 9, data: [0, 1, 2, 3, 0])))
        // The customer swaps cards: a write meant for insertion 1 must not land on the new card.
        self.writer.insert([UInt8](repeating: 0, count: 256))
        #expect(ask(WriteCardRequest(insertion: 1, offset: 0, data: [9]))?.decodeMessage()
                == .nak(Nak(.cardChanged, detail: 2)))
        #expect(ask(ReadCardRequest(offset: 250, length: 10))?.decodeMessage() == .nak(Nak(.valueOutOfRange)))
        #expect(ask(EraseCardRequest(insertion: 2))?.decodeMessage() == .message(CardErased(insertion: 2)))
        #expect(self.writer.state.card == [UInt8](repeating: 0xFF, count: 256))
        #expect(ask(WriterStatusRequest())?.decodeMessage()
                == .message(WriterStatus(state: .ready, lastError: NakCode.valueOutOfRange.rawValue, cardsWritten: 1,
                                         cardPresent: true)))
    }

    @Test func malformedAndForeignRequestsGetNaks() {
        var bad = Frame(request: ReadCardRequest(offset: 0, length: 4), address: 100, sequence: 1)
        bad.payload.append(0)
        #expect(self.writer.handle(bad, now: 0)?.decodeMessage() == .nak(Nak(.malformedPayload)))
        #expect(ask(ReadStatusRequest())?.decodeMessage() == .nak(Nak(.unknownCommand)))
        #expect(self.writer.handle(Frame(address: 100, sequence: 1, command: 0x3F), now: 0)?.decodeMessage()
                == .nak(Nak(.unknownCommand)))
        // Broadcasts are never answered.
        #expect(self.writer.handle(Frame(request: WriterStatusRequest(), address: 0, sequence: 1), now: 0) == nil)
    }
}
