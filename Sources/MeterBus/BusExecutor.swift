import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A dedicated thread that runs one bus's jobs one at a time, in the order they were submitted.
///
/// Blocking serial I/O never runs on Swift's cooperative pool (2 threads on this machine: one stuck read would
/// stall half the process's tasks). A job submitted from the executor's own thread runs inline, so a job may
/// call the session's synchronous API (a driver operation made of several transactions, or a scan).
final class BusExecutor: Sendable {
    /// A unit of work; called with `true` to run, `false` when the executor closed before its turn.
    typealias Job = @Sendable (_ run: Bool) -> Void

    private struct Queue {
        var jobs: [Job?] = []
        var head = 0
        var closed = false
        var threadID: pthread_t?
    }

    private let queue = Mutex(Queue())
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

    private func serve() {
        while true {
            self.wakeUp.wait()
            let next: Job? = self.queue.withLock { q in
                guard q.head < q.jobs.count else { return nil }
                let job = q.jobs[q.head]
                q.jobs[q.head] = nil
                q.head += 1
                if q.head >= 64 && q.head * 2 >= q.jobs.count {
                    q.jobs.removeFirst(q.head)
                    q.head = 0
                }
                return job
            }
            guard let job = next else { return }  // closed and drained
            let closed = self.queue.withLock { $0.closed }
            job(!closed)
        }
    }

    /// Whether the caller is running on the executor's thread (inside a job).
    var isCurrent: Bool {
        guard let id = self.queue.withLock({ $0.threadID }) else { return false }
        return pthread_equal(id, pthread_self()) != 0
    }

    /// The executor thread, e.g. for its CPU clock.
    var threadID: pthread_t? { self.queue.withLock { $0.threadID } }

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
