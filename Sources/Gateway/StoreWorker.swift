import BillingStore
import Dispatch

/// Runs the store's blocking calls on one serial queue of its own, never on the cooperative pool's few threads
/// (a commit waits for fsync; sixteen pollers doing that on two threads would stall every bus).
final class StoreWorker: Sendable {
    let store: BillingDatabase
    private let queue = DispatchQueue(label: "metergw.gateway.store")

    init(store: BillingDatabase) { self.store = store }

    func run<T: Sendable>(_ body: @escaping @Sendable (BillingDatabase) throws(StoreError) -> T)
        async throws(StoreError) -> T
    {
        let result: Result<T, StoreError> = await withCheckedContinuation { continuation in
            self.queue.async {
                continuation.resume(returning: Result { () throws(StoreError) -> T in try body(self.store) })
            }
        }
        return try result.get()
    }
}
