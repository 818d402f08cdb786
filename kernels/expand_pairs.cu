// expand_pairs: the (feature of port p1) x (other port p2) pairs of every host, as packed keys.
//
// Twin: gpsgpu.ops.cpu.expand_pairs (NumPy), which defines the exact output.
//
// Layout (the "host CSR" of gpsgpu/ops/cpu.py):
//   slot_port[n_slots]   uint16  services sorted by (ip, port)
//   slot_first[n_slots]  int64   index of the first slot of the slot's host
//   slot_count[n_slots]  int64   number of slots (ports) of the slot's host
//   row_slot[n_rows]     int64   the slot of each feature row
//   row_fid[n_rows]      uint32  the feature id of each feature row
//   pair_offsets[n_rows] int64  where row i's pairs start: rows in "block order", i.e. grouped by
//                               their host's port count k ascending, then by row index
//                               (gpsgpu.ops.cpu.pair_offsets computes it)
//
// Thread-to-data mapping: one thread per feature row i (grid-stride loop). Thread i writes the
// slot_count - 1 keys of its row at keys[pair_offsets[i] ...], visiting the host's other slots in
// slot order (own slot skipped):
//   key = fid << 32 | port(own slot) << 16 | port(other slot)
//
// Preconditions: a host's slots are contiguous and sorted by port; 1 <= slot_count (the learn step
// only passes hosts with 2..10 ports, so a thread's loop is at most 9 iterations); keys has
// sum(slot_count[row_slot] - 1) elements and pair_offsets tiles it exactly.
// Atomics: none; every output element is written by exactly one thread.

extern "C" __global__ void expand_pairs(
    const long long* __restrict__ row_slot,
    const unsigned int* __restrict__ row_fid,
    const unsigned short* __restrict__ slot_port,
    const long long* __restrict__ slot_first,
    const long long* __restrict__ slot_count,
    const long long* __restrict__ pair_offsets,
    unsigned long long* __restrict__ keys,
    long long n_rows)
{
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n_rows;
         i += (long long)blockDim.x * gridDim.x) {
        const long long slot = row_slot[i];
        const long long first = slot_first[slot];
        const long long count = slot_count[slot];
        const long long own = slot - first;
        const unsigned long long base =
            ((unsigned long long)row_fid[i] << 32) | ((unsigned long long)slot_port[slot] << 16);
        unsigned long long* out = keys + pair_offsets[i];
        for (long long j = 0; j < count - 1; ++j) {
            const long long target = first + j + (j >= own ? 1 : 0);
            out[j] = base | (unsigned long long)slot_port[target];
        }
    }
}
