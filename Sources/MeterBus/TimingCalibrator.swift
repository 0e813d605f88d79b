/// Learns how long one meter (or the adapter) takes, and turns that into a timeout (docs/PROTOCOL.md §8).
///
/// It keeps the latest 64 samples of one quantity in microseconds: a meter's turnaround (from the end of the
/// request to the first byte of its answer, adapter delays included, as observed) or the adapter's delivery
/// lag. The timeout it gives is
///
///     clamp(2 × p99 + margin, minimum, maximum)
///
/// once it holds `minimumSamples` samples. Before that it gives the configured default, raised (never
/// lowered) to 2 × the longest sample + margin: one slow answer is enough to stop declaring a slow meter dead,
/// while a fast bus has to show enough fast answers before its timeouts shrink. Pure: time comes in as values,
/// so it is tested with synthetic samples.
public struct TimingCalibrator: Sendable, Equatable {
    public static let window = 64

    public let minimumSamples: Int
    private var ring: [Int64] = []
    /// The same samples in order, kept up to date on every record, so percentiles cost no sort.
    private var sorted: [Int64] = []
    private var next = 0
    /// Samples recorded in all (the ring keeps the latest `window`).
    public private(set) var recorded = 0

    public init(minimumSamples: Int = 5) {
        precondition(minimumSamples >= 1)
        self.minimumSamples = minimumSamples
    }

    public var sampleCount: Int { self.ring.count }

    public mutating func record(micros: Int64) {
        let value = max(0, micros)
        if self.ring.count < Self.window {
            self.ring.append(value)
            self.sorted.insert(value, at: Self.position(of: value, in: self.sorted))
        } else {
            let old = self.ring[self.next]
            self.ring[self.next] = value
            // The oldest sample leaves and the new one enters: one shift of the samples between their places
            // (every transaction records twice; a remove and an insert were two moves of the array's tail).
            self.sorted.withUnsafeMutableBufferPointer { sorted in
                var i = Self.position(of: old, in: UnsafeBufferPointer(sorted))
                if value > old {
                    while i + 1 < sorted.count && sorted[i + 1] < value {
                        sorted[i] = sorted[i + 1]
                        i += 1
                    }
                } else {
                    while i > 0 && sorted[i - 1] > value {
                        sorted[i] = sorted[i - 1]
                        i -= 1
                    }
                }
                sorted[i] = value
            }
        }
        self.next = (self.next + 1) % Self.window
        self.recorded += 1
    }

    public mutating func record(_ duration: Duration) { self.record(micros: duration.micros) }

    /// The first index in ascending `values` whose element is not below `value`.
    private static func position(of value: Int64, in values: some RandomAccessCollection<Int64>) -> Int {
        var low = values.startIndex
        var high = values.endIndex
        while low < high {
            let mid = values.index(low, offsetBy: values.distance(from: low, to: high) / 2)
            if values[mid] < value { low = values.index(after: mid) } else { high = mid }
        }
        return values.distance(from: values.startIndex, to: low)
    }

    /// Nearest-rank percentile (0...100) of the samples held, nil without samples.
    public func percentile(_ percent: Int) -> Int64? {
        guard !self.sorted.isEmpty else { return nil }
        let rank = max(1, (percent * self.sorted.count + 99) / 100)
        return self.sorted[min(rank, self.sorted.count) - 1]
    }

    /// The shortest sample held.
    public var shortest: Int64? { self.sorted.first }

    public var isCalibrated: Bool { self.ring.count >= self.minimumSamples }

    /// The timeout to use: see the type's documentation.
    public func timeout(default fallback: Duration, margin: Duration, minimum: Duration, maximum: Duration)
        -> Duration
    {
        let clamp = { (d: Duration) in min(max(d, minimum), maximum) }
        guard let longest = self.sorted.last else { return clamp(fallback) }
        guard self.isCalibrated, let p99 = self.percentile(99) else {
            return clamp(max(fallback, .microseconds(2 * longest) + margin))
        }
        return clamp(.microseconds(2 * p99) + margin)
    }

    /// Which try an answer belongs to when it arrived after a retry with the same SEQ (every try's answer looks
    /// the same): returns the implied turnaround. With calibration, the candidate nearest the median; without,
    /// the longest (the earliest try), so that uncertainty can only lengthen a timeout, never shorten it.
    public func attribute(arrivalMicros: Int64, sendMicros: [Int64]) -> Int64 {
        let candidates = sendMicros.map { arrivalMicros - $0 }.filter { $0 >= 0 }
        guard let longest = candidates.max() else { return 0 }
        guard self.isCalibrated, let median = self.percentile(50) else { return longest }
        return candidates.min { abs($0 - median) < abs($1 - median) } ?? longest
    }

    /// Records the turnaround ``attribute(arrivalMicros:sendMicros:)`` implies.
    public mutating func record(attributing arrivalMicros: Int64, sendMicros: [Int64]) {
        self.record(micros: self.attribute(arrivalMicros: arrivalMicros, sendMicros: sendMicros))
    }
}

/// A calibration snapshot for people: what the session learned about one target or the adapter.
public struct CalibrationState: Sendable, Equatable {
    public var samples: Int
    public var p50Micros: Int64
    public var p99Micros: Int64
    /// The first-byte timeout the session uses now.
    public var timeout: Duration
    public var isCalibrated: Bool
}
