import Foundation
import Testing

@testable import SerialPort

/// Errors from opening, and the words they give a person.
///
/// Limit: the tests run as root, which opens any device node whatever its mode, so EACCES cannot be provoked
/// here; the permission test checks the group lookup and the message on a real file owned by group dialout.
@Suite("Serial errors")
struct SerialErrorTests {
    @Test func missingDeviceIsNotFound() {
        let path = "/dev/ttyUSB-metergw-missing"
        #expect(throws: SerialError.notFound(path: path)) { try SerialPort.open(path) }
        let message = SerialError.notFound(path: path).description
        #expect(message.contains(path))
        #expect(message.contains("metergw ports"))
    }

    @Test func aFileThatIsNotATerminalIsUnsupported() {
        #expect {
            try SerialPort.open("/dev/null")
        } throws: { error in
            guard case SerialError.unsupported(_, let path) = error else { return false }
            return path == "/dev/null"
        }
    }

    @Test func permissionMessageNamesTheGroupAndTheFix() throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let path = "\(directory.path)/ttyUSB0"
        #expect(FileManager.default.createFile(atPath: path, contents: nil))
        let dialout = try #require(getgrnam("dialout")).pointee.gr_gid
        #expect(chown(path, 0, dialout) == 0)
        #expect(chmod(path, 0o660) == 0)

        let group = SerialPort.groupName(ownerOf: path)
        #expect(group == "dialout")
        let message = SerialError.permissionDenied(path: path, group: group).description
        #expect(message.contains("group dialout"))
        #expect(message.contains("sudo usermod -aG dialout $USER"))
        #expect(message.contains("log in again"))
        #expect(SerialPort.groupName(ownerOf: "\(directory.path)/absent") == nil)
    }

    @Test func messagesSayWhatToDo() {
        let busy = SerialError.busy(path: "/dev/ttyUSB0", holders: [DeviceHolder(pid: 42, program: "minicom")])
        #expect(busy.description.contains("minicom (pid 42)"))
        let refused = SerialError.unsupportedSetting(
            path: "/dev/ttyUSB0",
            requested: LineSettings(baudRate: 250000),
            applied: LineSettings(baudRate: 38400)
        )
        #expect(refused.description.contains("baud rate 250000 became 38400"))
        let system = SerialError.system(operation: "tcsetattr", path: "/dev/ttyS1", errno: EIO)
        #expect(system.description.contains("Input/output error"))
        #expect(system.path == "/dev/ttyS1")
        let timeout = SerialError.timeout(operation: "read", path: "/dev/ttyUSB0", partial: [1, 2])
        #expect(timeout.description.contains("2 byte(s)"))
    }
}
