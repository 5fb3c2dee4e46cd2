/**
 * Block sources: files and block devices read in large sequential reads into
 * a small pool of reusable shared slabs.
 */
export { openSource, type BlockSource } from './open.js';
export { SlabPool, type Slab, type SlabPoolOptions } from './slabs.js';
export { readSlabs, type FilledSlab, type ReadSlabsOptions } from './reader.js';
