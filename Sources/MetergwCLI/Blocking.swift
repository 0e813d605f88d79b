import Dispatch

/// Async work from a synchronous command (the command line's main thread only waits for it).
enum Blocking {
    /// Runs `body` as a task and waits for its value.
    static func wait<T: Sendable>(_ body: @escaping @Sendable () async -> T) -> T {
        let done = DispatchSemaphore(value: 0)
        let box = ResultHolder<T>()
        Task {
            box.value = await body()
            done.signal()
        }
        done.wait()
        return box.value!
    }
}

/// A value handed from a task to the waiting thread (ordered by the semaphore).
private final class ResultHolder<T>: @unchecked Sendable {
    var value: T?
}
