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

    @Flag(help: "Decode a 256-byte card image (docs/CARD.md) instead of frames.")
    var card = false

    @Option(help: "With --card: the issuer's key file, to check the card's MACs.")
    var keys: String?

    enum InputFormat: String, ExpressibleByArgument, CaseIterable {
        case auto, binary, hex
    }

    func validate() throws {
        if self.hex.isEmpty && self.file == nil {
            throw ValidationError("give bytes in hex, or --file PATH, or --file - for standard input")
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
        var report = Report(json: self.json)
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
        report.finish()
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

    /// Accumulates the decode and prints as items come out.
    struct Report {
        let json: Bool
        var decoder = FrameDecoder()
        /// Every byte seen, kept only for printing skipped runs (bounded by what the decoder holds back).
        var window: [UInt8] = []
        var windowOffset = 0
        var frames = 0
        var invalidFrames = 0
        var garbageRuns = 0
        var garbageBytes = 0

        init(json: Bool) { self.json = json }

        var clean: Bool { self.garbageRuns == 0 && self.invalidFrames == 0 }

        /// A whole capture: decoded as one stream, so garbage runs read the same as in the golden files.
        mutating func decodeAll(_ bytes: [UInt8]) {
            self.window += bytes
            self.decoder.append(bytes)
            self.decoder.finish()
            self.drain()
        }

        mutating func decodeLive(fd: Int32) throws {
            var buffer = [UInt8](repeating: 0, count: 4096)
            while true {
                let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if n < 0 {
                    if errno == EINTR { continue }
                    throw CLIError(.ioError, "reading standard input failed: \(String(cString: strerror(errno)))")
                }
                if n == 0 { return }
                self.feed(buffer[0..<n])
            }
        }

        mutating func feed(_ bytes: ArraySlice<UInt8>) {
            self.window += bytes
            self.decoder.append(bytes)
            self.drain()
        }

        mutating func finish() {
            self.decoder.finish()
            self.drain()
            if !self.json {
                var summary = "\(self.frames) frame\(self.frames == 1 ? "" : "s")"
                if self.invalidFrames > 0 { summary += ", \(self.invalidFrames) with an invalid payload" }
                summary += ", \(self.garbageRuns) garbage run\(self.garbageRuns == 1 ? "" : "s")"
                summary += " (\(self.garbageBytes) B)"
                Output.line(summary)
            }
        }

        private mutating func drain() {
            while let item = self.decoder.next() {
                var skipped: ArraySlice<UInt8>?
                switch item {
                case .frame:
                    self.frames += 1
                    if !item.isValidMessage { self.invalidFrames += 1 }
                case .skipped(let offset, let count, _):
                    self.garbageRuns += 1
                    self.garbageBytes += count
                    let start = offset - self.windowOffset
                    skipped = self.window[start..<(start + count)]
                }
                if self.json {
                    Output.line(item.jsonObject(skippedBytes: skipped).rendered())
                } else {
                    for line in FrameFormatter.lines(for: item, bytes: skipped) { Output.line(line) }
                }
            }
            // Keep only what the decoder still holds, so a long live decode does not grow without bound.
            let keep = self.decoder.bufferedByteCount
            let drop = self.window.count - keep
            if drop > 0 {
                self.window.removeFirst(drop)
                self.windowOffset += drop
            }
        }
    }
}
