import { AwsClients, EbsSnapshotStore } from 'snapline/internals';
// The references of the transfer figures: bare loops over the SDK's own
// request path (the real EBSClient through snapline's EbsSnapshotStore, which
// adds only the unsigned-payload marker a backup uses too) or, with `direct`,
// over the direct block requests the engine uses, with the same
// endpoint, the same number of requests in flight and the same socket pool as
// a session, and nothing else: no reading, hashing, index, retries or
// limiter. PutSnapshotBlock sends bodies prepared beforehand with their
// checksums (the same bytes the backup sends, so the endpoint does the same
// work for both); GetSnapshotBlock reads each body into a buffer and drops it.


/**
 * An EBS store as a session builds it (sockets: twice the concurrency), on the SDK path or the direct one.
 * @param {string} endpointUrl
 * @param {number} concurrency
 * @param {boolean} direct
 */
function bareStore(endpointUrl, concurrency, direct) {
  const clients = new AwsClients(
    { name: 'bench', region: 'us-east-1', endpointUrl, credentials: { accessKeyId: 'bench', secretAccessKey: 'bench-secret' } },
    { concurrency: 2 * concurrency },
  );
  return { store: new EbsSnapshotStore(clients.ebs(), direct ? { direct: clients.ebsBlockRequests() } : {}), close: () => clients.destroy() };
}

/**
 * `lanes` workers taking the next item until there are none.
 * @param {number} count
 * @param {number} lanes
 * @param {(i: number) => Promise<unknown>} work
 */
async function inLanes(count, lanes, work) {
  let next = 0;
  const lane = async () => {
    while (next < count) await work(next++);
  };
  await Promise.all(Array.from({ length: Math.min(lanes, count) }, lane));
}

/**
 * StartSnapshot, then PutSnapshotBlock of every body at `concurrency` in flight.
 * @param {string} endpointUrl
 * @param {number} concurrency
 * @param {{ bodies: Uint8Array[], checksums: string[], volumeSizeGiB: number }} blocks
 * @param {{ direct?: boolean }} [options]
 * @returns {Promise<number>} milliseconds from StartSnapshot to the last answer
 */
export async function barePutLoop(endpointUrl, concurrency, { bodies, checksums, volumeSizeGiB }, { direct = false } = {}) {
  const { store, close } = bareStore(endpointUrl, concurrency, direct);
  try {
    const start = performance.now();
    const { snapshotId } = await store.startSnapshot({ volumeSizeGiB });
    await inLanes(bodies.length, concurrency, (i) => store.putBlock(snapshotId, i, /** @type {Uint8Array} */ (bodies[i]), /** @type {string} */ (checksums[i])));
    return performance.now() - start;
  } finally {
    close();
  }
}

/**
 * ListSnapshotBlocks, then GetSnapshotBlock of every block at `concurrency` in flight.
 * @param {string} endpointUrl
 * @param {number} concurrency
 * @param {string} snapshotId
 * @param {{ direct?: boolean }} [options]
 * @returns {Promise<{ ms: number, blocks: number }>}
 */
export async function bareGetLoop(endpointUrl, concurrency, snapshotId, { direct = false } = {}) {
  const { store, close } = bareStore(endpointUrl, concurrency, direct);
  try {
    const start = performance.now();
    /** @type {Array<{ index: number, token: string }>} */
    const blocks = [];
    for await (const page of store.listBlocks(snapshotId)) blocks.push(...page.blocks);
    await inLanes(blocks.length, concurrency, (i) => {
      const block = /** @type {{ index: number, token: string }} */ (blocks[i]);
      return store.getBlock(snapshotId, block.index, block.token);
    });
    return { ms: performance.now() - start, blocks: blocks.length };
  } finally {
    close();
  }
}

/**
 * An incremental snapshot's own requests and nothing else: StartSnapshot as
 * a child of `parentSnapshotId`, PutSnapshotBlock of the given blocks at
 * `concurrency` in flight over the direct block requests a session uses,
 * and CompleteSnapshot. Nothing is read, hashed or recorded.
 * @param {string} endpointUrl
 * @param {number} concurrency
 * @param {{ parentSnapshotId: string, volumeSizeGiB: number, blocks: Array<{ index: number, body: Uint8Array, checksum: string }>, aggregate: string }} incremental
 * @returns {Promise<number>} milliseconds from StartSnapshot to CompleteSnapshot's answer
 */
export async function bareIncrementalLoop(endpointUrl, concurrency, { parentSnapshotId, volumeSizeGiB, blocks, aggregate }) {
  const { store, close } = bareStore(endpointUrl, concurrency, true);
  try {
    const start = performance.now();
    const { snapshotId } = await store.startSnapshot({ volumeSizeGiB, parentSnapshotId });
    await inLanes(blocks.length, concurrency, (i) => {
      const block = /** @type {{ index: number, body: Uint8Array, checksum: string }} */ (blocks[i]);
      return store.putBlock(snapshotId, block.index, block.body, block.checksum);
    });
    await store.completeSnapshot(snapshotId, blocks.length, aggregate);
    return performance.now() - start;
  } finally {
    close();
  }
}
