import Glibc
import Synchronization

// Counts heap allocations made anywhere in the process (Swift runtime, libxml2, Foundation, C code),
// for the benchmarks' "allocations per message/document" figures.
//
// How: an executable that uses this module links with `--defsym=malloc=bench_counting_malloc` (the
// same for calloc and aligned_alloc; Package.swift's `countingAllocatorLinkerSettings`) and exports
// those names dynamically, so the dynamic linker binds every shared library's malloc, calloc and
// aligned_alloc calls (libswiftCore's swift_slowAlloc included) to the functions below. They count,
// then allocate with glibc's posix_memalign, which is not interposed, so free() and realloc() keep
// working on the result. No LD_PRELOAD, no malloc hooks (gone since glibc 2.34); mallinfo2 is not
// used because it reports bytes, not calls.
//
// Not counted: realloc and posix_memalign calls (the Swift runtime allocates through malloc and
// aligned_alloc; libxml2 grows its buffers with realloc, which shows in time instead). The counter
// is an atomic because the optimiser cannot see that C code calls these functions, and would
// otherwise fold "allocations after - before" to zero.

private let heapAllocationCounter = Atomic<Int>(0)

/// Heap allocations (malloc, calloc, aligned_alloc) made so far by the whole process.
public var heapAllocations: Int { heapAllocationCounter.load(ordering: .relaxed) }

@_cdecl("bench_counting_malloc")
public func countingMalloc(_ size: Int) -> UnsafeMutableRawPointer? {
    heapAllocationCounter.add(1, ordering: .relaxed)
    return alignedAllocation(alignment: 16, size: size)
}

@_cdecl("bench_counting_calloc")
public func countingCalloc(_ count: Int, _ size: Int) -> UnsafeMutableRawPointer? {
    heapAllocationCounter.add(1, ordering: .relaxed)
    let (bytes, overflow) = count.multipliedReportingOverflow(by: size)
    guard !overflow, let pointer = alignedAllocation(alignment: 16, size: bytes) else { return nil }
    memset(pointer, 0, bytes)
    return pointer
}

@_cdecl("bench_counting_aligned_alloc")
public func countingAlignedAlloc(_ alignment: Int, _ size: Int) -> UnsafeMutableRawPointer? {
    heapAllocationCounter.add(1, ordering: .relaxed)
    return alignedAllocation(alignment: max(alignment, MemoryLayout<Int>.size), size: size)
}

private func alignedAllocation(alignment: Int, size: Int) -> UnsafeMutableRawPointer? {
    var pointer: UnsafeMutableRawPointer?
    return posix_memalign(&pointer, alignment, max(size, 1)) == 0 ? pointer : nil
}
