import Testing

@testable import SIPReplayKit

@Suite struct HistogramTests {
    @Test func layoutCoversOneHourWith2048SubBuckets() {
        #expect(LatencyHistogram.subBucketCount == 2048)
        #expect(LatencyHistogram.bucketCount == 22)
        let top = LatencyHistogram.countsIndex(of: LatencyHistogram.highestTrackableValue)
        #expect(top < LatencyHistogram.countsLength)
        // Values below 2048 are exact; above, slots double in width with every power of two.
        #expect(LatencyHistogram.sizeOfEquivalentRange(2047) == 1)
        #expect(LatencyHistogram.sizeOfEquivalentRange(2048) == 2)
        #expect(LatencyHistogram.sizeOfEquivalentRange(5000) == 4)
        #expect(LatencyHistogram.lowestEquivalentValue(5001) == 5000)
        #expect(LatencyHistogram.highestEquivalentValue(5001) == 5003)
        // Slot index → value → slot index round-trips at every slot boundary.
        for index in [0, 1, 1023, 1024, 2047, 2048, 3071, 3072, 10_000, top] {
            let value = LatencyHistogram.valueFromIndex(index)
            #expect(LatencyHistogram.countsIndex(of: value) == index)
        }
    }

    @Test func emptyHistogram() {
        let h = LatencyHistogram()
        #expect(h.count == 0)
        #expect(h.min == 0)
        #expect(h.max == 0)
        #expect(h.mean == 0)
        #expect(h.clamped == 0)
        #expect(h.percentile(50) == 0)
        #expect(h.percentile(100) == 0)
    }

    @Test func singleValue() {
        var h = LatencyHistogram()
        h.record(123_456)
        #expect(h.count == 1)
        #expect(h.min == 123_456)
        #expect(h.max == 123_456)
        #expect(h.mean == 123_456)
        for p in [0.0, 1, 50, 99.9, 100] {
            #expect(h.percentile(p) == 123_456)
        }
    }

    @Test func uniformOneToTenThousand() {
        var h = LatencyHistogram()
        for v in 1...10_000 { h.record(v) }
        #expect(h.count == 10_000)
        #expect(h.min == 1)
        #expect(h.max == 10_000)
        #expect(h.mean == 5000.5)
        // The sample at each rank, reported as the top of its 3-digit slot.
        #expect(h.percentile(50) == 5003)  // rank 5000, slot 5000…5003
        #expect(h.percentile(90) == 9007)  // rank 9000, slot 9000…9007
        #expect(h.percentile(99) == 9903)  // rank 9900, slot 9896…9903
        #expect(h.percentile(99.9) == 9991)  // rank 9990, slot 9984…9991
        #expect(h.percentile(100) == 10_000)  // never above the true max
        #expect(h.percentile(0) == 1)
        #expect(h.percentile(0.01) == 1)
        #expect(h.percentile(10) == 1000)  // exact below 2048
        for p in [50.0, 90, 99, 99.9] {
            let expected = p / 100 * 10_000
            let got = Double(h.percentile(p))
            #expect(got >= expected && got <= expected * 1.001)
        }
    }

    @Test func rankUsesCeilingAtSmallCounts() {
        var h = LatencyHistogram()
        for v in [10, 20, 30, 40] { h.record(v) }
        #expect(h.percentile(25) == 10)
        #expect(h.percentile(26) == 20)
        #expect(h.percentile(50) == 20)
        #expect(h.percentile(75) == 30)
        #expect(h.percentile(99.9) == 40)
        var thousand = LatencyHistogram()
        for v in 1...1000 { thousand.record(v) }
        #expect(thousand.percentile(99.9) == 999)
        #expect(thousand.percentile(99) == 990)
    }

    @Test func precisionBound() {
        // Every value is reported within v × (1 ± 0.001): record v with a larger companion so that
        // p50 is v's own slot, not limited by max.
        var v = 1
        while v <= LatencyHistogram.highestTrackableValue / 2 {
            for candidate in [v, v + 1, v * 3 / 2, v * 2 - 1] {
                var h = LatencyHistogram()
                h.record(candidate)
                h.record(LatencyHistogram.highestTrackableValue)
                let reported = h.percentile(50)
                #expect(reported >= candidate)
                #expect(Double(reported) <= Double(candidate) * 1.001, "value \(candidate) reported \(reported)")
                #expect(Double(LatencyHistogram.lowestEquivalentValue(candidate)) >= Double(candidate) * 0.999)
            }
            v *= 2
        }
        // And a pseudo-random sweep.
        var seed: UInt64 = 0x1234_5678
        for _ in 0..<2000 {
            seed = seed &* 6364136223846793005 &+ 1442695040888963407
            let value = Int(seed >> 33) % LatencyHistogram.highestTrackableValue + 1
            let high = LatencyHistogram.highestEquivalentValue(value)
            let low = LatencyHistogram.lowestEquivalentValue(value)
            #expect(low <= value && value <= high)
            #expect(Double(high) <= Double(value) * 1.001)
            #expect(Double(low) >= Double(value) * 0.999)
        }
    }

    @Test func clampsAboveOneHourAndNegatives() {
        var h = LatencyHistogram()
        h.record(5_000_000_000)
        h.record(-3)
        h.record(7, times: 2)
        #expect(h.count == 4)
        #expect(h.clamped == 1)
        #expect(h.max == LatencyHistogram.highestTrackableValue)
        #expect(h.min == 0)
        #expect(h.percentile(100) == LatencyHistogram.highestTrackableValue)
        #expect(h.percentile(25) == 0)
        #expect(h.percentile(75) == 7)
    }

    @Test func merge() {
        var low = LatencyHistogram()
        var high = LatencyHistogram()
        var all = LatencyHistogram()
        for v in 1...5000 {
            low.record(v)
            all.record(v)
        }
        for v in 5001...10_000 {
            high.record(v)
            all.record(v)
        }
        high.record(4_000_000_000)
        all.record(4_000_000_000)
        var merged = low
        merged.merge(high)
        #expect(merged == all)
        #expect(merged.count == 10_001)
        #expect(merged.clamped == 1)
        #expect(merged.min == 1)
        #expect(merged.max == LatencyHistogram.highestTrackableValue)
        #expect(merged.percentile(50) == all.percentile(50))
        #expect(merged.percentile(99.9) == all.percentile(99.9))
        // low is a value: merging into a copy did not touch it.
        #expect(low.count == 5000)
        var empty = LatencyHistogram()
        empty.merge(low)
        #expect(empty == low)
        low.merge(LatencyHistogram())
        #expect(low.count == 5000)
        low.reset()
        #expect(low == LatencyHistogram())
    }
}
