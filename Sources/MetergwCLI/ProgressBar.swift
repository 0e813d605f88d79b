/// A progress bar redrawn in place on standard error, for `scan` and long reports: only when standard error is a
/// terminal, so logs and pipes stay plain. Unchecked `Sendable`: a desk report draws it from the one task that runs
/// the report while the command's thread waits for it, never from two at once.
final class ProgressBar: @unchecked Sendable {
    static let width = 30
    let enabled: Bool
    private var drawn = false
    private var lastPercent = -1

    init(enabled: Bool = standardErrorIsTerminal) { self.enabled = enabled }

    /// `[#########.....................] TEXT`, the bar filled to `done` of `total` (full when total is 0).
    static func line(done: Int, total: Int, _ text: String) -> String {
        let filled = total <= 0 ? Self.width : min(Self.width, Self.width * max(0, done) / total)
        return "[" + String(repeating: "#", count: filled) + String(repeating: ".", count: Self.width - filled)
            + "] " + text
    }

    /// Redraws the bar; a report calls this per step, so it draws only when the percentage moves.
    func show(done: Int, total: Int, _ text: String) {
        guard self.enabled else { return }
        let percent = total <= 0 ? 100 : 100 * done / total
        guard percent != self.lastPercent else { return }
        self.lastPercent = percent
        self.draw(Self.line(done: done, total: total, text))
    }

    /// Draws `line` as it is (scan's bar carries its own counts and estimate).
    func draw(_ line: String) {
        guard self.enabled else { return }
        self.drawn = true
        Output.write(2, "\r" + line + "   ")
    }

    /// Erases the bar, so what follows starts on a clean line.
    func clear() {
        guard self.enabled, self.drawn else { return }
        self.drawn = false
        Output.write(2, "\r" + String(repeating: " ", count: 78) + "\r")
    }
}
