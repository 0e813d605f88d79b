import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A throwaway PostgreSQL cluster for tests: `initdb` into a temporary folder, started on a free loopback port
/// with its socket in that folder, stopped and removed when the test process exits. Runs as the unprivileged
/// `postgres` user when the tests run as root (PostgreSQL refuses to run as root).
///
/// One cluster per test process, started on first use; each test takes its own database (``createDatabase()``).
public final class PostgresCluster: Sendable {
    public enum Failure: Error, CustomStringConvertible {
        case unavailable(String)
        case failed(String)

        public var description: String {
            switch self {
            case .unavailable(let why): "PostgreSQL is not available for tests: \(why)"
            case .failed(let why): "the test PostgreSQL cluster failed: \(why)"
            }
        }
    }

    public let port: Int
    public let adminUser = "metergw_admin"
    public let adminPassword: String
    let folder: String
    let bin: String
    /// Whether commits reach the disk before they are acknowledged (see ``start(durable:)``).
    let durable: Bool
    let runAs: String?

    /// The shared cluster, started on first use.
    public static func shared() throws -> PostgresCluster {
        try sharedCluster.get()
    }

    /// Why PostgreSQL cannot be used here, or nil when it can (the tests skip with this reason, except in CI).
    public static var unavailableReason: String? {
        if Self.binFolder() == nil {
            return "initdb and pg_ctl not found (install Debian's postgresql package: tools/setup does)"
        }
        if getuid() == 0 && getpwnam("postgres") == nil {
            return "running as root and there is no 'postgres' user to run the server as"
        }
        return nil
    }

    /// Whether tests that need PostgreSQL run: always in CI (CI=true), where a missing server must fail them.
    public static var shouldRun: Bool {
        ProcessInfo.processInfo.environment["CI"] == "true" || Self.unavailableReason == nil
    }

    private static let sharedCluster: Result<PostgresCluster, Failure> = {
        Result { () throws(Failure) -> PostgresCluster in
            let cluster = try PostgresCluster()
            atexit { PostgresCluster.stopShared() }
            return cluster
        }
    }()

    /// At exit: Foundation's Process cannot be relied on while the process ends, so the postmaster is stopped
    /// with a signal (SIGQUIT: immediate shutdown) and the folder removed.
    private static func stopShared() {
        if case .success(let cluster) = sharedCluster { cluster.stopBySignal() }
    }

    private func stopBySignal() {
        Self.stopPostmaster(folder: self.folder)
        try? FileManager.default.removeItem(atPath: self.folder)
    }

    /// Sends SIGQUIT to the postmaster of the cluster in `folder` and waits (up to 10 s) until it is gone.
    private static func stopPostmaster(folder: String) {
        guard let text = try? String(contentsOfFile: "\(folder)/data/postmaster.pid", encoding: .utf8),
            let line = text.split(separator: "\n").first, let pid = pid_t(line.trimmingCharacters(in: .whitespaces))
        else { return }
        guard Glibc.kill(pid, SIGQUIT) == 0 else { return }
        for _ in 0..<1000 where Glibc.kill(pid, 0) == 0 { usleep(10_000) }
    }

    /// Clusters left by test processes that were killed (their atexit never ran): stopped and removed.
    private static func removeStaleClusters() {
        let fm = FileManager.default
        guard let names = try? fm.contentsOfDirectory(atPath: "/tmp") else { return }
        for name in names where name.hasPrefix("metergw-pg-") {
            let folder = "/tmp/\(name)"
            guard let owner = try? String(contentsOfFile: "\(folder)/owner.pid", encoding: .utf8),
                let pid = pid_t(owner.trimmingCharacters(in: .whitespacesAndNewlines)),
                Glibc.kill(pid, 0) != 0 && errno == ESRCH
            else { continue }
            Self.stopPostmaster(folder: folder)
            try? fm.removeItem(atPath: folder)
        }
    }

    static func binFolder() -> String? {
        let fm = FileManager.default
        if let versions = try? fm.contentsOfDirectory(atPath: "/usr/lib/postgresql") {
            let sorted = versions.compactMap { Int($0) }.sorted(by: >)
            for version in sorted where fm.isExecutableFile(atPath: "/usr/lib/postgresql/\(version)/bin/initdb") {
                return "/usr/lib/postgresql/\(version)/bin"
            }
        }
        for folder in (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":")
        where fm.isExecutableFile(atPath: "\(folder)/initdb") && fm.isExecutableFile(atPath: "\(folder)/pg_ctl") {
            return String(folder)
        }
        return nil
    }

    /// A cluster of its own (not the shared one), stopped by ``stop()``. `durable: false` (tests) turns off fsync
    /// and synchronous commit; benchmarks keep PostgreSQL's defaults, so that commits are what they would be.
    public static func start(durable: Bool) throws(Failure) -> PostgresCluster {
        try PostgresCluster(durable: durable)
    }

