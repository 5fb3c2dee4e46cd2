import { BlockIndex, type StoreRef } from '../../src/index/index.js';

/** Opens the index file at `path`, bound to `store` (unbound without one), runs `fn` on it and closes it whatever happens. */
export function withIndexAt<T>(path: string, store: StoreRef | undefined, fn: (index: BlockIndex) => T): T {
  const index = BlockIndex.open(path);
  try {
    if (store !== undefined) index.bindStore(store);
    return fn(index);
  } finally {
    index.close();
  }
}
