import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A dedicated thread that runs one bus's jobs one at a time, in the order they were submitted.
///
/// Blocking serial I/O never runs on Swift's cooperative pool (2 threads on this machine: one stuck read would
/// stall half the process's tasks). A job submitted from inside a job runs inline, so a job may call the
/// session's synchronous API (a driver operation made of several transactions, or a scan).
///
/// A blocking caller that finds the bus idle, with nobody queued, runs its work on its own thread instead
/// (``runInline(_:)``): handing it to the executor's thread and back costs two thread wake-ups per transaction,
/// which on a virtual machine is most of the bus master's CPU time.
final class BusExecutor: Sendable {
    /// A unit of work; called with `true` to run, `false` when the executor closed before its turn.
    typealias Job = @Sendable (_ run: Bool) -> Void

    private struct Queue {
        var jobs: [Job?] = []
        var head = 0
        var closed = false
        var threadID: pthread_t?
        /// The thread holding the wire: the executor's during a job, a caller's during inline work.
        var owner: pthread_t?

        var isEmpty: Bool { self.head >= self.jobs.count }
    }

    private let queue = Mutex(Queue())
    /// CPU time of inline work on callers' threads, in nanoseconds: measured on one inline run in
    /// ``inlineCPUSampling`` and counted that many times (reading a thread's CPU clock is a system call, two per
    /// run, a noticeable part of a transaction's cost on a virtual machine).
    private let inlineCPUNanos = Atomic<Int64>(0)
    private let inlineRuns = Atomic<Int>(0)
    static let inlineCPUSampling = 16
    private let wakeUp = DispatchSemaphore(value: 0)
    private let started = DispatchSemaphore(value: 0)

    init(name: String) {
        // The thread holds the executor (not the session), and ends after close().
        let thread = Thread { [self] in
            self.queue.withLock { $0.threadID = pthread_self() }
            self.started.signal()
            self.serve()
        }
        thread.name = name
        // Serial timing wants prompt wake-ups more than throughput.
        thread.qualityOfService = .userInteractive
        thread.start()
        self.started.wait()
    }

    private enum Next {
        case run(Job, closed: Bool)
        /// Nothing to run now: the queue is empty, or an inline caller holds the wire (it wakes us when done).
        case wait
        case exit
    }

    private func serve() {
        let me = pthread_self()
        while true {
            let next: Next = self.queue.withLock { q in
                guard !q.isEmpty else { return q.closed ? .exit : .wait }
                guard q.owner == nil else { return .wait }
                let job = q.jobs[q.head]!
                q.jobs[q.head] = nil
                q.head += 1
                if q.head >= 64 && q.head * 2 >= q.jobs.count {
                    q.jobs.removeFirst(q.head)
                    q.head = 0
                }
                q.owner = me
                return .run(job, closed: q.closed)
            }
            switch next {
            case .exit: return
            // Every submit signals, so a wake-up may find its job already run: waiting only when there is
            // nothing to run keeps a job from being stranded by a signal used up meanwhile.
            case .wait: self.wakeUp.wait()
            case .run(let job, let closed):
                job(!closed)
                self.queue.withLock { $0.owner = nil }
            }
        }
    }

    /// Whether the caller holds the wire: it runs inside a job, or inline work.
    var isCurrent: Bool {
        guard let owner = self.queue.withLock({ $0.owner }) else { return false }
        return pthread_equal(owner, pthread_self()) != 0
    }

    /// Runs `body` on the calling thread if the bus is idle and nobody is queued, holding the wire as a job
    /// would; returns nil (without running it) otherwise, and after close().
    func runInline<T>(_ body: () throws(BusError) -> T) throws(BusError) -> T? {
        let me = pthread_self()
        let acquired = self.queue.withLock { q in
            guard !q.closed, q.owner == nil, q.isEmpty else { return false }
            q.owner = me
            return true
        }
        guard acquired else { return nil }
        let sampled = self.inlineRuns.add(1, ordering: .relaxed).oldValue % Self.inlineCPUSampling == 0
        let cpuBefore = sampled ? Self.threadCPUNanos() : 0
        defer {
            if sampled {
                let spent = Self.threadCPUNanos() - cpuBefore
                self.inlineCPUNanos.add(spent * Int64(Self.inlineCPUSampling), ordering: .relaxed)
            }
            // Jobs queued meanwhile found the wire held and went back to sleep: wake the thread for them.
            let queued = self.queue.withLock { q in
                q.owner = nil
                return !q.isEmpty
            }
            if queued { self.wakeUp.signal() }
        }
        return try body()
    }

    /// The executor thread, e.g. for its CPU clock.
    var threadID: pthread_t? { self.queue.withLock { $0.threadID } }

    /// CPU time of the executor's thread plus that of inline work on callers' threads (an estimate from one run in
    /// ``inlineCPUSampling``, exact over many): the bus master's own work.
    var cpuTime: Duration {
        .nanoseconds(self.threadCPUTimeNanos + self.inlineCPUNanos.load(ordering: .relaxed))
    }

    /// CPU time of the executor's thread alone (zero if its clock cannot be read).
    var threadCPUTimeNanos: Int64 {
        guard let thread = self.threadID else { return 0 }
        var clockID = clockid_t()
        guard pthread_getcpuclockid(thread, &clockID) == 0 else { return 0 }
        var ts = timespec()
        guard clock_gettime(clockID, &ts) == 0 else { return 0 }
        return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
    }

    private static func threadCPUNanos() -> Int64 {
        var ts = timespec()
        guard clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) == 0 else { return 0 }
        return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
    }

    /// Queues a job; after `close()` it is called at once with `false`.
    func submit(_ job: @escaping Job) {
        let accepted = self.queue.withLock { q in
            guard !q.closed else { return false }
            q.jobs.append(job)
            return true
        }
        if accepted { self.wakeUp.signal() } else { job(false) }
    }

    /// Lets the job in flight finish, calls every queued job with `false`, and ends the thread.
    func close() {
        let wasOpen = self.queue.withLock { q in
            defer { q.closed = true }
            return !q.closed
        }
        // One extra wake-up makes the thread see an empty queue and return.
        if wasOpen { self.wakeUp.signal() }
    }
}