    private init(durable: Bool = false) throws(Failure) {
        if let why = Self.unavailableReason { throw .unavailable(why) }
        Self.removeStaleClusters()
        self.bin = Self.binFolder()!
        self.durable = durable
        self.runAs = getuid() == 0 ? "postgres" : nil
        var template = Array("/tmp/metergw-pg-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw .failed("mkdtemp: \(String(cString: strerror(errno)))") }
        self.folder = String(cString: made)
        var bytes = [UInt8](repeating: 0, count: 18)
        for i in bytes.indices { bytes[i] = UInt8.random(in: 0...255) }
        self.adminPassword = bytes.map { String(format: "%02x", $0) }.joined()
        do { self.port = try LoopbackPort.free() } catch { throw .failed(error.description) }
        guard FileManager.default.createFile(atPath: "\(self.folder)/owner.pid", contents: Data("\(getpid())\n".utf8))
        else { throw .failed("cannot write in \(self.folder)") }
        let passwordFile = "\(self.folder)/pwfile"
        guard FileManager.default.createFile(atPath: passwordFile, contents: Data(self.adminPassword.utf8)) else {
            throw .failed("cannot write \(passwordFile)")
        }
        if let user = self.runAs, let pw = getpwnam(user) {
            chown(self.folder, pw.pointee.pw_uid, pw.pointee.pw_gid)
            chown(passwordFile, pw.pointee.pw_uid, pw.pointee.pw_gid)
            chmod(passwordFile, 0o600)
        }
        try self.run("initdb", ["-D", "\(self.folder)/data", "-U", self.adminUser, "--pwfile=\(passwordFile)",
                                "--auth=scram-sha-256", "-E", "UTF8", "--no-locale", "--no-sync"])
        try self.run("pg_ctl", ["-D", "\(self.folder)/data", "-l", "\(self.folder)/server.log", "-w", "-t", "60",
                                "-o", self.serverOptions, "start"])
    }

    /// A new, empty database owned by the admin user; its name is unique in this process.
    public func createDatabase(prefix: String = "t") throws -> String {
        let name = "\(prefix)_\(getpid())_\(Self.counter.next())"
        try self.runClient("createdb", ["-h", "127.0.0.1", "-p", "\(self.port)", "-U", self.adminUser, name])
        return name
    }

    /// The URL for `database` as the admin (superuser) of the cluster.
    public func url(database: String) -> String {
        "postgres://\(self.adminUser):\(self.adminPassword)@127.0.0.1:\(self.port)/\(database)"
    }

    /// Stops the server at once (no checkpoint) and removes the cluster's folder.
    public func stop() {
        _ = try? self.run("pg_ctl", ["-D", "\(self.folder)/data", "-m", "immediate", "-w", "stop"])
        try? FileManager.default.removeItem(atPath: self.folder)
    }

    /// Stops the server as a crash would (for tests of a centre going away), keeping its data.
    public func kill() throws {
        try self.run("pg_ctl", ["-D", "\(self.folder)/data", "-m", "immediate", "-w", "stop"])
    }

    /// Starts the server again after ``kill()``.
    public func restart() throws {
        try self.run("pg_ctl", ["-D", "\(self.folder)/data", "-l", "\(self.folder)/server.log", "-w", "-t", "60",
                                "-o", self.serverOptions, "start"])
    }

    /// SIGKILL to the postmaster, as `kill -9` or the kernel's OOM killer would: no shutdown of any kind. Returns
    /// once the postmaster and every server process it left behind are gone (backends notice their postmaster's
    /// death and exit), so that ``restartAfterCrash()`` can start it again; the timeout is a failure guard.
    public func crash(timeout: TimeInterval = 60) throws {
        let dataFolder = "\(self.folder)/data"
        guard let text = try? String(contentsOfFile: "\(dataFolder)/postmaster.pid", encoding: .utf8),
            let line = text.split(separator: "\n").first, let pid = pid_t(line.trimmingCharacters(in: .whitespaces))
        else { throw Failure.failed("no postmaster.pid in \(dataFolder): the server is not running") }
        guard Glibc.kill(pid, SIGKILL) == 0 else {
            throw Failure.failed("kill -9 \(pid): \(String(cString: strerror(errno)))")
        }
        let deadline = Date().addingTimeInterval(timeout)
        // The postmaster first (a dying process may already have let go of its folder), then its children.
        while Self.isRunning(pid) || Self.liveProcesses(in: dataFolder) > 0 {
            guard Date() < deadline else {
                throw Failure.failed("server processes of \(dataFolder) still running \(Int(timeout)) s after kill -9")
            }
            usleep(20_000)
        }
        // A killed postmaster that nobody reaped yet is a zombie: kill(pid, 0) still succeeds and the next
        // postmaster would take it for a running one. Nothing of the old server runs any more, so its lock files
        // (the data folder's and the socket's) are stale.
        if Self.isZombie(pid) {
            try? FileManager.default.removeItem(atPath: "\(dataFolder)/postmaster.pid")
            try? FileManager.default.removeItem(atPath: "\(self.folder)/.s.PGSQL.\(self.port).lock")
        }
    }

    /// Starts the server again after ``crash()``: it replays its write-ahead log (crash recovery).
    /// The end of the server's log is in the error: the folder is removed when the test ends.
    public func restartAfterCrash() throws {
        do {
            try self.restart()
        } catch {
            let log = (try? String(contentsOfFile: "\(self.folder)/server.log", encoding: .utf8)) ?? ""
            throw Failure.failed("\(error)\nserver.log ends:\n"
                                 + log.split(separator: "\n").suffix(15).joined(separator: "\n"))
        }
    }

    /// Server processes (not zombies) whose working folder is `dataFolder`: every postgres process works there.
    private static func liveProcesses(in dataFolder: String) -> Int {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return 0 }
        let target = URL(fileURLWithPath: dataFolder).resolvingSymlinksInPath().path
        var count = 0
        for name in names {
            guard let pid = pid_t(name), pid != getpid(),
                let cwd = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(name)/cwd"),
                cwd == target || cwd == dataFolder, !Self.isZombie(pid)
            else { continue }
            count += 1
        }
        return count
    }

