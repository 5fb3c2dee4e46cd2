/**
 * Block sources: files, block devices and NBD exports read in large
 * sequential reads into a small pool of reusable shared slabs.
 */
export { openSource, type BlockSource, type DataRegion, type OpenSourceOptions } from './open.js';
export { readChangedBlocksFile } from './changed-blocks.js';
export { SlabPool, zeroSlab, type Slab, type SlabPoolOptions } from './slabs.js';
export { MAX_HOLE_RUN_BLOCKS, fillSlab, readSlabs, slabExtent, sourceEndedError, type FilledSlab, type HoleRun, type ReadSlabsOptions, type SourceRun } from './reader.js';
export { nativeHoleSeeker, type HoleSeeker } from './holes.js';
export { isNbdUrl, nbdVolumeName, parseNbdUrl, type NbdAddress } from './nbd/url.js';
