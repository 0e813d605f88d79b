import BillingStore
import CentralStore
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

    /// Runs throwing store work as a task and waits for it; a store's error becomes the command's message and
    /// exit status (`StoreCLI.error`, `CentralCLI.cliError`).
    static func run<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) throws -> T {
        let result = Self.wait { () async -> Result<T, any Error> in
            do { return .success(try await body()) } catch { return .failure(error) }
        }
        switch result {
        case .success(let value): return value
        case .failure(let error as StoreError): throw StoreCLI.error(error)
        case .failure(let error as CentralError): throw CentralCLI.cliError(error)
        case .failure(let error): throw error
        }
    }
}

/// A value handed from a task to the waiting thread (ordered by the semaphore).
private final class ResultHolder<T>: @unchecked Sendable {
    var value: T?
}
