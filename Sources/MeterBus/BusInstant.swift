#if canImport(Glibc)
import Glibc
#endif

/// A moment on the bus master's clock: nanoseconds of `CLOCK_BOOTTIME`, the clock `ContinuousClock` reads on
/// Linux, as a plain integer.
///
/// The transaction path reads and compares times a few dozen times per request. `ContinuousClock.Instant` is
/// opaque outside the standard library, so each copy, comparison and sum of one (and of any struct or optional
/// holding one) is a call into the runtime; this type is two instructions for the same work. Serial deadlines
/// are converted at the transport's edge (``continuous``).
struct BusInstant: Comparable, Hashable, Sendable {
    var nanos: Int64

    static var now: BusInstant {
        var ts = timespec()
        clock_gettime(CLOCK_BOOTTIME, &ts)
        return BusInstant(nanos: Int64(ts.tv_sec) &* 1_000_000_000 &+ Int64(ts.tv_nsec))
    }

    static func < (a: BusInstant, b: BusInstant) -> Bool { a.nanos < b.nanos }

    static func + (a: BusInstant, d: Duration) -> BusInstant { BusInstant(nanos: a.nanos &+ d.nanos) }
    static func - (a: BusInstant, d: Duration) -> BusInstant { BusInstant(nanos: a.nanos &- d.nanos) }
    static func - (a: BusInstant, b: BusInstant) -> Duration { .nanoseconds(a.nanos &- b.nanos) }

    /// Whole microseconds from `earlier` to this instant (negative if it is later).
    func micros(since earlier: BusInstant) -> Int64 { (self.nanos &- earlier.nanos) / 1_000 }

    /// The same moment on `ContinuousClock`, for the serial layer's deadlines (the two clocks are the same one;
    /// the conversion's error is the few nanoseconds between two clock readings).
    var continuous: ContinuousClock.Instant {
        let now = BusInstant.now
        return ContinuousClock.now.advanced(by: .nanoseconds(self.nanos &- now.nanos))
    }
}
