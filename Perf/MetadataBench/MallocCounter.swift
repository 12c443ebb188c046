import Glibc
import Synchronization

// Counts heap allocations made anywhere in this process (Swift runtime and libxml2 alike).
//
// Package.swift links MetadataBench with `--defsym=malloc=metadatabench_counting_malloc` (and the same
// for calloc and aligned_alloc) and exports those names dynamically, so the dynamic linker binds the
// malloc calls of every shared library, libxml2's and libswiftCore's included, to the functions
// below. They count, then allocate with posix_memalign, which is not interposed, so free() and
// realloc() keep working on the result. realloc calls are not counted (libxml2 grows its buffers
// with it; the growth shows in the time figures instead).

let heapAllocationCounter = Atomic<Int>(0)

var heapAllocations: Int { heapAllocationCounter.load(ordering: .relaxed) }

@_cdecl("metadatabench_counting_malloc")
public func countingMalloc(_ size: Int) -> UnsafeMutableRawPointer? {
    heapAllocationCounter.add(1, ordering: .relaxed)
    return alignedAllocation(alignment: 16, size: size)
}

@_cdecl("metadatabench_counting_calloc")
public func countingCalloc(_ count: Int, _ size: Int) -> UnsafeMutableRawPointer? {
    heapAllocationCounter.add(1, ordering: .relaxed)
    let (bytes, overflow) = count.multipliedReportingOverflow(by: size)
    guard !overflow, let pointer = alignedAllocation(alignment: 16, size: bytes) else { return nil }
    memset(pointer, 0, bytes)
    return pointer
}

@_cdecl("metadatabench_counting_aligned_alloc")
public func countingAlignedAlloc(_ alignment: Int, _ size: Int) -> UnsafeMutableRawPointer? {
    heapAllocationCounter.add(1, ordering: .relaxed)
    return alignedAllocation(alignment: max(alignment, MemoryLayout<Int>.size), size: size)
}

private func alignedAllocation(alignment: Int, size: Int) -> UnsafeMutableRawPointer? {
    var pointer: UnsafeMutableRawPointer?
    return posix_memalign(&pointer, alignment, max(size, 1)) == 0 ? pointer : nil
}
