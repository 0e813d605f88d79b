import Foundation
import Testing

@testable import SerialPort

/// Configuration over real pseudo-terminals: what is applied, what a pty refuses, and what close restores.
///
/// Measured pty behaviour (Linux 6.18) these tests pin down: the pty driver forces CS8 and clears PARENB. If that
/// is the only change requested, tcsetattr fails with EINVAL; with any other change it succeeds and the bits are
/// cleared silently. Speeds (standard and termios2/BOTHER), CSTOPB, CRTSCTS, IXON/IXOFF are kept as set.
/// RS-485 ioctls answer ENOTTY. After the controller closes, the subordinate polls POLLIN|POLLERR|POLLHUP, reads
/// 0 bytes (end of file) and tcgetattr/tcsetattr/tcflush/write fail with EIO. With no subordinate open, the
/// controller polls POLLHUP and reads fail with EIO (writes still succeed). As root, TIOCEXCL does not stop a
/// second open(2); the flock does.
@Suite("Pseudo-terminal configuration")
struct PseudoTerminalTests {
    @Test(arguments: [
        "9600:8N1", "19200:8N1", "115200:8N1", "9600:8N2", "115200:8N1:rtscts", "19200:8N2:xonxoff", "50:8N1",
        "4000000:8N1",
    ])
    func configureReadsBack(text: String) throws {
        let requested = try LineSettings(parsing: text)
        try withPortOnPair { pair, port throws in
            let warnings = try port.configure(requested)
            #expect(warnings.isEmpty)
            #expect(port.settings == requested)
            #expect(try port.readSettings() == requested)
            // termios belongs to the tty, so another descriptor sees the same settings.
            #expect(try pair.subordinateSettings() == requested)
        }
    }

    @Test(arguments: [250_000, 31250, 1234])
    func customBaudGoesThroughTermios2(rate: Int) throws {
        try withPortOnPair { pair, port throws in
            let requested = LineSettings(baudRate: rate, stopBits: .two)
            #expect(try port.configure(requested).isEmpty)
            #expect(try port.readSettings().baudRate == rate)
            #expect(try pair.subordinateSettings() == requested)
            // Back to a standard rate: the BOTHER speed must not linger (input or output).
            #expect(try port.configure(LineSettings(baudRate: 9600)).isEmpty)
            #expect(try port.readSettings() == LineSettings(baudRate: 9600))
        }
    }

    @Test func evenParityOnAPtyWarnsAndRunsWithoutParity() throws {
        try withPortOnPair { pair, port throws in
            // From the pty's default (38400) the baud changes too: PARENB is cleared silently.
            let warnings = try port.configure(try LineSettings(parsing: "9600:8E1"))
            #expect(warnings == [.parityUnsupported(requested: .even, path: pair.subordinatePath)])
            #expect(warnings.first?.description.contains("pseudo-terminal") == true)
            #expect(port.settings == LineSettings(baudRate: 9600))

            try port.write([0x01, 0x03, 0xFF, 0x00], deadline: guardDeadline())
            #expect(try pair.readExactly(4, deadline: guardDeadline()) == [0x01, 0x03, 0xFF, 0x00])
            try pair.write([0x7E, 0x11, 0x13], deadline: guardDeadline())
            #expect(try port.readExactly(3, deadline: guardDeadline()) == [0x7E, 0x11, 0x13])
        }
    }

    @Test(arguments: [LineSettings.Parity.even, .odd, .mark, .space])
    func parityAsTheOnlyChangeWarnsToo(parity: LineSettings.Parity) throws {
        try withPortOnPair { pair, port throws in
            #expect(try port.configure(LineSettings(baudRate: 9600)).isEmpty)
            // Now PARENB is the only change: the pty answers EINVAL and configure retries without parity.
            let warnings = try port.configure(LineSettings(baudRate: 9600, parity: parity))
            #expect(warnings == [.parityUnsupported(requested: parity, path: pair.subordinatePath)])
            #expect(try port.readSettings() == LineSettings(baudRate: 9600))
        }
    }

    @Test func otherDataBitsAreRefusedWithWhatWasKept() throws {
        try withPortOnPair { _, port throws in
            #expect(try port.configure(LineSettings(baudRate: 9600)).isEmpty)
            for text in ["9600:7N1", "19200:7O2"] {
                let requested = try LineSettings(parsing: text)
                do {
                    _ = try port.configure(requested)
                    Issue.record("a pty accepted \(text)")
                } catch {
                    guard case SerialError.unsupportedSetting(let path, let asked, let applied) = error else {
                        Issue.record("unexpected error \(error)")
                        continue
                    }
                    #expect(path == port.path)
                    #expect(asked == requested)
                    #expect(applied.dataBits == .eight)
                    #expect(applied.baudRate == requested.baudRate || text == "9600:7N1")
                    #expect(String(describing: error).contains("data bits 7 became 8"))
                }
            }
        }
    }

