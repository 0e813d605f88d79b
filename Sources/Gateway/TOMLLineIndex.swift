/// Which line of a TOML file each key is on, for error messages: TOMLKit parses values but keeps no positions.
///
/// A plain scan of the lines: `[table]` and `[[array]]` headers (array tables counted from 1: `bus[2]`) and
/// `key = ...` at the start of a line; multi-line strings are skipped. Keys are joined with dots (`bus[2].line`).
struct TOMLLineIndex {
    private(set) var lines: [String: Int] = [:]

    init(_ text: String) {
        var table = ""
        var arrayCounts: [String: Int] = [:]
        var inMultilineString: String?
        for (offset, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let number = offset + 1
            let line = raw.trimmingCharacters(in: " \t\r")
            if let delimiter = inMultilineString {
                if line.contains(delimiter) { inMultilineString = nil }
                continue
            }
            if line.isEmpty || line.hasPrefix("#") { continue }
            if line.hasPrefix("[[") {
                let name = Self.key(line.dropFirst(2).prefix { $0 != "]" })
                let count = arrayCounts[name, default: 0] + 1
                arrayCounts[name] = count
                table = "\(name)[\(count)]"
                self.record(table, number)
                continue
            }
            if line.hasPrefix("[") {
                table = Self.key(line.dropFirst().prefix { $0 != "]" })
                self.record(table, number)
                continue
            }
            guard let equals = line.firstIndex(of: "=") else { continue }
            let key = Self.key(line[..<equals])
            self.record(table.isEmpty ? key : "\(table).\(key)", number)
            let value = line[line.index(after: equals)...]
            for delimiter in ["\"\"\"", "'''"] where value.contains(delimiter) {
                // Opened and not closed on the same line.
                if value.components(separatedBy: delimiter).count == 2 { inMultilineString = delimiter }
            }
        }
    }

    /// The line of `key`, or of the nearest enclosing table that has one.
    func line(of key: String) -> Int? {
        var key = key
        while true {
            if let line = self.lines[key] { return line }
            guard let cut = key.lastIndex(where: { $0 == "." || $0 == "[" }) else { return nil }
            // From `bus[2].meters[3]` to `bus[2].meters`, then to `bus[2]`.
            key = String(key[..<cut])
        }
    }

    private mutating func record(_ key: String, _ line: Int) {
        if self.lines[key] == nil { self.lines[key] = line }
    }

    /// `"a b" . c` -> `a b.c`.
    private static func key(_ text: Substring) -> String {
        text.split(separator: ".").map { part in
            part.trimmingCharacters(in: " \t").trimmingCharacters(in: "\"'")
        }.joined(separator: ".")
    }
}

extension StringProtocol {
    func trimmingCharacters(in set: String) -> String {
        var scalars = Substring(self)
        while let first = scalars.first, set.contains(first) { scalars = scalars.dropFirst() }
        while let last = scalars.last, set.contains(last) { scalars = scalars.dropLast() }
        return String(scalars)
    }
}
