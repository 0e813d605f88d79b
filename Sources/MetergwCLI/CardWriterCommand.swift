import ArgumentParser
import Foundation
import MeterBus
import MeterProtocol

/// `metergw card status|read|write|erase`: a card writer at the desk or in the technician's bag.
struct CardCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "card",
        abstract: "Talk to a card writer: status, read (decoded), write, erase; upload and replace customer cards.",
        subcommands: [Status.self, ReadCard.self, WriteCard.self, Erase.self, CardUploadCommand.self,
                      CardReplaceCommand.self])

    /// The writer's options: its port and bus address.
    struct WriterOptions: ParsableArguments {
        @OptionGroup var bus: BusOptions

        @Option(help: "The card writer's bus address.")
        var address: UInt8 = 100

        var target: Target { .address(self.address) }

        func withSession<T>(_ body: (BusSession) throws(BusError) -> T) throws -> T {
            let session = try self.bus.session()
            defer { session.close() }
            return try BusFailure.map { () throws(BusError) in try body(session) }
        }
    }

    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The writer's state and the card in its slot.")

        @OptionGroup var writer: WriterOptions

        func run() throws {
            let (status, presence) = try self.writer.withSession { s throws(BusError) in
                (try s.transaction(WriterStatusRequest(), to: self.writer.target),
                 try s.transaction(CardPresenceRequest(), to: self.writer.target))
            }
            if self.writer.bus.json {
                Output.line(Field.jsonObject(status.fields + presence.fields).rendered())
            } else {
                for line in FrameFormatter.fieldLines(status.fields + presence.fields, depth: 1) { Output.line(line) }
            }
        }
    }

    struct ReadCard: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "read", abstract: "Read the card in the writer and show it decoded (docs/CARD.md).")

        @OptionGroup var writer: WriterOptions

        @Option(help: "Also save the image to this file.")
        var out: String?

        @Option(help: "The key file, to check the card's MACs.")
        var keys: String?

        func run() throws {
            let image = try self.writer.withSession { s throws(BusError) in
                try CardCommand.readImage(s, self.writer.target)
            }.get()
            if let out { try Data(image.data).write(to: URL(fileURLWithPath: out)) }
            try CardReport(bytes: image.data, keys: try self.keys.map { try Keys.load($0) })
                .print(json: self.writer.bus.json)
        }
    }

    struct WriteCard: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "write",
            abstract: "Write a card image file onto the card in the writer, then read it back and compare.")

        @OptionGroup var writer: WriterOptions

        @Option(help: "The card image (binary, the card's size).")
        var file: String

        func run() throws {
            let image = try InputFile.read(self.file)
            let verified = try self.writer.withSession { s throws(BusError) -> Bool in
                let presence = try s.transaction(CardPresenceRequest(), to: self.writer.target)
                guard presence.isPresent, Int(presence.capacity) == image.count else { return false }
                // Written in 256-byte pieces, all naming this insertion: a swapped card gets CARD_CHANGED.
                for offset in stride(from: 0, to: image.count, by: 256) {
                    let piece = Array(image[offset..<min(offset + 256, image.count)])
                    _ = try s.transaction(WriteCardRequest(insertion: presence.insertion, offset: UInt16(offset),
                                                           data: piece), to: self.writer.target)
                }
                guard case .image(let insertion, let back) = try CardCommand.readImage(s, self.writer.target) else {
                    return false
                }
                return insertion == presence.insertion && back == image
            }
            guard verified else {
                throw CLIError(.dataError, "the card was not written as asked: no card, a card of another size, or "
                               + "the read-back differs; check the card and write it again")
            }
            if self.writer.bus.json {
                Output.line(JSONValue.object([("written", .int(Int64(image.count))), ("verified", .bool(true))]).rendered())
            } else {
                Output.line("wrote \(image.count) B and read them back: identical")
            }
        }
    }

    struct Erase: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Erase the card in the writer (every byte FF).")

        @OptionGroup var writer: WriterOptions

        func run() throws {
            let erased = try self.writer.withSession { s throws(BusError) in
                let presence = try s.transaction(CardPresenceRequest(), to: self.writer.target)
                return try s.transaction(EraseCardRequest(insertion: presence.insertion), to: self.writer.target)
            }
            Output.line(self.writer.bus.json ? Field.jsonObject(erased.fields).rendered()
                        : "erased the card (insertion \(erased.insertion))")
        }
    }

    enum CardRead {
        case image(insertion: UInt32, data: [UInt8])
        case noCard
        /// Another card was put in while it was being read.
        case changed

        func get() throws -> (insertion: UInt32, data: [UInt8]) {
            switch self {
            case .image(let insertion, let data): return (insertion, data)
            case .noCard: throw CLIError(.notFound, "no card in the writer: insert the card and try again")
            case .changed: throw CLIError(.dataError, "the card was swapped while it was read: leave one card in the "
                                          + "writer and try again")
            }
        }
    }

    /// The whole card in the slot, in 256-byte reads of one insertion.
    static func readImage(_ s: BusSession, _ target: Target) throws(BusError) -> CardRead {
        let presence = try s.transaction(CardPresenceRequest(), to: target)
        guard presence.isPresent else { return .noCard }
        var data: [UInt8] = []
        while data.count < Int(presence.capacity) {
            let length = UInt16(min(256, Int(presence.capacity) - data.count))
            let piece = try s.transaction(ReadCardRequest(offset: UInt16(data.count), length: length), to: target)
            guard piece.insertion == presence.insertion else { return .changed }
            data += piece.data
        }
        return .image(insertion: presence.insertion, data: data)
    }
}
