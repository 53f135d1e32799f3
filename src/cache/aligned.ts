// Page-aligned buffers for writes that bypass the page cache (O_DIRECT), which need the memory address,
// the file offset and the length all aligned to the device's logical block size. Node.js buffers carry
// no alignment guarantee (large ones come from malloc, 16 bytes past a page boundary); a WebAssembly
// memory's backing store is page-aligned, so units carved from one at multiples of UNIT are aligned.
// The memory is shared: V8 then leaves it out of the external memory that paces its garbage
// collections (an unshared 16 MiB arena showed as 16 MiB more `external` in bench/cache-memory.ts).
//
// Memories are reserved in arenas and never returned (a unit goes back to the free list), and there
// are at most MAX_ARENAS of them: each reserves a large stretch of address space, and the engine caps
// the total. When every unit is taken, `takeAligned` answers undefined and callers use ordinary
// buffers and page-cached writes, slower on some machines but equally correct.

/** Alignment for offsets and lengths of direct I/O: 4 KiB covers 512-byte and 4 KiB logical blocks. */
const ALIGNMENT = 4096;
/**
 * Size of every aligned unit, so of every direct write. Under load, 1 MiB writes kept up with upstream
 * better than 512 KiB ones (fewer syscalls and thread wake-ups per byte) and 2 MiB ones.
 */
export const UNIT = 1024 * 1024;
const UNITS_PER_ARENA = 16;
const MAX_ARENAS = 4;
const WASM_PAGE = 64 * 1024;

// The TypeScript library this project compiles against (no DOM) does not declare WebAssembly.Memory.
interface WasmMemory {
  readonly buffer: SharedArrayBuffer;
}
const { Memory } = (
  globalThis as unknown as {
    WebAssembly: {
      Memory: new (descriptor: { initial: number; maximum: number; shared: true }) => WasmMemory;
    };
  }
).WebAssembly;

const free: Buffer[] = [];
/** Units handed out and not yet given back: giving one back twice must not put it on the list twice. */
const lent = new WeakSet<Buffer>();
let arenas = 0;

function grow(): boolean {
  if (arenas >= MAX_ARENAS) return false;
  let memory: WasmMemory;
  try {
    const pages = (UNIT * UNITS_PER_ARENA) / WASM_PAGE;
    memory = new Memory({ initial: pages, maximum: pages, shared: true });
  } catch {
    // The engine refused the reservation: carry on with ordinary buffers.
    arenas = MAX_ARENAS;
    return false;
  }
  arenas++;
  const arena = Buffer.from(memory.buffer);
  for (let i = 0; i < UNITS_PER_ARENA; i++) {
    free.push(arena.subarray(i * UNIT, (i + 1) * UNIT));
  }
  return true;
}

/** A free aligned unit of UNIT bytes, or undefined when all are in use. */
export function takeAligned(): Buffer | undefined {
  if (free.length === 0 && !grow()) return undefined;
  const unit = free.pop() as Buffer;
  lent.add(unit);
  return unit;
}

/** Returns a unit from `takeAligned`; anything else is ignored (and left to the garbage collector). */
export function giveAligned(buffer: Buffer): void {
  if (!lent.delete(buffer)) return;
  free.push(buffer);
}

export function alignUp(n: number): number {
  return Math.ceil(n / ALIGNMENT) * ALIGNMENT;
}
