import ArgumentParser
import MeterProtocol
#if canImport(Glibc)
import Glibc
#endif

/// `metergw decode`: turns a byte stream into frames a person (or a script) can read.
struct Decode: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Decode native protocol frames from hex, a capture file or standard input.",
        discussion: """
            Prints every frame with its offset, direction, command, address and fields with units, and every run \
            of bytes that is not a valid frame with its offset and why. Reads standard input live with `-`, so \
            `socat -u /dev/ttyUSB0,raw - | metergw decode -` shows a bus as it talks.
            Exit status: 0 when every byte belonged to a valid frame with a valid payload; 65 when there was \
            garbage, a truncated frame or a payload that does not match its command; 66 when the file is missing.
            With --card, decodes one 256-byte card image instead (docs/CARD.md): every field with units, and with \
            --keys whether each MAC verifies. Exit status 65 when it is not a card image or a MAC fails.
            """)

    @Argument(help: "Bytes in hex (spaces, ':' or '0x' allowed), e.g. 7E 01 00 05 ...")
    var hex: [String] = []

    @Option(name: .shortAndLong, help: "Read a capture: a file path, or - for standard input.")
    var file: String?

    @Option(help: "How to read --file: auto (hex text if it parses as hex, else binary), binary or hex.")
    var inputFormat: InputFormat = .auto

    @Flag(help: "Print one JSON object per frame or garbage run, one per line (with --card: one object).")
    var json = false

    @Option(help: "Decode a trace recorded by `metergw sniff --record`, with each frame's time.")
    var trace: String?

    @Flag(help: "Decode a 256-byte card image (docs/CARD.md) instead of frames.")
    var card = false

    @Option(help: "With --card: the issuer's key file, to check the card's MACs.")
    var keys: String?

    enum InputFormat: String, ExpressibleByArgument, CaseIterable {
        case auto, binary, hex
    }

    func validate() throws {
        if self.hex.isEmpty && self.file == nil && self.trace == nil {
            throw ValidationError("give bytes in hex, or --file PATH, or --file - for standard input, or --trace PATH")
        }
        if self.trace != nil && (self.file != nil || !self.hex.isEmpty || self.card) {
            throw ValidationError("--trace decodes a recorded trace on its own: leave out hex, --file and --card")
        }
        if !self.hex.isEmpty && self.file != nil {
            throw ValidationError("give either hex bytes or --file, not both")
        }
        if !self.hex.isEmpty && parseHex(self.hex.joined(separator: " ")) == nil {
            throw ValidationError("not hex: \(self.hex.joined(separator: " ")) (expected pairs of hex digits)")
        }
        if self.keys != nil && !self.card {
            throw ValidationError("--keys checks card MACs: use it with --card")
        }
    }

    func run() throws {
        if self.card {
            let bytes: [UInt8]
            if let file = self.file {
                bytes = try self.bytes(of: InputFile.read(file == "-" ? "/dev/stdin" : file), name: file)
            } else {
                bytes = parseHex(self.hex.joined(separator: " ")) ?? []
            }
            let keys = try self.keys.map { try Keys.load($0) }
            try CardReport(bytes: bytes, keys: keys).print(json: self.json)
            return
        }
        var report = StreamReport(json: self.json)
        if let trace = self.trace {
            report.replay(try BusTrace.read(trace))
            report.finish(summary: true)
            if !report.clean { throw ExitStatus.dataError.exitCode }
            return
        }
        if let file = self.file {
            if file == "-" && self.inputFormat != .hex {
                try report.decodeLive(fd: 0)
            } else {
                let data = try InputFile.read(file == "-" ? "/dev/stdin" : file)
                report.decodeAll(try self.bytes(of: data, name: file))
            }
        } else {
            report.decodeAll(parseHex(self.hex.joined(separator: " ")) ?? [])
        }
        report.finish(summary: true)
        if !report.clean { throw ExitStatus.dataError.exitCode }
    }

    private func bytes(of data: [UInt8], name: String) throws -> [UInt8] {
        switch self.inputFormat {
        case .binary: return data
        case .hex:
            guard let bytes = parseHex(String(decoding: data, as: UTF8.self)) else {
                throw CLIError(.dataError, "\(name) is not hex text: expected pairs of hex digits")
            }
            return bytes
        case .auto:
            if !data.isEmpty, let bytes = parseHex(String(decoding: data, as: UTF8.self)), !bytes.isEmpty {
                return bytes
            }
            return data
        }
    }
}
