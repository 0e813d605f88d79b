import Foundation
import MeterEmulator
import MeterProtocol
import MetergwTestSupport
import Prepaid
import SerialPort
import Testing

/// A card sale whose writer fails: unplugged in the middle of the sale, or a card that does not keep what was
/// written. The purchase stays sold and not written, the store checks clean, and the same request completes it.
@Suite(.serialized) struct CardWriterFaultTests {
    typealias Desk = DeskFlowTests.Desk

    /// The seed for which the emulator's one `vanish` rule at `ppm` fires on the writer's `answer`-th answer and
    /// on none other of the first `answers`: the emulator rolls each rule of a device once per answer of that
    /// device, with the emulator's own dice (docs/EMULATOR.md "Faults"). The test checks the vanish came where it
    /// was meant to, so a change in how faults draw fails it loudly.
    static func seed(vanishingAt answer: Int, of answers: Int, ppm: UInt32) -> UInt64? {
        let wanted = (1...answers).map { $0 == answer }
        return (1...200_000 as ClosedRange<UInt64>).first { seed in
            var dice = FaultDice(seed: seed)
            return (1...answers).map { _ in dice.roll(ppm) } == wanted
        }
    }

    /// The writer answers a sale on a blank card five times: card presence and read (the intake), WRITE_CARD,
    /// presence and read (the read-back). It vanishes right after acknowledging the write, before the read-back,
    /// and comes back at the same link 300 ms later; the retry's five answers go through.
    @Test func aWriterThatVanishesMidWriteLeavesTheSaleToItsRetry() throws {
        let seed = try #require(Self.seed(vanishingAt: 3, of: 10, ppm: 250_000))
        let desk = try Desk(emulatorArguments: ["--faults", "meter100:vanish=0.25@300ms", "--seed", String(seed)])
        try desk.setUp()
        try desk.insertBlankCard()

        let failed = try desk.sellByCard("10.00", "gone-1")
        #expect(failed.status == 74, "\(failed.status): \(failed.stderr)")
        #expect(failed.stderr.contains("is sold but NOT marked written"), "\(failed.stderr)")
        #expect(failed.stderr.contains("--request-id gone-1"))
        let status = try desk.emulate(["status"])
        #expect(status.contains(#""vanished":1"#), "\(status)")
        let sold = try desk.purchases()
        #expect(sold.count == 1 && sold.first?["state"] as? String == "created", "\(sold)")
        try desk.expectCheckClean("after the writer vanished")
        // It vanished after the write: the card carries the block, which nobody has read back yet.
        #expect(try desk.cardInWriter().credit == CardImage.CreditBlock(firstSequence: 1, lastSequence: 1,
                                                                        units: 15_000))

        // The adapter comes back: the emulator removed the link before closing the old pseudo-terminal (so it was
        // gone when the sale failed), and makes a new one behind the same link. (Its /dev/pts number may be the
        // old one's again.) Then the same command completes the sale.
        var back = FileManager.default.fileExists(atPath: desk.bus)
        for _ in 0..<400 where !back {
            usleep(25_000)
            back = FileManager.default.fileExists(atPath: desk.bus)
        }
        #expect(back, "the link did not come back")
        let retry = try desk.sellByCard("10.00", "gone-1")
        #expect(retry.status == 0, "\(retry.stderr)")
        let sale = try DeskFlowTests.object(retry)
        #expect(sale["id"] as? Int == 1 && sale["state"] as? String == "written")
        #expect(try desk.purchases().count == 1)
        #expect(try desk.cardInWriter().credit == CardImage.CreditBlock(firstSequence: 1, lastSequence: 1,
                                                                        units: 15_000))
        #expect(try desk.emulate(["status"]).contains(#""vanished":1"#))
        try desk.expectCheckClean("after the retry")
    }

    /// A card writer on a pseudo-terminal whose card keeps one byte of every write wrong, as a worn card does: a
    /// peer of our own, because the emulator's cards keep what they are given.
    final class WornCardWriter: @unchecked Sendable {
        let pair: PseudoTerminalPair
        private let lock = NSLock()
        private var stopped = false
        private var card = [UInt8](repeating: 0xFF, count: 256)
        private var thread: PeerThread<Int>?

        init(link: String) throws {
            self.pair = try PseudoTerminalPair(linkPath: link)
            self.thread = PeerThread { [self] in try self.serve() }
        }

        var isStopped: Bool { self.lock.withLock { self.stopped } }

        /// Stops serving and returns how many frames it answered.
        func stop() throws -> Int {
            self.lock.withLock { self.stopped = true }
            return try self.thread!.value()
        }

        private func serve() throws -> Int {
            var decoder = FrameDecoder()
            var answered = 0
            while !self.isStopped {
                let bytes = Result { () throws(SerialError) in
                    try self.pair.read(upTo: 512, deadline: .now + .milliseconds(50))
                }
                guard case .success(let chunk) = bytes else { continue }
                decoder.append(chunk)
                while let item = decoder.next() {
                    guard case .frame(let request, _) = item, request.address == 100, !request.isResponse,
                          let reply = self.answer(request)
                    else { continue }
                    try self.pair.write(reply.encoded(), deadline: .now + .seconds(5))
                    answered += 1
                }
            }
            return answered
        }

        private func answer(_ request: Frame) -> Frame? {
            func reply<M: NativeMessage>(_ message: M) -> Frame {
                Frame(response: message, to: request, address: 100, serial: 4_200_000_100)
            }
            switch request.decodeMessage() {
            case .message(is CardPresenceRequest):
                return reply(CardPresence(media: .memory256, capacity: 256, insertion: 1))
            case .message(let read as ReadCardRequest):
                let start = Int(read.offset)
                return reply(CardData(insertion: 1, offset: read.offset,
                                      data: Array(self.card[start..<(start + Int(read.length))])))
            case .message(let write as WriteCardRequest):
                let start = Int(write.offset)
                self.card.replaceSubrange(start..<(start + write.data.count), with: write.data)
                self.card[start + 40] ^= 0x10  // inside the issuer's area, which the desk compares
                return reply(CardWritten(insertion: 1, offset: write.offset, length: UInt16(write.data.count)))
            default:
                return Frame(nak: Nak(.unknownCommand), to: request, address: 100, serial: 4_200_000_100)
            }
        }
    }

    @Test func aCardThatReadsBackDifferentIsRefusedAndNotMarkedWritten() throws {
        let desk = try Desk()
        try desk.setUp()
        let link = desk.file("worn-writer")
        let writer = try WornCardWriter(link: link)
        let sale = try desk.run(["sell", "--account", "1", "--amount", "10.00", "--writer", link, "--keys", desk.keys,
                                 "--request-id", "worn-1", "--json"])
        #expect(try writer.stop() == 5, "intake (presence, read), write, read-back (presence, read)")
        #expect(sale.status == 65, "\(sale.status): \(sale.stderr)")
        #expect(sale.stderr.contains("reads back different from what was written"), "\(sale.stderr)")
        #expect(sale.stderr.contains("is sold but NOT marked written"))
        let sold = try desk.purchases()
        #expect(sold.count == 1 && sold.first?["state"] as? String == "created", "\(sold)")
        try desk.expectCheckClean("after a worn card")
    }
}
