/// Latencies in microseconds, in log-linear buckets: exact below 64 µs, then 32 buckets per power of two
/// (at most 1/32 ≈ 3% above the true value), up to 2^36 µs (19 hours). Bounded memory, integers only, so a
/// gateway that polls for months keeps true all-time percentiles.
///
/// Only the buckets between the lowest and highest seen are kept: one meter's latencies span a few dozen
/// buckets, and a gateway keeps two histograms for each of its hundreds of meters.
public struct LatencyHistogram: Sendable, Equatable {
    static let linearLimit: Int64 = 64
    static let subBuckets = 32
    static let maxExponent = 36
    static let bucketCount = Int(linearLimit) + (maxExponent - 6 + 1) * subBuckets

    /// The bucket index of `counts[0]`.
    private var lowest = 0
    private var counts: [UInt32] = []
    public private(set) var count = 0
    public private(set) var max: Int64 = 0
    public private(set) var sum: Int64 = 0

    public init() {}

    /// The number of buckets held.
    var bucketsHeld: Int { self.counts.count }

    public mutating func record(micros: Int64) {
        let value = Swift.max(0, micros)
        let index = Self.index(of: value)
        if self.counts.isEmpty {
            self.lowest = index
            self.counts = [0]
        } else if index < self.lowest {
            self.counts.insert(contentsOf: repeatElement(0, count: self.lowest - index), at: 0)
            self.lowest = index
        } else if index >= self.lowest + self.counts.count {
            self.counts.append(contentsOf: repeatElement(0, count: index - self.lowest - self.counts.count + 1))
        }
        self.counts[index - self.lowest] &+= 1
        self.count += 1
        self.sum &+= value
        self.max = Swift.max(self.max, value)
    }

    static func index(of value: Int64) -> Int {
        if value < linearLimit { return Int(value) }
        let exponent = Swift.min(63 - value.leadingZeroBitCount, maxExponent)
        let shift = exponent - 5
        let mantissa = Swift.min(Int(value >> shift), 2 * subBuckets - 1)
        return Int(linearLimit) + (exponent - 6) * subBuckets + (mantissa - subBuckets)
    }

    /// The largest value a bucket holds.
    static func upperBound(ofBucket index: Int) -> Int64 {
        if index < Int(linearLimit) { return Int64(index) }
        let exponent = (index - Int(linearLimit)) / subBuckets + 6
        let mantissa = Int64((index - Int(linearLimit)) % subBuckets + subBuckets)
        return ((mantissa + 1) << (exponent - 5)) - 1
    }

    /// The nearest-rank percentile (0...100), as the upper bound of its bucket but never above the maximum.
    public func percentile(_ percent: Int) -> Int64 {
        guard self.count > 0 else { return 0 }
        let rank = Swift.max(1, (percent * self.count + 99) / 100)
        var seen = 0
        for (offset, n) in self.counts.enumerated() where n > 0 {
            seen += Int(n)
            if seen >= rank { return Swift.min(Self.upperBound(ofBucket: self.lowest + offset), self.max) }
        }
        return self.max
    }

    public var summary: LatencySummary {
        LatencySummary(count: self.count, p50: self.percentile(50), p90: self.percentile(90),
                       p99: self.percentile(99), max: self.max,
                       mean: self.count == 0 ? 0 : self.sum / Int64(self.count))
    }
}

/// Percentiles of a latency distribution, in microseconds.
public struct LatencySummary: Sendable, Equatable, CustomStringConvertible {
    public var count: Int
    public var p50: Int64
    public var p90: Int64
    public var p99: Int64
    public var max: Int64
    public var mean: Int64

    public init(count: Int, p50: Int64, p90: Int64, p99: Int64, max: Int64, mean: Int64) {
        self.count = count
        self.p50 = p50
        self.p90 = p90
        self.p99 = p99
        self.max = max
        self.mean = mean
    }

    public var description: String {
        guard self.count > 0 else { return "no samples" }
        return "p50 \(formatMicros(self.p50)) ms, p90 \(formatMicros(self.p90)) ms, p99 \(formatMicros(self.p99)) ms, "
            + "max \(formatMicros(self.max)) ms (\(self.count) samples)"
    }
}
