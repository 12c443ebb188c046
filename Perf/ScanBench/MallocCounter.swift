import Glibc
import Synchronization

// Counts heap allocations made anywhere in this process (Swift runtime, Foundation, C code).
//
// How: Package.swift links ScanBench with `--defsym=malloc=scanbench_counting_malloc` (same for
// calloc and aligned_alloc) and exports those names dynamically, so the dynamic linker binds every
// shared library's malloc/calloc/aligned_alloc calls (libswiftCore's swift_slowAlloc included) to the
// functions below. They count, then allocate with glibc's posix_memalign, which is not interposed, so
// free() and realloc() keep working on the result. No LD_PRELOAD, no malloc hooks (gone since
// glibc 2.34); mallinfo2 is not used because it reports bytes, not calls.
//
// Not counted: realloc and posix_memalign calls (the Swift runtime allocates through malloc and
// aligned_alloc). The counter is an atomic because the optimiser cannot see that C code calls these
// functions, and would otherwise fold "allocations after - before" to zero.

let heapAllocationCounter = Atomic<Int>(0)

var heapAllocations: Int { heapAllocationCounter.load(ordering: .relaxed) }

@_cdecl("scanbench_counting_malloc")
public func countingMalloc(_ size: Int) -> UnsafeMutableRawPointer? {
    heapAllocationCounter.add(1, ordering: .relaxed)
    return allocate(alignment: 16, size: size)
}

@_cdecl("scanbench_counting_calloc")
public func countingCalloc(_ count: Int, _ size: Int) -> UnsafeMutableRawPointer? {
    heapAllocationCounter.add(1, ordering: .relaxed)
    let (bytes, overflow) = count.multipliedReportingOverflow(by: size)
    guard !overflow, let pointer = allocate(alignment: 16, size: bytes) else { return nil }
    memset(pointer, 0, bytes)
    return pointer
}

@_cdecl("scanbench_counting_aligned_alloc")
public func countingAlignedAlloc(_ alignment: Int, _ size: Int) -> UnsafeMutableRawPointer? {
    heapAllocationCounter.add(1, ordering: .relaxed)
    return allocate(alignment: max(alignment, MemoryLayout<Int>.size), size: size)
}

private func allocate(alignment: Int, size: Int) -> UnsafeMutableRawPointer? {
    var pointer: UnsafeMutableRawPointer?
    return posix_memalign(&pointer, alignment, max(size, 1)) == 0 ? pointer : nil
}