    @Test func rs485IsUnsupportedOnAPty() throws {
        try withPortOnPair { _, port throws in
            #expect(throws: SerialError.unsupported(feature: "RS-485 mode", path: port.path)) {
                try port.setRS485(RS485Settings(delayAfterSend: .milliseconds(1)))
            }
            #expect(throws: SerialError.unsupported(feature: "RS-485 mode", path: port.path)) {
                try port.rs485Settings()
            }
            // The port is still fine afterwards.
            #expect(try port.configure(LineSettings(baudRate: 9600)).isEmpty)
        }
    }

    @Test func closeRestoresTheOriginalSettings() throws {
        let pair = try PseudoTerminalPair()
        defer { try? pair.close() }
        let before = try pair.subordinateSettings()
        let port = try SerialPort.open(pair.subordinatePath)
        #expect(port.isPseudoTerminal)
        let changed = try LineSettings(parsing: "115200:8N2:rtscts")
        #expect(before != changed)
        #expect(try port.configure(changed).isEmpty)
        #expect(try pair.subordinateSettings() == changed)
        try port.close()
        #expect(!port.isOpen)
        #expect(try pair.subordinateSettings() == before)
        // Reopening works: the lock and exclusive mode were released.
        let again = try SerialPort.open(pair.subordinatePath)
        try again.close()
        // close is idempotent; use after close is an error, not a crash.
        try port.close()
        #expect(throws: SerialError.self) { try port.read(upTo: 1, deadline: .now) }
    }

    @Test func secondOpenInThisProcessIsBusyAndNamesUs() throws {
        let program = try ownProgramName()
        try withPortOnPair { pair, port throws in
            do {
                _ = try SerialPort.open(pair.subordinatePath)
                Issue.record("second open succeeded")
            } catch {
                guard case SerialError.busy(let path, let holders) = error else {
                    Issue.record("unexpected error \(error)")
                    return
                }
                #expect(path == pair.subordinatePath)
                #expect(holders.contains(DeviceHolder(pid: getpid(), program: program)))
                #expect(String(describing: error).contains("pid \(getpid())"))
            }
            // The failed open did not disturb the first one.
            try pair.write([0x42], deadline: guardDeadline())
            #expect(try port.read(upTo: 8, deadline: guardDeadline()) == [0x42])
        }
    }

    @Test func busyThroughALinkNamesUsToo() throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let link = "\(directory.path)/meter0"
        let pair = try PseudoTerminalPair(linkPath: link)
        defer { try? pair.close() }
        let port = try SerialPort.open(pair.subordinatePath)
        defer { try? port.close() }
        #expect {
            _ = try SerialPort.open(link)
        } throws: { error in
            guard case SerialError.busy(let path, let holders) = error else { return false }
            return path == link && holders.map(\.pid).contains(getpid())
        }
    }

    @Test func portHeldByAnotherProcessIsBusyAndNamesIt() throws {
        let pair = try PseudoTerminalPair()
        defer { try? pair.close() }
        let holder = Process()
        holder.executableURL = URL(fileURLWithPath: "/usr/bin/flock")
        // --no-fork: flock(1) takes the lock and execs sleep in the same process, which is then the only holder
        // besides this test process (the pair keeps a descriptor on the subordinate).
        holder.arguments = ["--exclusive", "--no-fork", pair.subordinatePath, "sleep", "30"]
        try holder.run()
        defer {
            // SIGKILL: the child may inherit a signal mask from the test runner that blocks SIGTERM.
            kill(holder.processIdentifier, SIGKILL)
            holder.waitUntilExit()
        }
        // flock(1) takes the lock some time after starting; retry (bounded) until the open sees it.
        let deadline = guardDeadline()
        var busyError: SerialError?
        while busyError == nil && ContinuousClock.now < deadline {
            do {
                let port = try SerialPort.open(pair.subordinatePath)
                try port.close()
                Thread.sleep(forTimeInterval: 0.01)
            } catch {
                busyError = error
            }
        }
        guard case .busy(_, let holders) = busyError else {
            Issue.record("expected busy, got \(String(describing: busyError))")
            return
        }
        // Between taking the lock and exec, the holder is still called flock.
        let names = holders.filter { $0.pid == holder.processIdentifier }.map(\.program)
        #expect(names == ["sleep"] || names == ["flock"])
        #expect(holders.map(\.pid).contains(getpid()))
    }

    @Test func pairLinkIsCreatedAndRemovedOnClose() throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let link = "\(directory.path)/meter0"
        let pair = try PseudoTerminalPair(linkPath: link)
        #expect(pair.linkPath == link)
        #expect(pair.subordinatePath.hasPrefix("/dev/pts/"))
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: link) == pair.subordinatePath)
        let port = try SerialPort.open(link)
        try port.write(Array("hello".utf8), deadline: guardDeadline())
        #expect(try pair.readExactly(5, deadline: guardDeadline()) == Array("hello".utf8))
        try port.close()
        try pair.close()
        #expect(!FileManager.default.fileExists(atPath: link))
        #expect((try? FileManager.default.destinationOfSymbolicLink(atPath: link)) == nil)
    }

    @Test func staleLinkIsReplaced() throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let link = "\(directory.path)/meter0"
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: "/dev/pts/999999")
        let pair = try PseudoTerminalPair(linkPath: link)
        defer { try? pair.close() }
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: link) == pair.subordinatePath)
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path) == ["meter0"])
    }

    @Test func regularFileAtTheLinkPathIsRefusedAndKept() throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let path = "\(directory.path)/meter0"
        try Data("keep me".utf8).write(to: URL(fileURLWithPath: path))
        #expect(throws: SerialError.pathOccupied(path: path)) { try PseudoTerminalPair(linkPath: path) }
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "keep me")
        #expect(SerialError.pathOccupied(path: path).description.contains("left alone"))
    }

    @Test func liveLinkOfAnotherPairIsRefused() throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let link = "\(directory.path)/meter0"
        let first = try PseudoTerminalPair(linkPath: link)
        defer { try? first.close() }
        #expect(throws: SerialError.pathOccupied(path: link)) { try PseudoTerminalPair(linkPath: link) }
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: link) == first.subordinatePath)
    }
}
