// LatencyHistogram: a log-linear recorder of microsecond latencies in the manner of HdrHistogram
// (3 significant digits over 1 µs … 1 hour), written for sip-replay's reports.
//
// Layout: values are grouped in buckets that each cover a power-of-two range; every bucket holds
// `subBucketCount` (2048) linear sub-buckets, of which the bottom half overlaps the previous
// bucket and is therefore only stored for bucket 0. A value's slot is found with a leading-zero
// count and two shifts, so recording is a few integer operations on a counts array allocated
// once at init. Any value is reported as the highest value of its slot, at most 1/1024 above it.

/// A recorder of latencies in microseconds with 3 significant digits of precision from 1 µs to one
/// hour. Values above one hour are recorded as one hour and counted in `clamped`; negative values
/// are recorded as 0.
///
/// `percentile(_:)` follows HdrHistogram: the highest value equivalent (within the precision) to
/// the sample at that rank, limited to the exact `min` … `max` actually recorded, so
/// `percentile(100) == max`.
public struct LatencyHistogram: Sendable, Equatable {
    /// The largest value the histogram tells apart: one hour in microseconds.
    public static let highestTrackableValue = 3_600_000_000
    /// Significant decimal digits kept for every value.
    public static let significantDigits = 3

    // 2 * 10^3 = 2000 values must be told apart at unit resolution: 2^11 = 2048 sub-buckets.
    static let subBucketCountMagnitude = 11
    static let subBucketCount = 1 << subBucketCountMagnitude  // 2048
    static let subBucketHalfCountMagnitude = subBucketCountMagnitude - 1
    static let subBucketHalfCount = 1 << subBucketHalfCountMagnitude  // 1024
    static let subBucketMask = subBucketCount - 1
    /// Buckets needed until the bucket range passes `highestTrackableValue`.
    static let bucketCount: Int = {
        var smallestUntrackable = subBucketCount
        var buckets = 1
        while smallestUntrackable <= highestTrackableValue {
            smallestUntrackable <<= 1
            buckets += 1
        }
        return buckets
    }()
    static let countsLength = (bucketCount + 1) * subBucketHalfCount

    private var counts: [Int]
    /// Number of values recorded.
    public private(set) var count: Int = 0
    /// Number of values that were above `highestTrackableValue` and recorded as it.
    public private(set) var clamped: Int = 0
    private var sum: Int = 0
    private var minValue: Int = Int.max
    private var maxValue: Int = 0

    public init() {
        counts = [Int](repeating: 0, count: Self.countsLength)
    }

    /// Records one latency in microseconds.
    public mutating func record(_ microseconds: Int) {
        record(microseconds, times: 1)
    }

    /// Records the same latency `times` times.
    public mutating func record(_ microseconds: Int, times: Int) {
        guard times > 0 else { return }
        var value = Swift.max(microseconds, 0)
        if value > Self.highestTrackableValue {
            value = Self.highestTrackableValue
            clamped += times
        }
        counts[Self.countsIndex(of: value)] += times
        count += times
        sum += value * times
        if value < minValue { minValue = value }
        if value > maxValue { maxValue = value }
    }

    /// The smallest value recorded (exact), 0 when empty.
    public var min: Int { count == 0 ? 0 : minValue }
    /// The largest value recorded (exact, after clamping), 0 when empty.
    public var max: Int { count == 0 ? 0 : maxValue }
    /// The exact mean of the recorded values (after clamping), 0 when empty.
    public var mean: Double { count == 0 ? 0 : Double(sum) / Double(count) }

    /// The value at or above `p` percent of the samples (p in 0...100): the highest value
    /// equivalent to the sample of rank ceil(p/100 × count), kept within `min` … `max`.
    /// 0 when the histogram is empty.
    public func percentile(_ p: Double) -> Int {
        guard count > 0 else { return 0 }
        let clampedP = p.isNaN ? 100 : Swift.min(Swift.max(p, 0), 100)
        // Rank of the sample asked for, 1-based; the tiny slack keeps 99.9% of 1000 at 999.
        let exact = clampedP / 100 * Double(count)
        var rank = Int((exact - exact * 1e-12).rounded(.up))
        rank = Swift.min(Swift.max(rank, 1), count)
        var seen = 0
        for index in 0..<counts.count {
            seen += counts[index]
            if seen >= rank {
                let value = Self.highestEquivalentValue(Self.valueFromIndex(index))
                return Swift.min(Swift.max(value, minValue), maxValue)
            }
        }
        return maxValue
    }

    /// Adds every value of `other` into this histogram.
    public mutating func merge(_ other: LatencyHistogram) {
        guard other.count > 0 else { return }
        for index in 0..<counts.count where other.counts[index] != 0 {
            counts[index] += other.counts[index]
        }
        count += other.count
        clamped += other.clamped
        sum += other.sum
        minValue = Swift.min(minValue, other.minValue)
        maxValue = Swift.max(maxValue, other.maxValue)
    }

    /// Forgets every value.
    public mutating func reset() {
        for index in 0..<counts.count { counts[index] = 0 }
        count = 0
        clamped = 0
        sum = 0
        minValue = Int.max
        maxValue = 0
    }

    // MARK: - Index arithmetic

    /// Bucket of a value: the power-of-two range it falls in, above the first 2048 values.
    static func bucketIndex(of value: Int) -> Int {
        let pow2Ceiling = Int.bitWidth - (value | subBucketMask).leadingZeroBitCount
        return pow2Ceiling - (subBucketHalfCountMagnitude + 1)
    }

    static func countsIndex(of value: Int) -> Int {
        let bucket = bucketIndex(of: value)
        let subBucket = value >> bucket
        return ((bucket + 1) << subBucketHalfCountMagnitude) + (subBucket - subBucketHalfCount)
    }

    /// The lowest value stored in a counts slot.
    static func valueFromIndex(_ index: Int) -> Int {
        var bucket = (index >> subBucketHalfCountMagnitude) - 1
        var subBucket = (index & (subBucketHalfCount - 1)) + subBucketHalfCount
        if bucket < 0 {
            subBucket -= subBucketHalfCount
            bucket = 0
        }
        return subBucket << bucket
    }

    /// How many consecutive values share the slot of `value`.
    public static func sizeOfEquivalentRange(_ value: Int) -> Int {
        1 << bucketIndex(of: Swift.max(value, 0))
    }

    /// The lowest value indistinguishable from `value` at this precision.
    public static func lowestEquivalentValue(_ value: Int) -> Int {
        let v = Swift.max(value, 0)
        let bucket = bucketIndex(of: v)
        return (v >> bucket) << bucket
    }

    /// The highest value indistinguishable from `value` at this precision.
    public static func highestEquivalentValue(_ value: Int) -> Int {
        lowestEquivalentValue(value) + sizeOfEquivalentRange(value) - 1
    }
}