    /// Alive and not yet a zombie (a zombie has exited; it only waits to be reaped).
    private static func isRunning(_ pid: pid_t) -> Bool {
        FileManager.default.fileExists(atPath: "/proc/\(pid)/stat") && !Self.isZombie(pid)
    }

    private static func isZombie(_ pid: pid_t) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return false }
        return stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).hasPrefix("Z")
    }

    /// A cluster that is not durable acknowledges commits before they are on disk: after ``kill()`` it has lost
    /// them. Tests that kill the server use a durable one.
    private var serverOptions: String {
        "-p \(self.port) -k \(self.folder) -c listen_addresses=127.0.0.1 -c max_connections=200"
            + (self.durable ? "" : " -c fsync=off -c synchronous_commit=off -c full_page_writes=off")
    }

    private func run(_ tool: String, _ arguments: [String]) throws(Failure) {
        var argv = ["\(self.bin)/\(tool)"] + arguments
        if let user = self.runAs { argv = ["/usr/sbin/runuser", "-u", user, "--"] + argv }
        try Self.execute(argv, environment: [:], in: self.folder)
    }

    private func runClient(_ tool: String, _ arguments: [String]) throws(Failure) {
        try Self.execute(["\(self.bin)/\(tool)"] + arguments, environment: ["PGPASSWORD": self.adminPassword],
                         in: self.folder)
    }

    /// posix_spawn and waitpid, output into a file: Foundation's Process was seen to hang in waitUntilExit after
    /// `pg_ctl start` (whose server lives on), and it cannot be used at exit.
    private static func execute(_ argv: [String], environment: [String: String], in folder: String) throws(Failure) {
        let outputPath = "\(folder)/command-\(getpid())-\(Self.counter.next()).log"
        let fd = open(outputPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw .failed("cannot create \(outputPath): \(String(cString: strerror(errno)))") }
        defer { unlink(outputPath) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, fd, 1)
        posix_spawn_file_actions_adddup2(&actions, fd, 2)
        let env = ProcessInfo.processInfo.environment.merging(environment) { $1 }.map { "\($0)=\($1)" }
        var pid = pid_t()
        let cArgs = argv.map { strdup($0) } + [nil]
        let cEnv = env.map { strdup($0) } + [nil]
        defer {
            cArgs.forEach { free($0) }
            cEnv.forEach { free($0) }
        }
        let spawned = posix_spawn(&pid, argv[0], &actions, nil, cArgs, cEnv)
        close(fd)
        guard spawned == 0 else { throw .failed("cannot start \(argv[0]): \(String(cString: strerror(spawned)))") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let exited = status & 0x7f == 0
        let code = (status >> 8) & 0xff
        guard exited && code == 0 else {
            let text = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
            throw .failed("\(argv.joined(separator: " ")) failed (status \(status)): \(text)")
        }
    }

    private static let counter = Counter()

    private final class Counter: @unchecked Sendable {
        private let lock = NSLock()
        private var value = 0
        func next() -> Int {
            self.lock.lock()
            defer { self.lock.unlock() }
            self.value += 1
            return self.value
        }
    }
}
